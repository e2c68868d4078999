"""The Pareto pool: a pure projection from per-example scores (events) to the candidates best somewhere."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from tprompt.stores.events import Answer, CandidateAnswered, CandidateJudged, CandidateScored, Judgement
from tprompt.stores.frontier import Key, example_scores, pareto_frontier, stage_frontier

KEYS: list[Key] = [(m, "t", f"e{i}") for m in ("accuracy", "rouge_l") for i in range(4)]

tables = st.dictionaries(
    st.sampled_from([f"p{i}" for i in range(6)]),
    st.dictionaries(st.sampled_from(KEYS), st.sampled_from([0.0, 0.25, 0.5, 1.0])),
    min_size=1, max_size=6,
)


def _dominates(a: dict[Key, float], b: dict[Key, float], keys: list[Key]) -> bool:
    inf = float("-inf")
    pairs = [(a.get(k, inf), b.get(k, inf)) for k in keys]
    return all(x >= y for x, y in pairs) and any(x > y for x, y in pairs)


@settings(max_examples=300, deadline=None)
@given(tables)
def test_the_front_is_the_best_somewhere_and_undominated(table: dict[str, dict[Key, float]]) -> None:
    members, wins = pareto_frontier(table)
    keys = sorted({k for row in table.values() for k in row})
    assert list(wins) == members
    assert [p for p in table if p in members] == members  # in the table's order
    if not keys:
        assert members == list(table)
        return
    best = {k: max(row[k] for row in table.values() if k in row) for k in keys}
    for pid, row in table.items():
        best_somewhere = [k for k in keys if row.get(k) == best[k]]
        undominated = not any(_dominates(table[o], row, keys) for o in table if o != pid)
        assert (pid in members) == (bool(best_somewhere) and undominated)
        if pid in members:
            assert set(wins[pid]) == set(best_somewhere)
    # every key's best value is held by some member (the front covers every example)
    for k in keys:
        assert any(table[m].get(k) == best[k] for m in members)


@settings(max_examples=100, deadline=None)
@given(tables, st.randoms(use_true_random=False))
def test_the_front_does_not_depend_on_the_order_of_candidates(table: dict[str, dict[Key, float]], rnd) -> None:
    order = list(table)
    rnd.shuffle(order)
    shuffled = {p: table[p] for p in order}
    assert set(pareto_frontier(shuffled)[0]) == set(pareto_frontier(table)[0])


def test_a_candidate_worse_on_average_stays_when_it_alone_gets_an_example_right() -> None:
    table = {"a": {("accuracy", "t", "1"): 1.0, ("accuracy", "t", "2"): 1.0, ("accuracy", "t", "3"): 0.0},
             "b": {("accuracy", "t", "1"): 0.0, ("accuracy", "t", "2"): 0.0, ("accuracy", "t", "3"): 1.0},
             "c": {("accuracy", "t", "1"): 1.0, ("accuracy", "t", "2"): 0.0, ("accuracy", "t", "3"): 0.0}}
    members, wins = pareto_frontier(table)
    assert members == ["a", "b"]  # c ties a on example 1 but a dominates it
    assert wins["b"] == (("accuracy", "t", "3"),)


def _answered(pid: str, correct: list[bool], stage: str = "source") -> CandidateAnswered:
    return CandidateAnswered(
        stage=stage, step=1, prompt_id=pid, text=pid, task="t",  # type: ignore[arg-type]
        answers=[Answer(example_id=f"e{i}", parsed="A", confidence=1.0, followed_format=True, correct=c)
                 for i, c in enumerate(correct)],
    )


def _scored(pid: str, stage: str = "source", metrics: dict[str, float] | None = None,
            **extra: object) -> CandidateScored:
    return CandidateScored(stage=stage, step=1, prompt_id=pid, text=pid, task="t", n_examples=2,  # type: ignore[arg-type]
                           metrics={"accuracy": 0.5, "ifr": 1.0} if metrics is None else metrics,
                           objective=0.0, **extra)  # type: ignore[arg-type]


def test_scores_come_from_the_recorded_answers_judgements_and_plugin_values() -> None:
    events = [
        _answered("a", [True, False]), _scored("a", example_values={"rouge_l": {"e0": 0.2, "e1": 0.9}}),
        _answered("b", [True, True]), _scored("b", example_values={"rouge_l": {"e0": 0.3, "e1": 0.1}}),
        CandidateJudged(stage="source", step=1, prompt_id="b", task="t", judge="fake", rubric="r",
                        judgements=[Judgement(example_id="e0", criterion="fluency", score=4.0)]),
        _answered("c", [True, True], stage="target"), _scored("c", stage="target"),
        _answered("d", [False, False]),  # answered, never evaluated: not a candidate of the pool
    ]
    weights = {"accuracy": 0.5, "ifr": 0.0, "ece": 0.1, "rouge_l": 1.0, "judge_fluency": 1.0}
    table = example_scores(events, "source", weights)
    assert set(table) == {"a", "b"}
    assert table["a"] == {("accuracy", "t", "e0"): 1.0, ("accuracy", "t", "e1"): 0.0,
                          ("rouge_l", "t", "e0"): 0.2, ("rouge_l", "t", "e1"): 0.9}
    assert table["b"][("judge_fluency", "t", "e0")] == 4.0  # the scale does not matter: one key, one metric
    front = stage_frontier(events, "source", weights)
    assert front.members == ("a", "b")  # a alone is best on e1's ROUGE-L; b on the rest
    # A metric weighed 0 is no key: on accuracy alone b dominates a. A plug-in the weights do not name
    # weighs 1 (as in the objective), a judge criterion 0.
    assert stage_frontier(events, "source", {"accuracy": 1.0, "rouge_l": 0.0}).members == ("b",)
    assert stage_frontier(events, "source", {"accuracy": 1.0}).members == ("a", "b")
    assert ("judge_fluency", "t", "e0") not in example_scores(events, "source", {"accuracy": 1.0})["b"]


def test_an_open_ended_task_has_no_accuracy_or_ifr_keys() -> None:
    # A free-text task scored by a plug-in alone: its answers' correct/followed_format are no metric of the
    # run (the objective leaves them out), so they are no keys either; the pool counts the plug-in's 2 keys.
    events = [
        _answered("a", [False, False]), _scored("a", metrics={"iso_date": 0.5},
                                                example_values={"iso_date": {"e0": 1.0, "e1": 0.0}}),
        _answered("b", [False, False]), _scored("b", metrics={"iso_date": 0.5},
                                                example_values={"iso_date": {"e0": 0.0, "e1": 1.0}}),
    ]
    weights = {"accuracy": 0.5, "ifr": 0.2}
    assert example_scores(events, "source", weights)["a"] == {("iso_date", "t", "e0"): 1.0,
                                                              ("iso_date", "t", "e1"): 0.0}
    front = stage_frontier(events, "source", weights)
    assert front.keys == 2 and front.wins == {"a": (("iso_date", "t", "e0"),), "b": (("iso_date", "t", "e1"),)}
