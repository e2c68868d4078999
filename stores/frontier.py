"""The Pareto pool of a stage: the candidates best on at least one training example, projected from events.

GEPA (arXiv 2507.19457) picks the parent of each proposal from a per-example
Pareto front instead of the single best candidate: a prompt that is the only
one to get some example right keeps its chance to be improved on, although its
mean is lower. Here the front is a pure function of recorded events:

* :func:`example_scores` reads a stage's training answers
  (``candidate.answered``: ``correct`` is the accuracy of one example,
  ``followed_format`` its IFR), the judge's per-example scores
  (``candidate.judged``: ``judge_<criterion>``) and the metric plug-ins'
  per-example values (``candidate.scored`` ``example_values``), and keeps the
  metrics with a positive weight in the run's objective. Every value is
  brought to "higher is better" with the metric's spec (ECE-like metrics are
  flipped), so each (metric, task, example) is one key to be best on.
  Accuracy and IFR are keys only on the tasks whose ``candidate.scored``
  metrics name them: an open-ended task's answers carry no gold to be right
  on, and its objective leaves both out.
* :func:`pareto_frontier` is the rule: a candidate is on the front when it is
  best (ties included) on at least one key and no other candidate dominates it
  (at least as good on every key, better on one). A key a candidate was not
  scored on (racing dropped it early) counts as worse than any value.

Only candidates with a ``candidate.scored`` in the stage count (a set of
answers not yet evaluated is not a scored candidate). Set-level metrics (ECE,
AUROC, AUPRC) have no per-example value and are not keys.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from ..metric_specs import is_registered, metric_spec
from .events import CandidateAnswered, CandidateJudged, CandidateScored, Event, Stage, StoredEvent

#: One thing to be best on: (metric, task, example id).
Key = tuple[str, str, str]
#: prompt id -> key -> goodness (higher is better)
ScoreTable = dict[str, dict[Key, float]]


@dataclass(frozen=True, slots=True)
class Frontier:
    """A stage's Pareto pool: its members (in the order they were first scored) and what each is best on."""

    stage: Stage
    members: tuple[str, ...]
    #: member -> the keys it is best on (ties included)
    wins: dict[str, tuple[Key, ...]]
    #: every candidate scored in the stage, in the order first scored
    candidates: tuple[str, ...]
    keys: int


def _goodness(metric: str, value: float) -> float:
    return metric_spec(metric).goodness(value) if is_registered(metric) else value


def example_scores(events: Iterable[StoredEvent | Event], stage: Stage,
                   weights: Mapping[str, float]) -> ScoreTable:
    """Per-example goodness of every candidate scored in ``stage``, over the metrics weighed above 0.

    ``weights`` are the run's objective weights by metric name (the seven's
    defaults included: ``ObjectiveWeights().model_dump()``). A metric plug-in they do
    not name weighs 1 (as in the objective), a judge criterion 0. Racing
    re-scores a candidate on a larger set at each rung: the latest value of a
    key is kept (the same answer, recorded again).
    """

    def weighted(metric: str, plugin: bool = False) -> bool:
        return weights.get(metric, 1.0 if plugin else 0.0) > 0

    table: ScoreTable = {}
    scored: list[str] = []
    answered: ScoreTable = {}  # accuracy and IFR per example, kept for the tasks whose scores name them
    computed: dict[str, set[str]] = {}  # task -> the metrics its candidates were scored on
    for item in events:
        ev = item.event if isinstance(item, StoredEvent) else item
        if getattr(ev, "stage", None) != stage or getattr(ev, "split", "train") != "train":
            continue
        if isinstance(ev, CandidateAnswered):
            row = answered.setdefault(ev.prompt_id, {})
            for a in ev.answers:
                for metric, hit in (("accuracy", a.correct), ("ifr", a.followed_format)):
                    if weighted(metric):
                        row[(metric, ev.task, a.example_id)] = float(hit)
        elif isinstance(ev, CandidateJudged):
            row = table.setdefault(ev.prompt_id, {})
            for j in ev.judgements:
                metric = f"judge_{j.criterion}"
                if j.score is not None and weighted(metric):
                    row[(metric, ev.task, j.example_id)] = _goodness(metric, j.score)
        elif isinstance(ev, CandidateScored):
            if ev.prompt_id not in scored:
                scored.append(ev.prompt_id)
            computed.setdefault(ev.task, set()).update(ev.metrics, ev.undefined)
            row = table.setdefault(ev.prompt_id, {})
            for metric, per in ev.example_values.items():
                if weighted(metric, plugin=True):
                    for example_id, got in per.items():
                        row[(metric, ev.task, example_id)] = _goodness(metric, got)
    for pid, row in answered.items():  # an open-ended task has no accuracy or IFR: its answers are no such keys
        table.setdefault(pid, {}).update({k: v for k, v in row.items() if k[0] in computed.get(k[1], ())})
    return {pid: table.get(pid, {}) for pid in scored}


def pareto_frontier(scores: Mapping[str, Mapping[Key, float]]) -> tuple[list[str], dict[str, tuple[Key, ...]]]:
    """The candidates best on at least one key and dominated by none (in ``scores``' order), and their wins.

    With no key at all (nothing per example was recorded) every candidate is
    on the front: nothing tells them apart per example.
    """
    ids = list(scores)
    keys = sorted({k for row in scores.values() for k in row})
    if not keys:
        return ids, dict.fromkeys(ids, ())
    worst = float("-inf")
    vectors = {pid: [scores[pid].get(k, worst) for k in keys] for pid in ids}
    best = [max(vectors[pid][i] for pid in ids) for i in range(len(keys))]
    wins = {pid: tuple(k for i, k in enumerate(keys) if vectors[pid][i] == best[i] > worst) for pid in ids}

    def dominated(pid: str) -> bool:
        mine = vectors[pid]
        return any(
            all(x >= y for x, y in zip(vectors[o], mine)) and any(x > y for x, y in zip(vectors[o], mine))
            for o in ids if o != pid
        )

    members = [pid for pid in ids if wins[pid] and not dominated(pid)]
    return members, {pid: wins[pid] for pid in members}


def stage_frontier(events: Iterable[StoredEvent | Event], stage: Stage, weights: Mapping[str, float]) -> Frontier:
    """``stage``'s Pareto pool as recorded in ``events`` (see the module doc)."""
    table = example_scores(events, stage, weights)
    members, wins = pareto_frontier(table)
    return Frontier(stage=stage, members=tuple(members), wins=wins, candidates=tuple(table),
                    keys=len({k for row in table.values() for k in row}))


__all__ = ("Frontier", "Key", "ScoreTable", "example_scores", "pareto_frontier", "stage_frontier")
