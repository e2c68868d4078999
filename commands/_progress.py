"""Progress of runs on stderr: rich bars on a terminal, plain lines otherwise (logs, CI, pipes)."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.progress import Task as BarTask
from rich.text import Text

from ..stores import (
    PromptTested,
    RunCompleted,
    RunFailed,
    RunPaused,
    RunState,
    StageStarted,
    StepCompleted,
    StoredEvent,
    TransferSelected,
)
from ._common import err


@dataclass
class StageEta:
    """Time left in a stage, from the steps this process has seen completed in it.

    A step of a local model takes minutes: rich's own estimate (the speed over
    its last 30 s of updates) has nothing to go on between steps. This one is the
    mean time per step seen so far, times the steps left, counted down from the
    last completed step. None until two steps of the stage were seen (the first
    one seen may have started before this process did: a resumed run).
    """

    stage: str | None = None
    first: tuple[int, float] | None = None  # (step, when) of the first completion seen in the stage
    last: tuple[int, float] | None = None

    def step_done(self, stage: str, step: int, now: float) -> None:
        """Step ``step`` of ``stage`` completed at ``now`` (a monotonic clock)."""
        if stage != self.stage or self.first is None:
            self.stage, self.first = stage, (step, now)
        self.last = (step, now)

    def seconds_left(self, total_steps: int, now: float) -> float | None:
        """Seconds until step ``total_steps`` of the stage completes, or None while there is no rate yet."""
        if self.first is None or self.last is None or self.last[0] <= self.first[0]:
            return None
        per_step = (self.last[1] - self.first[1]) / (self.last[0] - self.first[0])
        return max(0.0, per_step * max(0, total_steps - self.last[0]) - (now - self.last[1]))


def clock(seconds: float) -> str:
    """``1:02:03`` / ``2:03``: how long, as rich's bars show it."""
    s = round(seconds)
    return f"{s // 3600}:{s // 60 % 60:02d}:{s % 60:02d}" if s >= 3600 else f"{s // 60}:{s % 60:02d}"


class _Remaining(TimeRemainingColumn):
    """Rich's time-remaining column, except for a bar that carries its own estimate (field ``eta``: a
    :class:`StageEta`, counted down at each refresh)."""

    def render(self, task: BarTask) -> Text:
        if "eta" in task.fields:
            eta: StageEta = task.fields["eta"]
            left = eta.seconds_left(int(task.total or 0), time.monotonic()) if task.total else None
            return Text("-:--:--" if left is None else clock(left), style="progress.remaining")
        return super().render(task)


class RunProgress:
    """Shows a run's stream (:meth:`Runner.stream` updates): a stage line and a bar over the work in flight."""

    def __init__(self, *, enabled: bool, plain: bool = False) -> None:
        self.enabled = enabled
        #: one line per milestone (step scored, stage done, prompt tested) when stderr is not a terminal
        self.plain = plain and not enabled
        self._progress: Progress | None = None
        self._stage: TaskID | None = None
        self._work: TaskID | None = None
        self.eta = StageEta()

    def __enter__(self) -> RunProgress:
        if self.enabled:
            self._progress = Progress(
                TextColumn("{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TimeElapsedColumn(),
                _Remaining(),
                console=err,
                transient=False,
            )
            self._progress.start()
            self._stage = self._progress.add_task("starting", total=None, eta=self.eta)
            self._work = self._progress.add_task("", total=None)
        return self

    def __exit__(self, *exc: Any) -> None:
        if self._progress is not None:
            self._progress.stop()
            self._progress = None

    def update(self, update: Any) -> None:
        """One streamed update (``graph.EventsAppended`` or ``graph.Progress``)."""
        events = getattr(update, "events", None)
        if events is None:
            self.on_examples(update.label, update.done, update.total)
        else:
            for stored in events:
                self.on_event(stored, update.state)

    def on_event(self, stored: StoredEvent, state: RunState) -> None:
        ev = stored.event
        if isinstance(ev, StageStarted):
            self.eta = StageEta(stage=ev.stage)
        elif isinstance(ev, StepCompleted):
            self.eta.step_done(ev.stage, ev.step, time.monotonic())
        if self.plain:
            line = plain_line(stored, state)
            if line and isinstance(ev, StepCompleted) and state.config is not None:
                left = self.eta.seconds_left(state.config.stage_steps(ev.stage), time.monotonic())
                if left is not None and left >= 1:  # none before two steps were seen, nothing after the last
                    line += f" (about {clock(left)} left in the stage)"
            if line:
                err.print(Text(line), soft_wrap=True)
            return
        if self._progress is None or self._stage is None:
            return
        steps = state.config.stage_steps(state.stage or "source") if state.config else 0
        stage = state.stage or "-"
        best = state.best(state.stage) if state.stage else None
        text = f"[bold]{stage}[/] stage, step {max(state.step, 0)}/{steps}"
        if best is not None:
            text += f", best {best.objective:.3f}"
        if isinstance(stored.event, (PromptTested, RunCompleted)):
            text = f"testing on {state.target_task}: {len(state.tested)} done"
        self._progress.update(self._stage, description=text, total=steps or None, completed=max(state.step, 0),
                              eta=self.eta)

    def on_examples(self, label: str, done: int, total: int) -> None:
        if self._progress is None or self._work is None:
            return
        self._progress.update(self._work, description=f"  {label}", total=total, completed=done)


def plain_line(stored: StoredEvent, state: RunState) -> str | None:
    """One line for a milestone event, or None for the others."""
    ev = stored.event
    match ev:
        case StepCompleted():
            steps = state.config.stage_steps(ev.stage) if state.config else 0
            best = "-" if ev.best_objective is None else f"{ev.best_objective:.3f}"
            return f"{ev.stage} step {ev.step}/{steps} done: best training objective {best}"
        case StageStarted():
            return f"{ev.stage} stage started on {', '.join(ev.tasks)}"
        case TransferSelected():
            return f"transfer: {len(ev.prompts)} source prompt(s) seed the target stage"
        case PromptTested():
            return f"tested {ev.role.replace('_', ' ')} prompt on {ev.task}: objective {ev.objective:.3f}"
        case RunCompleted() | RunPaused() | RunFailed():
            return f"run {stored.run_id} {ev.type.removeprefix('run.')} at seq {stored.seq}"
    return None
