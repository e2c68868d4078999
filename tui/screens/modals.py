"""Modal screens: the new-run form, the fork dialog, the review of a step's candidates, the prompt diff."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Grid, Horizontal, Vertical, VerticalScroll
from textual.screen import ModalScreen
from textual.suggester import SuggestFromList
from textual.widgets import Button, Checkbox, Input, Label, Select

from ..._text import printable
from ...errors import TPromptError
from ..data import fmt, one_line
from ..widgets import LiteralInput, LiteralStatic, LiteralText, diff_text, literal

if TYPE_CHECKING:
    from ...graph.resources import RunResources


def _task_names() -> list[str]:
    try:
        from ...evaluator import list_tasks

        return [t.name for t in list_tasks()]
    except Exception:  # the suggestions are a convenience; the run validates the name
        return []


@dataclass(frozen=True, slots=True)
class ForkRequest:
    """What the fork dialog returns: a fork point (seq or source prompt) and the target."""

    at_seq: int | None
    from_prompt_id: str | None
    target_task: str
    start: bool


@dataclass(frozen=True, slots=True)
class NewRunRequest:
    """What the new-run form returns: the run's ``RunConfig`` values, and its resources, opened to check them
    (the run is created and run on them, not opened again)."""

    values: dict[str, Any]
    resources: RunResources


T = TypeVar("T")


class _FormModal(ModalScreen[T]):
    """A modal form: its OK button or Enter in a field submits, Escape or any other button cancels."""

    OK_BUTTON = ""  # its id: ``FORM-ok``; the form's error line is ``FORM-error``, its other button ``FORM-cancel``
    FOCUS = ""  # the field focused when the form opens ("" for Textual's choice)
    BINDINGS = [Binding("escape", "cancel", "Cancel")]

    def _error_and_buttons(self, ok: str) -> ComposeResult:
        """The form's error line, then its ``ok`` and Cancel buttons."""
        form = self.OK_BUTTON.removesuffix("-ok")
        yield LiteralStatic(id=f"{form}-error")
        with Horizontal(classes="buttons"):
            yield Button(ok, variant="primary", id=self.OK_BUTTON)
            yield Button("Cancel", id=f"{form}-cancel")

    def on_mount(self) -> None:
        app: Any = self.app
        app.no_blink(self)
        if self.FOCUS:
            self.query_one(self.FOCUS, Input).focus()

    def _submit(self) -> None:  # pragma: no cover - every form overrides it
        raise TypeError(f"{type(self).__name__} must define _submit")

    def on_button_pressed(self, event: Button.Pressed) -> None:
        if event.button.id == self.OK_BUTTON:
            self._submit()
        else:
            self.dismiss(None)

    def on_input_submitted(self, event: Input.Submitted) -> None:
        self._submit()

    def action_cancel(self) -> None:
        self.dismiss(None)


class ForkScreen(_FormModal[ForkRequest | None]):
    """Fork a run at the selected event, or from one of its source prompts, onto a target task."""

    OK_BUTTON = "fork-ok"
    FOCUS = "#fork-target"

    def __init__(
        self,
        *,
        run_id: str,
        seq: int,
        sources: list[tuple[str, float, str]],
        target_task: str,
        preselect: str | None = None,
        source_done: bool = True,
    ) -> None:
        super().__init__()
        self.run_id = run_id
        self.seq = seq
        self.sources = sources if source_done else []
        self.source_done = source_done
        self.target_task = target_task
        self.preselect = preselect

    def compose(self) -> ComposeResult:
        options: list[tuple[Text, str]] = [(LiteralText(f"after event seq {self.seq}"), "seq")]
        for pid, objective, text in self.sources:
            options.append((literal(f"source prompt {pid} ({fmt(objective)}): {one_line(text, 50)}"), pid))
        initial = self.preselect if self.preselect in {p for p, _, _ in self.sources} else "seq"
        with Vertical(id="fork-dialog", classes="dialog"):
            yield LiteralStatic(LiteralText(f"Fork {self.run_id}", style="bold"))
            yield Label("fork point")
            yield Select(options, value=initial, allow_blank=False, id="fork-point")
            if not self.source_done:
                yield LiteralStatic(LiteralText("(source prompts can be picked once the source stage is done)", style="dim"))
            yield Label("target task")
            yield LiteralInput(
                value=self.target_task,
                placeholder="bundled task name or path",
                suggester=SuggestFromList(_task_names(), case_sensitive=False),
                id="fork-target",
            )
            yield Checkbox("run the fork now", value=True, id="fork-start")
            yield from self._error_and_buttons("Fork")

    def _submit(self) -> None:
        target = self.query_one("#fork-target", Input).value.strip()
        if not target:
            self.query_one("#fork-error", LiteralStatic).update(LiteralText("give a target task", style="red"))
            return
        point = self.query_one("#fork-point", Select).value
        start = self.query_one("#fork-start", Checkbox).value
        if point == "seq":
            self.dismiss(ForkRequest(at_seq=self.seq, from_prompt_id=None, target_task=target, start=start))
        else:
            self.dismiss(ForkRequest(at_seq=None, from_prompt_id=str(point), target_task=target, start=start))


@dataclass(frozen=True, slots=True)
class ReviewDecision:
    """What the review dialog returns: per candidate (1-based) kept or not and its (edited) text, plus additions."""

    drop: tuple[int, ...]
    edit: dict[int, str]
    add: tuple[str, ...]
    resume: bool


class ReviewScreen(_FormModal[ReviewDecision | None]):
    """Accept, edit or drop the candidates a run paused on before scoring (``run --review``)."""

    OK_BUTTON = "review-ok"

    def __init__(self, *, run_id: str, stage: str, step: int, candidates: list[tuple[str, str]]) -> None:
        super().__init__()
        self.run_id = run_id
        self.title_text = f"Review {run_id}: {stage} step {step}"
        self.candidates = candidates  # (prompt id, text)

    def compose(self) -> ComposeResult:
        with Vertical(id="review-dialog", classes="dialog"):
            yield LiteralStatic(LiteralText(self.title_text, style="bold"))
            yield LiteralStatic(LiteralText("Untick to drop a candidate; edit its text to change it. The decision is recorded "
                              "as a step.revised event.", style="dim"))
            with VerticalScroll(id="review-fields"):
                for i, (pid, text) in enumerate(self.candidates, 1):
                    yield Checkbox(literal(f"{i}. keep {pid}"), value=True, id=f"review-keep-{i}")
                    yield LiteralInput(value=text, id=f"review-text-{i}")
                yield Label("add a candidate of your own (optional)")
                yield LiteralInput(placeholder="a prompt", id="review-add")
            yield Checkbox("resume the run now", value=True, id="review-resume")
            yield from self._error_and_buttons("Accept")

    def on_input_submitted(self, event: Input.Submitted) -> None:
        pass  # Enter in a text field must not accept the whole review

    def _submit(self) -> None:
        drop, edit = [], {}
        for i, (_, text) in enumerate(self.candidates, 1):
            if not self.query_one(f"#review-keep-{i}", Checkbox).value:
                drop.append(i)
                continue
            new = self.query_one(f"#review-text-{i}", Input).value
            if new != printable(text):  # the field shows (and so holds) the text escaped
                edit[i] = new
        added = self.query_one("#review-add", Input).value
        if any(not t.strip() for t in edit.values()):
            self.query_one("#review-error", LiteralStatic).update(LiteralText("an edited prompt is empty: untick it to drop it",
                                                                style="red"))
            return
        self.dismiss(ReviewDecision(tuple(drop), edit, (added,) if added.strip() else (),
                                    self.query_one("#review-resume", Checkbox).value))


#: (config key, label) of the new-run form's text fields, in order.
FORM_FIELDS: tuple[tuple[str, str], ...] = (
    ("name", "name"),
    ("source_tasks", "source tasks (a, b)"),
    ("target_task", "target task"),
    ("proposer", "proposer model"),
    ("scorer", "scorer model"),
    ("steps", "steps per stage"),
    ("candidates", "candidates per step"),
    ("top_k", "top-k transferred"),
    ("examples", "training examples"),
    ("test_examples", "test examples"),
    ("original_prompt", "original prompt"),
    ("metrics", "metrics (a, b)"),
    ("judge", "judge model"),
    ("rubric", "judge's rubric file"),
)
_INT_FIELDS = {"steps", "candidates", "top_k", "examples", "test_examples"}
#: fields that are not config keys as typed: the CLI's scoring options (``--metric``, ``--judge``, ``--rubric``)
_SCORING_FIELDS = {"metrics", "judge", "rubric"}
#: what an empty field means, where it is not a default value shown in it
_PLACEHOLDERS = {
    "source_tasks": "none: target-only",
    "metrics": "the task's defaults",
    "judge": "none (a model spec)",
    "rubric": "default criteria (a file)",
}


def _defaults() -> dict[str, str]:
    from ...graph.config import RunConfig

    values: dict[str, str] = {}
    default = RunConfig()
    for key, _ in FORM_FIELDS:
        value = None if key == "rubric" else getattr(default, key)
        if value is None:
            values[key] = ""
        elif isinstance(value, list):
            values[key] = ", ".join(value)
        else:
            values[key] = str(value)
    return values


class NewRunScreen(_FormModal[NewRunRequest | None]):
    """The new-run form; returns validated RunConfig values with the run's opened resources (None when cancelled)."""

    OK_BUTTON = "new-ok"
    FOCUS = "#new-source_tasks"

    def __init__(self, initial: dict[str, str] | None = None) -> None:
        super().__init__()
        self.initial = {**_defaults(), **(initial or {})}
        self._checking = False  # a submitted form's run is being checked (preflight)

    def compose(self) -> ComposeResult:
        tasks = _task_names()
        with Vertical(id="new-run-dialog", classes="dialog"):
            yield LiteralStatic(LiteralText("New run", style="bold"))
            with VerticalScroll(id="new-run-fields"):
                with Grid(id="new-run-grid"):
                    for key, label in FORM_FIELDS:
                        yield Label(label)
                        suggester = SuggestFromList(tasks, case_sensitive=False) if "task" in key else None
                        yield LiteralInput(
                            value=self.initial.get(key, ""), id=f"new-{key}", suggester=suggester, compact=True,
                            placeholder=_PLACEHOLDERS.get(key, ""),
                        )
                    yield Label("scoring mode")
                    yield Select(
                        [(LiteralText(m), m) for m in ("auto", "generate", "logprob")],
                        value=self.initial.get("mode", "auto"),
                        allow_blank=False,
                        id="new-mode",
                        compact=True,
                    )
                    yield Label("target only")
                    yield Checkbox("no source stage", value=False, id="new-target_only", compact=True)
            yield from self._error_and_buttons("Start")

    def values(self) -> dict[str, Any]:
        """The form as RunConfig values, by the CLI's rules (``tprompt run``): empty fields keep the defaults, no
        source task or the target-only box is a target-only run, metrics, judge and rubric as ``--metric``,
        ``--judge`` and ``--rubric`` give them.

        Raises:
            UsageError: target only with source tasks. ConfigError: an unreadable or invalid rubric file.
        """
        from ...commands._score_options import scoring_settings
        from ...config import check_target_only, stage_rule

        values: dict[str, Any] = {}
        raw = {key: self.query_one(f"#new-{key}", Input).value.strip() for key, _ in FORM_FIELDS}
        for key, _ in FORM_FIELDS:
            if not raw[key] and key == "source_tasks":  # no source tasks: a target-only run
                values[key] = []
            if not raw[key] or key in _SCORING_FIELDS:
                continue
            if key == "source_tasks":
                values[key] = _names(raw[key])
            elif key in _INT_FIELDS:
                values[key] = int(raw[key]) if raw[key].lstrip("-").isdigit() else raw[key]
            else:
                values[key] = raw[key]
        target_only = self.query_one("#new-target_only", Checkbox).value
        check_target_only(target_only, values.get("source_tasks"), names=("target only", "source tasks"))
        values = stage_rule(values, target_only=target_only)
        values.update(scoring_settings(
            values, mode=str(self.query_one("#new-mode", Select).value), metric=_names(raw["metrics"]), weight=None,
            metric_timeout=None, judge=raw["judge"] or None, rubric=Path(raw["rubric"]) if raw["rubric"] else None,
            description=None))
        return values

    def _submit(self) -> None:
        from ...graph.config import make_config

        if self._checking:
            return
        try:
            values = self.values()
            config = make_config(values, where="new run")
        except TPromptError as exc:
            self._error(str(exc))
            return
        self._checking = True
        self.query_one("#new-error", LiteralStatic).update(LiteralText("checking the tasks, models and metrics…", style="dim"))
        self._preflight(values, config)

    @work(thread=True, exclusive=True, group="new-run-check")
    def _preflight(self, values: dict[str, Any], config: Any) -> None:
        """Worker: open what the run needs, as ``tprompt run`` does before it writes anything (a local model can take
        seconds); the form closes when all is there, or says what is not."""
        from ...graph import preflight

        try:
            resources = preflight(config)
        except TPromptError as exc:
            self.app.call_from_thread(self._error, str(exc))
            return
        self.app.call_from_thread(self.dismiss, NewRunRequest(values, resources))

    def _error(self, message: str) -> None:
        self._checking = False
        self.query_one("#new-error", LiteralStatic).update(LiteralText(message, style="red"))


def _names(raw: str) -> list[str]:
    """A comma-separated field as its names (task names, metric names)."""
    return [t.strip() for t in raw.split(",") if t.strip()]


class DiffScreen(ModalScreen[None]):
    """A unified (and word) diff of two prompts."""

    BINDINGS = [Binding("escape", "close", "Close"), Binding("q", "close", "Close", show=False)]

    def __init__(self, a: tuple[str, str], b: tuple[str, str]) -> None:
        super().__init__()
        self.a = a
        self.b = b

    def compose(self) -> ComposeResult:
        with Vertical(id="diff-dialog", classes="dialog"):
            title = LiteralText("diff  ", style="bold")
            title.append(f"- {self.a[0]}", style="red")
            title.append("   ")
            title.append(f"+ {self.b[0]}", style="green")
            yield LiteralStatic(title)
            with VerticalScroll():
                yield LiteralStatic(diff_text(self.a[1], self.b[1], a_label=self.a[0], b_label=self.b[0]), id="diff-body")
            yield LiteralStatic(LiteralText("esc to close", style="dim"))

    def action_close(self) -> None:
        self.dismiss(None)


__all__ = ("DiffScreen", "ForkRequest", "ForkScreen", "NewRunRequest", "NewRunScreen")
