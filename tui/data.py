"""What the screens show, computed from the event log without any Textual.

Pure functions and small caches over :class:`~tprompt.stores.EventLog` reads,
so the view logic is testable on its own and the widgets only lay it out.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any, assert_never

from rich.text import Text

from .._text import printable, printable_json
from ..errors import TPromptError
from ..evaluator import registry as _registry  # noqa: F401  (registers the built-in plug-in metrics' labels)
from ..metric_specs import known_first
from ..stores import EventLog, RunState, StoredEvent, events, fold
from ..stores.curves import Curve, score_curve
from ..stores.events import Answered, Event, Judged, Judgement, PromptCandidate, Stage
from ..stores.frontier import Frontier
from ..stores.listing import run_summaries
from ..stores.log import gc_paused
from ..stores.projection import ScoredPrompt
from ..stores.summary import RunSummary, best_of, best_scored, summarize
from ._literal import LiteralText

#: style of the event column, by event class (every class has one; a test checks)
EVENT_STYLE: dict[type[Event], str] = {
    events.RunCreated: "bold",
    events.RunForked: "bold magenta",
    events.StageStarted: "bold cyan",
    events.StageCompleted: "bold cyan",
    events.StepProposed: "yellow",
    events.StepRevised: "italic yellow",
    events.CandidateAnswered: "dim",
    events.TestAnswered: "dim",
    events.CandidateJudged: "blue",
    events.TestJudged: "blue",
    events.CandidateScored: "",
    events.StepCompleted: "green",
    events.TransferSelected: "magenta",
    events.PromptTested: "bold green",
    events.RunPaused: "cyan",
    events.RunResumed: "cyan",
    events.RunCompleted: "bold green",
    events.RunFailed: "bold red",
}


def fmt(value: float | None, digits: int = 3) -> str:
    """A number for a table cell: fixed digits, "-" when undefined."""
    if value is None or (isinstance(value, float) and value != value):
        return "-"
    return f"{value:.{digits}f}"


def one_line(text: str, width: int = 80) -> str:
    """``text`` on one line of at most ``width`` characters, control characters escaped (:func:`printable`).

    Escaped before flattening: ``str.split`` also breaks at CR, NEL and other controls,
    which would otherwise vanish instead of showing.
    """
    flat = " ".join(printable(text).split())
    return flat if len(flat) <= width else flat[: width - 1] + "…"


class RunsModel:
    """The runs browser's data: each run's stored summary row, or the run folded where it has none.

    Polling it every half second costs one small query while nothing changes.
    """

    def __init__(self, log: EventLog) -> None:
        self.log = log
        self._states: dict[str, RunState] = {}  # runs without a current summary, folded so far
        self._stamp: tuple[Any, ...] | None = None

    def changed(self) -> bool:
        """True when some run was added or written since the last :meth:`summaries`."""
        return self._fingerprint() != self._stamp

    def _fingerprint(self) -> tuple[Any, ...]:
        return self.log.change_stamp()

    def summaries(self) -> list[RunSummary]:
        """Every run, oldest first."""
        self._stamp = self._fingerprint()
        return run_summaries(self.log, self._states)


class RunFollower:
    """A run's events and state, extended incrementally as the run grows.

    Keeps the state every :data:`CHECKPOINT_EVERY` events, so the replay view
    of any seq folds at most that many events.
    """

    CHECKPOINT_EVERY = 1024

    def __init__(self, log: EventLog, run_id: str) -> None:
        self.log = log
        self.run_id = log.resolve(run_id)
        self.events: list[StoredEvent] = []
        self.state = RunState(run_id=self.run_id)
        self._checkpoints: dict[int, RunState] = {}
        #: why reading stopped early at the last poll (a damaged event), if it did
        self.error: str | None = None

    def poll(self) -> list[StoredEvent]:
        """Read the events appended since the last poll; returns them (often none).

        A damaged event stops the reading there: the events before it are
        kept, and :attr:`error` says what is wrong (the next poll tries again).
        """
        with gc_paused():  # as log.state does: reading a long run makes no cycles
            return self._poll()

    def _poll(self) -> list[StoredEvent]:
        fresh: list[StoredEvent] = []
        self.error = None
        try:
            for se in self.log.events(self.run_id, after=self.state.last_seq):
                fresh.append(se)
        except TPromptError as exc:
            self.error = str(exc)
        # One fold per checkpoint interval, not one state copy per event: opening a
        # long run costs about one fold of it.
        start = 0
        while start < len(fresh):
            first_seq = fresh[start].seq
            stop = start + (self.CHECKPOINT_EVERY - first_seq % self.CHECKPOINT_EVERY) % self.CHECKPOINT_EVERY + 1
            chunk = fresh[start:stop]
            self.state = fold(chunk, run_id=self.run_id, state=self.state)
            if self.state.last_seq % self.CHECKPOINT_EVERY == 0:
                self._checkpoints[self.state.last_seq] = self.state
            start = stop
        self.events.extend(fresh)
        return fresh

    def state_at(self, seq: int) -> RunState:
        """The replay view: the run's state right after event ``seq``."""
        base_seq = (seq // self.CHECKPOINT_EVERY) * self.CHECKPOINT_EVERY
        base = self._checkpoints.get(base_seq)
        if base is None:
            base_seq, base = 0, RunState(run_id=self.run_id)
        # A history is gapless from seq 1, so events[i] has seq i + 1.
        return fold(self.events[base_seq:seq], run_id=self.run_id, state=base)


# -- one-line descriptions of events -----------------------------------------------


def where(se: StoredEvent) -> str:
    """Stage and step of an event ("source 2", "target", "") for the timeline."""
    ev = se.event
    stage = getattr(ev, "stage", None)
    step = getattr(ev, "step", None)
    if stage is None:
        return ""
    return stage if step is None else f"{stage} {step}"


def describe(se: StoredEvent) -> str:
    """A plain one-line summary of an event (model text included verbatim; render it literally)."""
    ev = se.event
    match ev:
        case events.RunCreated():
            return f"{', '.join(ev.source_tasks) or '-'} -> {ev.target_task}"
        case events.RunForked():
            base = f"from {ev.parent_run_id} at seq {ev.parent_seq} onto {ev.target_task}"
            return base + (f" (prompt {ev.from_prompt_id})" if ev.from_prompt_id else "")
        case events.StageStarted():
            return ", ".join(ev.tasks)
        case events.StepProposed():
            text = f"{len(ev.candidates)} candidate(s)"
            if ev.rejected:
                text += f", {len(ev.rejected)} rejected"
            if ev.parent_id is not None:  # the reflective style: the parent, and its answers the proposer read
                text += f", improving {ev.parent_id} from {len(ev.shown)} answer(s) with feedback"
            return text
        case events.StepRevised():
            return f"{len(ev.candidates)} candidate(s) after {ev.by}"
        case events.CandidateAnswered() | events.TestAnswered():
            right = sum(a.correct for a in ev.answers)
            return f"{ev.prompt_id} on {ev.task} {answers_where(ev)}: {right}/{len(ev.answers)} right"
        case events.CandidateJudged() | events.TestJudged():
            return judged_summary(ev)
        case events.CandidateScored():
            rung = f" rung {ev.rung}" if ev.rung else ""
            return f"{ev.prompt_id} on {ev.task}{rung}: {fmt(ev.objective)} ({ev.n_examples} ex)"
        case events.StepCompleted():
            stop = " (stop)" if ev.stop else ""
            return f"best {ev.best_prompt_id or '-'} {fmt(ev.best_objective)}{stop}"
        case events.StageCompleted():
            return "top-k " + ", ".join(ev.top_k)
        case events.TransferSelected():
            return f"{len(ev.prompts)} prompt(s) -> {ev.target_task}"
        case events.PromptTested():
            return f"{ev.role} {ev.prompt_id}: {fmt(ev.objective)} on {ev.n_examples} test ex"
        case events.RunPaused():
            return ev.reason
        case events.RunFailed():
            return one_line(ev.error, 60)
        case events.RunResumed() | events.RunCompleted():
            return ""
        case _:
            assert_never(ev)


def answers_where(ev: Answered | Judged) -> str:
    """Which answers an answer set or its judgement is about: ``test (original)``, ``rung 1`` or ``train``."""
    if isinstance(ev, (events.TestAnswered, events.TestJudged)):
        return f"test ({ev.role})"
    return f"rung {ev.rung}" if ev.rung else "train"


def judged_summary(ev: Judged) -> str:
    """``p-1 on arc train: relevance 3.8, fluency 4.1 (2 unparsed)``: each criterion's mean score on the rubric's scale."""
    where = answers_where(ev)
    by: dict[str, list[float]] = {}
    for j in ev.judgements:
        by.setdefault(j.criterion, [])
        if j.score is not None:
            by[j.criterion].append(j.score)
    parts = [f"{c} {fmt(sum(v) / len(v), 2) if v else '-'}" for c, v in by.items()]
    text = f"{ev.prompt_id} on {ev.task} {where}: " + (", ".join(parts) or "no judgements")
    return text + (f" ({ev.unparsed} unparsed)" if ev.unparsed else "")


def graph_text(successors: dict[str, list[str]], active: str | None, label: str = "") -> Text:
    """The state machine as a list of nodes and where each may lead, ``active`` highlighted."""
    width = max(len(n) for n in successors)
    text = Text()
    for node, nexts in successors.items():
        mark = "▶ " if node == active else "  "
        style = "reverse bold" if node == active else ""
        text.append(mark)
        text.append(node.ljust(width), style=style)
        text.append(" → " + " | ".join("END" if n == "__end__" else n for n in nexts))
        if node == active and label:
            text.append(f"   ◀ {label}", style="bold")
        text.append("\n")
    if active is not None and active not in successors:
        text.append(f"▶ {active} (a node added to this run's graph)  ◀ {label}\n", style="bold")
    return text


def spend_text(spend: list[tuple[str, str, int, int, int, float | None]]) -> Text:
    """The spend table of the Scores tab (one rule with ``tprompt show``: :func:`models.pricing.spend_rows`)."""
    from ..models.pricing import SPEND_COLUMNS, spend_rows

    text = Text("spend (calls answered by a model)\n", style="bold")
    if not spend:
        text.append("no call of this run was answered by a model (all from the cache, or none yet)\n")
        return text
    # Agent, stage and model names come from the log: escaped before the columns are measured.
    rows = [SPEND_COLUMNS, *([printable(c) for c in row] for row in spend_rows(spend))]
    widths = [max(len(r[i]) for r in rows) for i in range(len(SPEND_COLUMNS))]
    for n, row in enumerate(rows):
        cells = [c.ljust(w) if i < 2 else c.rjust(w) for i, (c, w) in enumerate(zip(row, widths))]
        text.append("  ".join(cells) + "\n", style="dim" if n == 0 else "")
    priced = any(r[5] is not None for r in spend)
    if not priced:
        text.append("(no price known for these models: local, or not in the price table)\n", style="dim")
    return text


def payload_json(se: StoredEvent) -> str:
    """The event's envelope and payload as indented JSON (for the detail pane), with no raw control character."""
    data = {
        "run_id": se.run_id,
        "seq": se.seq,
        "type": se.type,
        "event_id": se.event_id,
        "payload": se.event.model_dump(mode="json"),
    }
    return printable_json(json.dumps(data, indent=2, ensure_ascii=False))


def state_digest(state: RunState) -> str:
    """The replay view: a readable digest of a run's state after some seq."""
    lines = [
        f"status: {state.status}   events: {state.last_seq}",
        f"stage: {state.stage or '-'}   step: {state.step}"
        + (f"   in flight: step {state.in_flight}" if state.in_flight is not None else ""),
        f"source: {', '.join(state.source_tasks) or '-'}   target: {state.target_task or '-'}",
    ]
    if state.pending:
        lines.append(f"pending candidates: {', '.join(c.prompt_id for c in state.pending)}")
    for stage in ("source", "target"):
        found = best_scored(state, stage)
        if found is not None:
            best, objective = found
            lines.append(f"best {stage}: {best.prompt_id} {fmt(objective)} (step {best.step})")
            lines.append("  " + one_line(best.text, 200))
        if stage in state.top_k:
            lines.append(f"top-k {stage}: {', '.join(state.top_k[stage])}")
    calls = {k: v for k, v in state.scorer_calls.items() if v}
    if calls:
        lines.append("scorer calls: " + ", ".join(f"{k} {v}" for k, v in calls.items()))
    for role, tested in state.tested.items():
        lines.append(f"test {role}: {tested.prompt_id} {fmt(tested.objective)}")
    if state.error:
        lines.append(f"error: {state.error}")
    return "\n".join(lines)


# -- scores -------------------------------------------------------------------------


def metric_names(scores: Iterable[ScoredPrompt]) -> list[str]:
    """The metric columns to show: the run's own metrics, the registered ones in registry order, then any others."""
    return known_first(name for s in scores for name in s.metrics)


class Judgements:
    """A run's ``candidate.judged`` and ``test.judged`` events, indexed by candidate and by judge call, grown as the run is followed."""

    def __init__(self) -> None:
        self._by_prompt: dict[tuple[str, str], list[events.CandidateJudged]] = {}
        self._by_call: dict[str, list[tuple[Judged, list[Judgement]]]] = {}

    def add(self, stored: Iterable[StoredEvent]) -> None:
        """Index the judged events among ``stored``."""
        for se in stored:
            ev = se.event
            if not isinstance(ev, (events.CandidateJudged, events.TestJudged)):
                continue
            if isinstance(ev, events.CandidateJudged):
                self._by_prompt.setdefault((ev.prompt_id, ev.task), []).append(ev)
            for j in ev.judgements:
                if j.call_id:
                    by_event = self._by_call.setdefault(j.call_id, [])
                    if not by_event or by_event[-1][0] is not ev:
                        by_event.append((ev, []))
                    by_event[-1][1].append(j)

    def of_candidate(self, s: ScoredPrompt) -> list[Judgement]:
        """The judgements of the answers a score was computed from (same stage, task, training split, rungs up to its own)."""
        return [j for ev in self._by_prompt.get((s.prompt_id, s.task), ())
                if ev.stage == s.stage and ev.rung <= s.rung for j in ev.judgements]

    def of_call(self, call_id: str) -> list[tuple[Judged, list[Judgement]]]:
        """The judgements a judge call returned, per event that recorded them (the candidate and stage judged)."""
        return self._by_call.get(call_id, [])


def judgement_text(judgements: Iterable[Judgement], *, examples: bool = True) -> LiteralText:
    """Each judgement on its lines: ``e-3  relevance 4`` then its rationale, or the reason it has no score.

    Rationales and errors are the judge model's text: appended literally (:class:`LiteralText`).
    """
    text = LiteralText()
    for j in judgements:
        text.append("\n")
        if examples:
            text.append(f"{j.example_id}  ", style="dim")
        text.append(j.criterion, style="bold")
        text.append(f" {fmt(j.score, 2)}" if j.score is not None else " no score", style="" if j.score is not None else "red")
        if j.error:
            text.append(f"\n  {j.error}", style="red")
        if j.rationale:
            text.append("\n  ")
            text.append(j.rationale)
    return text


class Frontiers:
    """Each stage's Pareto pool of a followed run (``--parent-selection pareto``'s parents), projected from its events
    as ``tprompt show`` does, once per stage and number of events."""

    def __init__(self) -> None:
        self._cache: dict[Stage, tuple[int, Frontier]] = {}

    def text(self, stored: list[StoredEvent], state: RunState, stage: Stage, prompt_id: str) -> LiteralText:
        """Whether ``prompt_id`` is in ``stage``'s pool, the keys it is best on, and the pool's members."""
        if state.config is None:
            return LiteralText()
        cached = self._cache.get(stage)
        if cached is None or cached[0] != len(stored):
            from ..graph.parents import run_frontier

            cached = (len(stored), run_frontier(stored, state.config, stage))
            self._cache[stage] = cached
        front = cached[1]
        if not front.candidates:
            return LiteralText()
        text = LiteralText()
        text.append(f"\n\nPareto pool, {stage} stage: {len(front.members)} of {len(front.candidates)} candidates, "
                    f"{front.keys} per-example keys", style="bold")
        wins = front.wins.get(prompt_id, ())
        if prompt_id in front.members:
            text.append(f"\n{prompt_id} is in the pool: best (ties too) on {len(wins)} key(s)")
        else:
            text.append(f"\n{prompt_id} is not in the pool: on every key another candidate does better")
        text.append("\nmembers: " + ", ".join(f"{m} ({len(front.wins.get(m, ()))})" for m in front.members))
        return text


def prompt_set(stored: Iterable[StoredEvent], prompt_id: str) -> PromptCandidate | None:
    """A program's candidate ``prompt_id`` as its step proposed it (its set and the prompt it rewrote), or None:
    not a program's candidate."""
    found = None
    for se in stored:
        ev = se.event
        if isinstance(ev, (events.StepProposed, events.StepRevised, events.TransferSelected)):
            for c in ev.candidates if not isinstance(ev, events.TransferSelected) else ev.prompts:
                if c.prompt_id == prompt_id and c.prompts is not None:
                    found = c if found is None or c.changed is not None else found
    return found


def prompt_set_box(candidate: PromptCandidate) -> LiteralText:
    """Every prompt of a program's candidate under its name, the one it rewrote marked."""
    text = LiteralText()
    for n, (name, body) in enumerate((candidate.prompts or {}).items()):
        text.append(("\n\n" if n else "") + f"[{name}]", style="bold")
        if name == candidate.changed:
            text.append("  * rewritten in this step", style="bold yellow")
        text.append("\n" + printable(body))
    return text


def prompt_set_line(candidate: PromptCandidate, width: int = 200) -> str:
    """A program's candidate on one line: each prompt as ``[name] text``, the rewritten one as ``[name*]``."""
    prompts = candidate.prompts or {}
    each = max(20, width // max(1, len(prompts)))
    return "  ".join(f"[{name}{'*' if name == candidate.changed else ''}] {one_line(body, each)}"
                     for name, body in prompts.items())


def best_prompts(state: RunState) -> list[tuple[str, ScoredPrompt]]:
    """(label, prompt) for the best prompts per stage: the stage's top-k when closed, else its best."""
    rows: list[tuple[str, ScoredPrompt]] = []
    for stage in ("source", "target"):
        hist = state.history(stage)  # type: ignore[arg-type]
        if not hist:
            continue
        by_id = {h.prompt_id: h for h in hist}
        ids = list(state.top_k.get(stage, ())) or [hist[-1].prompt_id]
        for rank, pid in enumerate(ids, start=1):
            if pid in by_id:
                rows.append((f"{stage} #{rank}", by_id[pid]))
    return rows


__all__ = (
    "Frontiers",
    "EVENT_STYLE",
    "Curve",
    "Judgements",
    "RunFollower",
    "RunSummary",
    "RunsModel",
    "best_of",
    "best_scored",
    "best_prompts",
    "describe",
    "fmt",
    "judgement_text",
    "metric_names",
    "one_line",
    "payload_json",
    "prompt_set",
    "prompt_set_box",
    "prompt_set_line",
    "score_curve",
    "state_digest",
    "summarize",
    "where",
)
