"""Progress of runs on stderr: rich bars on a terminal, plain lines otherwise (logs, CI, pipes)."""

from __future__ import annotations

from typing import Any

from rich.progress import BarColumn, MofNCompleteColumn, Progress, TaskID, TextColumn, TimeElapsedColumn, TimeRemainingColumn
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


class RunProgress:
    """Shows a run's stream (:meth:`Runner.stream` updates): a stage line and a bar over the work in flight."""

    def __init__(self, *, enabled: bool, plain: bool = False) -> None:
        self.enabled = enabled
        #: one line per milestone (step scored, stage done, prompt tested) when stderr is not a terminal
        self.plain = plain and not enabled
        self._progress: Progress | None = None
        self._stage: TaskID | None = None
        self._work: TaskID | None = None

    def __enter__(self) -> RunProgress:
        if self.enabled:
            self._progress = Progress(
                TextColumn("{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TimeElapsedColumn(),
                TimeRemainingColumn(),
                console=err,
                transient=False,
            )
            self._progress.start()
            self._stage = self._progress.add_task("starting", total=None)
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
        if self.plain:
            line = plain_line(stored, state)
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
        self._progress.update(self._stage, description=text, total=steps or None, completed=max(state.step, 0))

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
