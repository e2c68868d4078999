"""A run's best prompt with where it came from: what ``tprompt export`` writes and the Python API returns.

:func:`export_prompt` is the one rule that turns a run's state into an export:
the best prompt of a stage (the same rule as everywhere, :meth:`RunState.best`),
the seq of the event that scored it and its metrics there, its test-split
result if the run tested it (and against the original's, ``test_vs_original``), the models, the tasks, the fork parent and the
tprompt version. It is a pure function of the state: the same run exports the
same bytes.

:func:`read_prompt_file` reads a prompt back for a new run: a JSON export
(recognized by its ``format`` field), a LangChain export of one, or a text file.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal
from urllib.parse import urlsplit, urlunsplit

from ..errors import UsageError
from ..evaluator.template import ChatTemplate

# The file format and reading a prompt back live below the stores: a run config file can name
# an exported prompt (``prompt_file``).
from ..prompt_file import EXPORT_FORMAT, EXPORT_FORMAT_VERSION
from ..stores.events import METRIC_NAMES, Stage
from ..stores.projection import RunState, ScoredPrompt

if TYPE_CHECKING:
    from langchain_core.prompts import ChatPromptTemplate


Format = Literal["text", "json", "langchain"]
FORMATS: tuple[str, ...] = ("text", "json", "langchain")
STAGES: tuple[str, ...] = ("source", "target")
_STAGE: dict[str, Stage] = {"source": "source", "target": "target"}


@dataclass(frozen=True)
class PromptExport:
    """The best prompt of one stage of a run, with its provenance (plain JSON data)."""

    prompt: str
    prompt_id: str
    provenance: dict[str, Any] = field(default_factory=dict)
    #: The template the prompt was scored in, holding the prompt (None: unknown, e.g. a task no longer on disk).
    template: ChatTemplate | None = None
    #: A program's run (``--program``): the program's import path, and the best set's prompts by name.
    program: str | None = None
    prompts: dict[str, str] | None = None

    def to_dict(self) -> dict[str, Any]:
        """The JSON export: ``format``, ``format_version``, ``prompt``, ``prompt_id``, ``template``, ``provenance``.

        ``template`` is the scored template with the prompt in it (``{field}`` placeholders), or null.
        """
        data = {
            "format": EXPORT_FORMAT,
            "format_version": EXPORT_FORMAT_VERSION,
            "prompt": self.prompt,
            "prompt_id": self.prompt_id,
            "template": self.template.model_dump(mode="json") if self.template is not None else None,
            "provenance": self.provenance,
        }
        if self.prompts is not None:  # a program's set: every prompt by name (``prompt`` is their JSON)
            data.update(program=self.program, prompts=dict(self.prompts))
        return data

    def to_langchain(self) -> ChatPromptTemplate:
        """A LangChain ``ChatPromptTemplate``: the scored template with the prompt in it.

        Formatted on a row (``format_messages(**row)``) it gives exactly the
        messages the scorer was sent for that row (f-string placeholders). An
        empty system message is left out, as the scorer leaves it out. Without a
        known template: the prompt as a literal system message, then
        ``{question}``. The whole JSON export rides along in ``metadata["tprompt"]``.
        """
        from langchain_core.messages import SystemMessage
        from langchain_core.prompts import (
            AIMessagePromptTemplate,
            ChatPromptTemplate,
            HumanMessagePromptTemplate,
            SystemMessagePromptTemplate,
        )

        meta = {"tprompt": self.to_dict()}
        if self.template is None:
            return ChatPromptTemplate(
                messages=[SystemMessage(content=self.prompt), HumanMessagePromptTemplate.from_template("{question}")],
                metadata=meta,
            )
        kinds = {"system": SystemMessagePromptTemplate, "user": HumanMessagePromptTemplate,
                 "assistant": AIMessagePromptTemplate}
        messages = [kinds[m.role].from_template(m.content, template_format="f-string")
                    for m in self.template.messages if m.role != "system" or m.content.strip()]
        return ChatPromptTemplate(messages=messages, metadata=meta)  # type: ignore[arg-type]

    def to_langchain_prompts(self) -> dict[str, ChatPromptTemplate]:
        """A program's set as LangChain templates keyed by prompt name, each a system message holding the prompt.

        A prompt that is a format string stays one (``{field}`` placeholders the program fills); any other is a
        literal message. Each template's ``metadata["tprompt"]`` is the whole JSON export (every prompt, the
        program, the provenance) with ``name``, the prompt's own name.
        """
        from langchain_core.messages import SystemMessage
        from langchain_core.prompts import ChatPromptTemplate, SystemMessagePromptTemplate

        assert self.prompts is not None
        data = self.to_dict()
        result = {}
        for name, text in self.prompts.items():
            message: Any
            try:
                message = SystemMessagePromptTemplate.from_template(text, template_format="f-string")
            except (ValueError, KeyError, IndexError):  # literal braces, not a format string: sent as it is
                message = SystemMessage(content=text)
            result[name] = ChatPromptTemplate(messages=[message], metadata={"tprompt": {**data, "name": name}})
        return result

    def render(self, format: str = "json") -> str:
        """The export as file contents: ``text`` (the prompt alone), ``json``, or ``langchain``
        (``langchain_core.load.dumps`` of :meth:`to_langchain`, or for a program's set of
        :meth:`to_langchain_prompts`; load it with ``langchain_core.load.loads``).

        Raises:
            UsageError: an unknown format.
        """
        if format == "text":
            if self.prompts is not None:
                return "".join(f"[{name}]\n{text}\n\n" for name, text in self.prompts.items())
            return self.prompt + "\n"
        if format == "json":
            return json.dumps(self.to_dict(), indent=2, ensure_ascii=False) + "\n"
        if format == "langchain":
            from langchain_core.load import dumps

            langchain = self.to_langchain() if self.prompts is None else self.to_langchain_prompts()
            return dumps(langchain, pretty=True) + "\n"
        raise UsageError(f"unknown export format {format!r}", hint="use " + ", ".join(FORMATS))


def default_stage(state: RunState) -> Stage | None:
    """The stage an export takes by default: target once it has a scored prompt, else source (None: neither)."""
    found = state.best_overall()
    return found.stage if found else None


def export_prompt(state: RunState, stage: str | None = None) -> PromptExport:
    """The best prompt of ``stage`` (default: :func:`default_stage`) of the run ``state`` describes.

    Raises:
        UsageError: no candidate scored yet in the run, or in the stage asked for, or an unknown stage.
    """
    if stage is not None and stage not in _STAGE:
        raise UsageError(f"unknown stage {stage!r}", hint="use source or target")
    chosen = _STAGE[stage] if stage is not None else default_stage(state)
    best = state.best(chosen) if chosen else None
    if chosen is None or best is None:
        where = f"its {stage} stage has" if stage else "it has"
        other = default_stage(state)
        if other is not None:
            hint = f"its {other} stage has one: --stage {other}"
        elif state.status == "completed":
            hint = f"tprompt show {state.run_id} shows what it did"
        else:
            hint = f"resume it until a step is scored: tprompt resume {state.run_id}"
        raise UsageError(f"run {state.run_id}: nothing to export, {where} no scored prompt", hint=hint)
    program = _setting(state.config, "program")
    if program:
        return PromptExport(prompt=best.text, prompt_id=best.prompt_id, provenance=_provenance(state, best),
                            program=program, prompts=json.loads(best.text))
    return PromptExport(prompt=best.text, prompt_id=best.prompt_id, provenance=_provenance(state, best),
                        template=scored_template(state, best))


def scored_template(state: RunState, best: ScoredPrompt) -> ChatTemplate | None:
    """The template ``best`` was scored in, holding its text: the run's, or its task's declared Q&A template.

    None when the task cannot be loaded to tell its Q&A template (a task given as a Python object, or a
    file no longer there).
    """
    from ..errors import TPromptError
    from ..evaluator import load_task
    from ..evaluator.prompts import declared_template
    from ..evaluator.tasks import task_template

    config = state.config
    task_name = best.task
    own = task_template(getattr(config, "template", None), task_name)
    if own is not None:
        return own.with_text(best.text)
    try:
        task = load_task(task_name)
    except TPromptError:
        return None
    # The prompt is sent literally under the Q&A template: its braces are text in the template.
    literal = best.text.replace("{", "{{").replace("}", "}}")
    return declared_template(task, logprob=state.modes.get(task_name) == "logprob").with_text(literal)


def _provenance(state: RunState, best: ScoredPrompt) -> dict[str, Any]:
    from .. import __version__

    # The rows the stage's objective of this prompt is the mean of (one per task; see prompt_objectives).
    rows = [s for s in state.stage_scores(best.stage) if s.prompt_id == best.prompt_id and s.rung == best.rung]
    return {
        "run_id": state.run_id,
        "run_name": state.name,
        "run_status": state.status,
        "run_last_seq": state.last_seq,
        "stage": best.stage,
        "step": best.step,
        "seq": best.seq,
        "objective": best.objective,
        "metrics": _mean_metrics([r.metrics for r in rows]),
        "n_examples": best.n_examples,
        "scores": [
            {"task": r.task, "seq": r.seq, "step": r.step, "rung": r.rung, "n_examples": r.n_examples,
             "metrics": dict(r.metrics), "objective": r.objective}
            for r in rows
        ],
        "test": (test := _test_result(state, best)),
        "test_vs_original": _vs_original(state, test),
        "models": _models(state.config),
        "tasks": {"source": list(state.source_tasks), "target": state.target_task},
        "fork_of": (
            {"run_id": state.parent_run_id, "seq": state.parent_seq, "from_prompt_id": state.from_prompt_id}
            if state.parent_run_id else None
        ),
        "tprompt_version": __version__,
    }


def _mean_metrics(rows: list[Mapping[str, float | None]]) -> dict[str, float | None]:
    """One row's metrics, or with several tasks each metric's mean over them (None if a task has it undefined)."""
    if len(rows) == 1:
        return dict(rows[0])
    names = [m for m in METRIC_NAMES if any(m in r for r in rows)]
    names += sorted({m for r in rows for m in r} - set(names))
    out: dict[str, float | None] = {}
    for m in names:
        values = [r.get(m) for r in rows]
        out[m] = None if any(v is None for v in values) else sum(values) / len(values)  # type: ignore[arg-type,misc]
    return out


def _test_result(state: RunState, best: ScoredPrompt) -> dict[str, Any] | None:
    preferred = f"best_{best.stage}"
    found = [t for t in state.tested.values() if t.prompt_id == best.prompt_id]
    found.sort(key=lambda t: t.role != preferred)
    if not found:
        return None
    t = found[0]
    return {"role": t.role, "seq": t.seq, "task": t.task, "n_examples": t.n_examples,
            "metrics": dict(t.metrics), "objective": t.objective}


def _vs_original(state: RunState, test: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """The exported prompt's test objective against the original's on the same held-out split (None: either was
    not tested, or on another task). ``lost``: the original did better there."""
    original = state.tested.get("original")
    if test is None or original is None or original.task != test["task"]:
        return None
    delta = test["objective"] - original.objective
    return {"original_prompt_id": original.prompt_id, "original_objective": original.objective,
            "objective": test["objective"], "delta": delta, "lost": delta < 0, "task": test["task"],
            "n_examples": test["n_examples"]}


def lost_to_original(found: PromptExport) -> str | None:
    """One line saying that ``found`` did worse than the run's original prompt on the held-out test split, and by
    how much (None: it did not, or the run has not tested both)."""
    vs = found.provenance.get("test_vs_original")
    if not vs or not vs["lost"]:
        return None
    return (f"{found.prompt_id} lost to the original prompt on the held-out test split of {vs['task']}: objective "
            f"{vs['objective']:.3f} vs {vs['original_objective']:.3f} ({vs['delta']:+.3f}, {vs['n_examples']} "
            f"examples)")


def _setting(config: Any, key: str) -> Any:
    """A run setting from the stored config (a dict in old logs, or a typed config)."""
    if isinstance(config, Mapping):
        return config.get(key)
    return getattr(config, key, None)


def _models(config: Any) -> dict[str, Any]:
    urls = _setting(config, "base_url")
    return {
        "proposer": _setting(config, "proposer"),
        "scorer": _setting(config, "scorer"),
        # several endpoints (a list) stay a list, each made public
        "base_url": [public_url(u) for u in urls] if isinstance(urls, (list, tuple)) else public_url(urls),
    }


def public_url(url: str | None) -> str | None:
    """``url`` without what may be a secret: user, password, query string and fragment."""
    if not url:
        return None
    try:
        parts = urlsplit(url)
        host = parts.hostname or ""
        netloc = f"[{host}]" if ":" in host else host
        if parts.port is not None:
            netloc += f":{parts.port}"
    except ValueError:  # not a URL we can take apart: say nothing rather than leak it
        return None
    return urlunsplit((parts.scheme, netloc, parts.path, "", ""))

