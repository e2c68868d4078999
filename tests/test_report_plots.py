"""What the report's plots draw (issue 33, "reports that mean something"), read back from the figures.

Small fake-model runs: a two-seed experiment cell, a one-seed run, an open-ended run.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tprompt.experiments.grid import find_experiment, plan_experiment, run_experiment
from tprompt.experiments.plots import curves_figure, group_figures, pareto_figure, reliability_figure
from tprompt.experiments.report import build_report, replay_test_answers, write_report
from tprompt.graph import Runner, create_run, make_config
from tprompt.stores import EventLog
from tprompt.stores.curves import score_curve

RUN = {"steps": 2, "candidates": 2, "examples": 4, "test_examples": 6, "mode": "logprob"}
GRID = {"name": "plots", "models": ["fake"], "sources": ["ai2_science"], "targets": ["arc_challenge"],
        "seeds": [0, 1], "run": RUN}


@pytest.fixture(scope="module")
def grid(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    log = EventLog(tmp_path_factory.mktemp("plots") / "grid.db")
    run_experiment(log, plan_experiment(GRID))
    yield log, build_report(log, experiment=find_experiment(log, "plots")).groups[0]
    log.close()


def _one_run(db: Path, **overrides: object) -> tuple[EventLog, str]:
    log = EventLog(db)
    run_id = create_run(log, make_config({"source_tasks": ["ai2_science"], "target_task": "arc_challenge",
                                          "proposer": "fake", "scorer": "fake", **RUN, **overrides}))
    Runner(log, run_id).run()
    return log, run_id


@pytest.fixture(scope="module")
def one_seed(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    log, run_id = _one_run(tmp_path_factory.mktemp("one") / "one.db", steps=3)
    yield log, run_id, build_report(log, run_id=run_id).groups[0]
    log.close()


def _close(fig) -> None:  # type: ignore[no-untyped-def]
    import matplotlib.pyplot as plt

    plt.close(fig)


def _legend_beside_the_panels(fig) -> None:  # type: ignore[no-untyped-def]
    """One figure legend, right of every panel: no panel has a legend of its own, none overlaps it."""
    fig.canvas.draw()
    assert all(ax.get_legend() is None for ax in fig.axes)
    (legend,) = fig.legends
    box = legend.get_window_extent()
    assert all(box.x0 >= ax.get_window_extent().x1 for ax in fig.axes)


def test_open_ended_run_has_no_reliability_diagram_and_no_ece(tmp_path: Path) -> None:
    log, run_id = _one_run(tmp_path / "open.db", source_tasks=["pubmedqa_long"], target_task="pubmedqa_long",
                           metrics=["rouge_l"], mode="generate", steps=1, test_examples=4)
    with log:
        group = build_report(log, run_id=run_id).groups[0]
        assert replay_test_answers(log, run_id, "best_target") is None  # no confidence to replay
        assert reliability_figure(log, group) is None and pareto_figure(log, group) is None
        figures = group_figures(log, group)
        assert [name for _, name, _ in figures] == ["curves"]
        for _, _, fig in figures:
            _close(fig)
        write_report(log, build_report(log, run_id=run_id), tmp_path / "out")
    text = (tmp_path / "out" / "report.md").read_text()
    assert "Reliability" not in text and "ECE" not in text and "| ece" not in text
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["01-pubmedqa_long-curves.png", "report.md"]


def test_curves_put_each_stage_on_its_own_panels_with_integer_step_ticks(grid) -> None:  # type: ignore[no-untyped-def]
    log, group = grid
    fig = curves_figure(log, group)
    try:
        (src_step, src_calls), (tgt_step, tgt_calls) = fig.axes[:2], fig.axes[2:]
        assert src_step.get_title().startswith("Source stage") and tgt_step.get_title().startswith("Target stage")
        assert src_calls.get_title() == "Source stage: best objective per scorer call" == tgt_calls.get_title().replace(
            "Target", "Source")
        assert "source tasks' training examples" in src_step.get_ylabel()
        assert "target task's training examples" in tgt_step.get_ylabel()
        fig.canvas.draw()
        for ax in fig.axes:  # steps and calls are whole numbers: so are the ticks
            assert all(float(t).is_integer() for t in ax.get_xticks())
        # Each stage's panel holds that stage's curves and no other: the source panel only the transfer runs'.
        for ax, stage in ((src_step, "source"), (tgt_step, "target")):
            per_seed = sorted(tuple(line.get_ydata()) for line in ax.get_lines() if "each seed" in line.get_label())
            want = sorted(tuple(score_curve(log.state(r.run_id), stage).best) for r in group.runs
                          if score_curve(log.state(r.run_id), stage).steps)
            assert per_seed == want
        assert {line.get_label() for line in src_step.get_lines()} == {
            "Transfer-Prompting, each seed", "Transfer-Prompting (mean over seeds)"}
        _legend_beside_the_panels(fig)
    finally:
        _close(fig)


def test_one_seed_is_not_pooled_and_several_are(grid, one_seed) -> None:  # type: ignore[no-untyped-def]
    log, group = grid
    fig = reliability_figure(log, group)
    try:
        assert "pooled over 2 seeds" in fig._suptitle.get_text()
        _legend_beside_the_panels(fig)
    finally:
        _close(fig)
    log, _, group = one_seed
    fig = reliability_figure(log, group)
    try:
        title = fig._suptitle.get_text()
        assert "pooled" not in title and "seed 0" in title
    finally:
        _close(fig)
    fig = curves_figure(log, group)
    try:
        labels = {line.get_label() for ax in fig.axes for line in ax.get_lines()}
        assert not any("mean" in label or "each seed" in label for label in labels)
        fig.canvas.draw()
        assert all(float(t).is_integer() for t in fig.axes[0].get_xticks())
        assert list(fig.axes[0].get_lines()[0].get_xdata()) == [0, 1, 2, 3]
    finally:
        _close(fig)


def test_pareto_puts_training_candidates_and_test_points_on_separate_panels(grid) -> None:  # type: ignore[no-untyped-def]
    log, group = grid
    fig = pareto_figure(log, group)
    try:
        train, test = fig.axes
        assert "Training candidates" in train.get_title() and "test split" in test.get_title()
        train_labels = [c.get_label() for c in train.collections] + [ln.get_label() for ln in train.get_lines()]
        test_labels = [c.get_label() for c in test.collections] + [ln.get_label() for ln in test.get_lines()]
        assert train_labels and all("(train)" in label for label in train_labels)
        assert "Pareto front (train)" in train_labels
        assert sorted(test_labels) == sorted(f"{a}: test split" for a in
                                             ("original prompt", "target-only (OPRO)", "Transfer-Prompting"))
        # The test panel's points are the test rows, nothing else.
        points = sorted(tuple(xy) for c in test.collections for xy in c.get_offsets().tolist())
        assert points == sorted((s.values["ece"], s.values["accuracy"]) for s in group.samples)
        _legend_beside_the_panels(fig)
    finally:
        _close(fig)
