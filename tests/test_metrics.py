"""Metrics against scikit-learn (random data, hypothesis) and hand-checked small cases."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.calibration import calibration_curve
from sklearn.metrics import average_precision_score, brier_score_loss, roc_auc_score

from tprompt.evaluator import ObjectiveWeights, compute_metrics, objective, pareto_front
from tprompt.evaluator.metrics import (
    accuracy,
    auroc,
    average_precision,
    brier,
    calibration_bins,
    ece,
    ifr,
    pr_n,
    pr_p,
)

# Confidences drawn from a coarse grid too, so ties (the hard case for ranks) are common.
conf_value = st.one_of(
    st.floats(0.0, 1.0, allow_nan=False),
    st.sampled_from([0.0, 0.1, 0.25, 0.5, 0.7, 0.85, 1.0]),
)
answers = st.integers(1, 60).flatmap(
    lambda n: st.tuples(st.lists(st.booleans(), min_size=n, max_size=n), st.lists(conf_value, min_size=n, max_size=n))
)


@settings(max_examples=200, deadline=None)
@given(answers)
def test_auroc_matches_sklearn(data):
    correct, conf = data
    ours = auroc(correct, conf)
    if len(set(correct)) < 2:
        assert ours is None
    else:
        assert ours == pytest.approx(roc_auc_score(correct, conf), abs=1e-12)


@settings(max_examples=200, deadline=None)
@given(answers)
def test_pr_n_and_pr_p_match_sklearn_average_precision(data):
    correct, conf = data
    c = np.array(correct)
    p = np.array(conf)
    if c.any():
        assert pr_n(c, p) == pytest.approx(average_precision_score(c, p), abs=1e-12)
    else:
        assert pr_n(c, p) is None
    if (~c).any():
        assert pr_p(c, p) == pytest.approx(average_precision_score(~c, 1 - p), abs=1e-12)
    else:
        assert pr_p(c, p) is None


@settings(max_examples=200, deadline=None)
@given(answers)
def test_brier_and_accuracy_match_sklearn(data):
    correct, conf = data
    assert brier(correct, conf) == pytest.approx(brier_score_loss(correct, conf, pos_label=True), abs=1e-12)
    assert accuracy(correct) == pytest.approx(np.mean(correct))


@settings(max_examples=200, deadline=None)
@given(answers, st.sampled_from([1, 5, 10, 15]))
def test_calibration_bins_match_sklearn_calibration_curve(data, n_bins):
    correct, conf = data
    acc, mean_conf, counts = calibration_bins(correct, conf, n_bins)
    assert counts.sum() == len(correct)
    # Independent loop reference, bins (k/n, (k+1)/n] with 0 in the first, as sklearn.
    edges = np.linspace(0, 1, n_bins + 1)
    total = 0.0
    for k in range(n_bins):
        lo, hi = edges[k], edges[k + 1]
        idx = [i for i, p in enumerate(conf) if (p <= hi or k == n_bins - 1) and (p > lo or k == 0)]
        if idx:
            total += len(idx) * abs(np.mean([correct[i] for i in idx]) - np.mean([conf[i] for i in idx]))
    assert ece(correct, conf, n_bins) == pytest.approx(total / len(correct), abs=1e-12)
    if len(set(correct)) == 2:  # calibration_curve refuses a single class
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            prob_true, prob_pred = calibration_curve(correct, conf, n_bins=n_bins, strategy="uniform")
        assert np.allclose(acc, prob_true)
        assert np.allclose(mean_conf, prob_pred)


@settings(max_examples=100, deadline=None)
@given(answers, st.lists(st.booleans(), min_size=60, max_size=60))
def test_all_metrics_defined_or_none_never_nan(data, followed):
    correct, conf = data
    m = compute_metrics(correct, conf, followed[: len(correct)])
    for name, value in m.items():
        assert value is None or (math.isfinite(value) and -1e-12 <= value <= 1 + 1e-12), name
    obj = objective(m)
    assert math.isfinite(obj) and 0 <= obj <= 1


# --- hand-checked small cases -------------------------------------------------


def test_hand_checked_auroc_and_ap():
    # correct: conf .9 .8 ; wrong: .7 .85 -> pairs (pos>neg): .9>.7 .9>.85 .8>.7, .8<.85 -> 3/4
    correct = [True, True, False, False]
    conf = [0.9, 0.8, 0.7, 0.85]
    assert auroc(correct, conf) == 0.75
    # PR-N ranking by conf: .9(T) .85(F) .8(T) .7(F): AP = 1/2*1 + 1/2*(2/3)
    assert pr_n(correct, conf) == pytest.approx(0.5 + 1 / 3)
    # PR-P ranking by 1-conf: .7(F) .8(T) .85(F) .9(T), wrong positive: AP = 1/2*1 + 1/2*(2/3)
    assert pr_p(correct, conf) == pytest.approx(0.5 + 1 / 3)


def test_hand_checked_ties_count_half():
    assert auroc([True, False], [0.6, 0.6]) == 0.5
    assert auroc([True, True, False], [0.5, 0.9, 0.5]) == pytest.approx((0.5 + 1) / 2)


def test_hand_checked_ece():
    # bin (0.7,0.8]: conf .8 .8, acc 1/2 -> |.5-.8| = .3 weighted 2/4; bin (0.2,0.3]: .3 .3 acc 0 -> .3 * 2/4
    assert ece([True, False, False, False], [0.8, 0.8, 0.3, 0.3]) == pytest.approx(0.3)
    assert ece([True, True], [1.0, 1.0]) == 0.0
    # bin edges as scikit-learn: 0.1 falls in the first bin [0, 0.1]
    _acc, conf, counts = calibration_bins([True, False], [0.1, 0.05])
    assert list(counts) == [2] and conf[0] == pytest.approx(0.075)


def test_hand_checked_brier_ifr_accuracy():
    assert brier([True, False], [0.8, 0.4]) == pytest.approx((0.04 + 0.16) / 2)
    assert ifr([True, False, True, True]) == 0.75
    assert accuracy([True, False, False, False]) == 0.25


def test_degenerate_all_correct():
    m = compute_metrics([True] * 5, [0.9] * 5, [True] * 5)
    assert m["accuracy"] == 1.0
    assert m["auroc"] is None  # one class: undefined, reported as n/a
    assert m["pr_p"] is None  # no wrong answer to find
    assert m["pr_n"] == 1.0
    assert m["ece"] == pytest.approx(0.1)


def test_degenerate_all_wrong():
    m = compute_metrics([False] * 4, [0.0, 0.2, 0.0, 0.7], [False] * 4)
    assert m["accuracy"] == 0.0 and m["ifr"] == 0.0
    assert m["auroc"] is None and m["pr_n"] is None
    assert m["pr_p"] == 1.0


def test_degenerate_one_example_and_empty():
    m = compute_metrics([True], [0.6], [True])
    assert m["accuracy"] == 1.0 and m["auroc"] is None and m["ece"] == pytest.approx(0.4)
    empty = compute_metrics([], [], [])
    assert all(v is None for v in empty.values())
    assert objective(empty) == 0.0


def test_constant_confidence():
    correct = [True, False, True, False, True]
    m = compute_metrics(correct, [0.5] * 5, [True] * 5)
    assert m["auroc"] == 0.5
    assert m["pr_n"] == pytest.approx(0.6)  # equals the positive share, as sklearn
    assert m["pr_p"] == pytest.approx(0.4)


def test_length_mismatch_and_nan_confidence_rejected():
    with pytest.raises(ValueError):
        compute_metrics([True], [0.5, 0.5], [True])
    with pytest.raises(ValueError):
        compute_metrics([True], [float("nan")], [True])


def test_average_precision_no_positive_is_none():
    assert average_precision([False, False], [0.2, 0.3]) is None


# --- objective and Pareto front -------------------------------------------------


def test_objective_default_weights_hand_checked():
    m = {"accuracy": 0.6, "ifr": 1.0, "ece": 0.2, "auroc": 0.7, "pr_p": 0.5, "pr_n": 0.8, "brier": 0.3}
    expected = 0.5 * 0.6 + 0.2 * 1.0 + 0.1 * 0.8 + 0.1 * 0.7 + 0.05 * 0.8 + 0.05 * 0.5
    assert objective(m) == pytest.approx(expected)


def test_objective_undefined_metrics_renormalize():
    m = {"accuracy": 1.0, "ifr": 1.0, "ece": 0.0, "auroc": None, "pr_p": None, "pr_n": 1.0, "brier": 0.0}
    assert objective(m) == pytest.approx(1.0)
    only_acc = ObjectiveWeights(accuracy=1, ifr=0, ece=0, auroc=0, pr_n=0, pr_p=0)
    assert objective(m, only_acc) == 1.0
    brier_only = ObjectiveWeights(accuracy=0, ifr=0, ece=0, auroc=0, pr_n=0, pr_p=0, brier=1)
    assert objective({**m, "brier": 0.25}, brier_only) == 0.75


def test_objective_weights_validated():
    with pytest.raises(ValueError):
        ObjectiveWeights(accuracy=-1)
    with pytest.raises(ValueError):
        ObjectiveWeights(accuracy=0, ifr=0, ece=0, auroc=0, pr_n=0, pr_p=0, brier=0)


def test_pareto_front():
    a = {"accuracy": 0.8, "ifr": 0.9, "ece": 0.1}
    b = {"accuracy": 0.7, "ifr": 1.0, "ece": 0.1}  # trades accuracy for ifr: kept
    c = {"accuracy": 0.7, "ifr": 0.9, "ece": 0.2}  # dominated by a (ece lower is better)
    d = {"accuracy": 0.8, "ifr": 0.9, "ece": None}  # undefined ece is worst: dominated by a
    e = dict(a)  # equal to a: both kept
    items = [a, b, c, d, e]
    front = pareto_front(items, key=lambda x: x, metrics=("accuracy", "ifr", "ece"))
    assert front == [a, b, e]
    assert pareto_front([], key=lambda x: x) == []


# --- the one metric table ---------------------------------------------------------


def test_every_metric_is_in_the_table_once() -> None:
    from tprompt.metric_specs import METRIC_NAMES

    m = compute_metrics([True, False, True], [0.9, 0.4, 0.6], [True, True, False])
    assert tuple(m) == METRIC_NAMES  # computed in table order
    assert set(ObjectiveWeights.model_fields) == set(METRIC_NAMES)  # one weight per metric


def test_the_weights_keep_their_stored_order_and_the_objective_its_last_bit() -> None:
    # The seven are declared twice on purpose: as the table's rows (display order: PR-P before PR-N) and as
    # ObjectiveWeights' fields (pr_n before pr_p). The fields are not generated from the table: their order is
    # the key order of every stored config's weights and the order the objective sums in, and the table's order
    # changes this objective in its last bit (0.4958000000000001), so old runs would no longer replay equal.
    from tprompt.metric_specs import METRIC_NAMES

    assert tuple(ObjectiveWeights.model_fields) == ("accuracy", "ifr", "ece", "auroc", "pr_n", "pr_p", "brier")
    assert set(ObjectiveWeights.model_fields) == set(METRIC_NAMES)
    metrics = {"accuracy": 0.49, "ifr": 0.03, "ece": 0.043, "auroc": 0.703, "pr_p": 0.983, "pr_n": 0.593, "brier": 0.394}
    assert objective(metrics) == 0.4958


def test_the_documented_default_weights_are_the_objectives() -> None:
    import re
    from pathlib import Path

    from tprompt.metric_specs import metric_spec

    text = " ".join((Path(__file__).resolve().parents[1] / "docs" / "tasks.md").read_text(encoding="utf-8").split())
    sentence = text[text.index("The objective is a weighted mean of"):].split(";")[0]
    documented = {label.removeprefix("1 − "): float(w) for label, w in re.findall(r"(1 − \w+|[\w-]+) \(([\d.]+)\)", sentence)}
    defaults = {metric_spec(name).label: w for name, w in ObjectiveWeights().model_dump().items()}
    assert documented == defaults


def test_the_open_metrics_are_named_once_in_the_table() -> None:
    # The built-in open-ended metrics: their specs are the table's, each paired with its function by name, and
    # the config's and --metric's help list the table's names (not a copy of them).
    from tprompt.commands._score_options import METRIC_OPTION
    from tprompt.config import RunConfig
    from tprompt.evaluator import open_metrics
    from tprompt.evaluator.registry import builtin_names
    from tprompt.metric_specs import DEFAULT_OPEN_METRICS, OPEN_METRICS

    names = [m.name for m in OPEN_METRICS]
    assert sorted(open_metrics.__all__) == sorted(names)
    # Every built-in of the table is nameable without an import path; other names there are plug-ins an earlier
    # test registered in this process (register_metric), never functions of open_metrics.
    assert set(names) <= set(builtin_names())
    assert not {n for n in builtin_names() if n not in names and hasattr(open_metrics, n)}
    assert set(DEFAULT_OPEN_METRICS) <= set(names)
    described = RunConfig.model_fields["metrics"].description or ""
    assert f"({', '.join(names)})" in described and all(n in (METRIC_OPTION.help or "") for n in names)


def test_labels_and_directions_come_from_the_table() -> None:
    from tprompt.evaluator import HIGHER_IS_BETTER, PARETO_METRICS
    from tprompt.metric_specs import known_first, metric_spec

    assert metric_spec("ece").long_label == "ECE (lower is better)"
    assert metric_spec("ifr").long_label == "IFR (format followed)"
    assert metric_spec("accuracy").long_label == "accuracy"
    assert [n for n, up in HIGHER_IS_BETTER.items() if not up] == ["ece", "brier"]
    assert PARETO_METRICS == ("accuracy", "ifr", "ece", "auroc", "pr_p", "pr_n")
    assert metric_spec("brier").goodness(0.25) == 0.75
    assert known_first(["zeta", "brier", "accuracy", "brier", "alpha"]) == ["accuracy", "brier", "alpha", "zeta"]


_NAMES = {"accuracy", "ifr", "ece", "auroc", "pr_p", "pr_n", "brier"}


def metric_lists(root) -> list[str]:
    """``path:line`` of every literal list/tuple/set of metric names, or name -> constant table, outside the table.

    Four or more of the metric names as string constants in one literal, or as the keys of a dict whose
    values are constants (labels, directions): a second table. Computed values (``{"ece": ece(...)}``)
    and tests and benchmarks aside.
    """
    import ast

    found = []
    for path in sorted(root.rglob("*.py")):
        rel = path.relative_to(root)
        if rel.parts[0] in ("tests", "benchmarks", "build") or rel.parts[0].startswith(".") or rel.name == "metric_specs.py":
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, (ast.Tuple, ast.List, ast.Set)):
                items = node.elts
            elif isinstance(node, ast.Dict) and all(isinstance(v, ast.Constant) for v in node.values):
                items = [k for k in node.keys if k is not None]
            else:
                continue
            names = {i.value for i in items if isinstance(i, ast.Constant) and i.value in _NAMES}
            if len(names) >= 4:
                found.append(f"{rel}:{node.lineno}")
    return found


def test_no_second_list_of_metric_names() -> None:
    from pathlib import Path

    assert metric_lists(Path(__file__).resolve().parents[1]) == []


def test_the_list_check_sees_a_list(tmp_path) -> None:
    (tmp_path / "commands").mkdir()
    (tmp_path / "commands" / "evaluate.py").write_text(
        'LABELS = {"accuracy": "accuracy", "ifr": "IFR", "ece": "ECE", "auroc": "AUROC"}\n'
        'computed = {"accuracy": f(), "ifr": g(), "ece": h(), "auroc": i()}\n'
        'ORDER = ("accuracy", "ifr", "ece", "brier")\n')
    assert metric_lists(tmp_path) == ["commands/evaluate.py:1", "commands/evaluate.py:3"]
