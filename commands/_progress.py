"""Rich progress for runs and evaluations, on stderr, only when it is a terminal."""

from __future__ import annotations

from typing import Any

from rich.progress import BarColumn, MofNCompleteColumn, Progress, TaskID, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from ..stores import RunState, StoredEvent
from ._common import err


class RunProgress:
    """Implements the runner's hooks: a stage line and a bar over the examples in flight."""

    def __init__(self, *, enabled: bool) -> None:
        self.enabled = enabled
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

    def on_event(self, stored: StoredEvent, state: RunState) -> None:
        if self._progress is None or self._stage is None:
            return
        steps = state.config.get("steps", 0)
        if state.stage == "target":
            steps = state.config.get("target_steps") or steps
        stage = state.stage or "-"
        best = state.best(state.stage) if state.stage else None
        text = f"[bold]{stage}[/] stage, step {max(state.step, 0)}/{steps}"
        if best is not None:
            text += f", best {best.objective:.3f}"
        if stored.type in ("prompt.tested", "run.completed"):
            text = f"testing on {state.target_task}: {len(state.tested)} done"
        self._progress.update(self._stage, description=text, total=steps or None, completed=max(state.step, 0))

    def on_examples(self, label: str, done: int, total: int) -> None:
        if self._progress is None or self._work is None:
            return
        self._progress.update(self._work, description=f"  {label}", total=total, completed=done)
