"""One typed configuration for a Transfer-Prompting run.

Everything a run needs to be re-executed is in :class:`RunConfig`; it is stored
whole in the ``run.created`` event, so ``replay --rerun`` and ``resume`` need
nothing but the log. It sits below the stores (the events carry it typed);
:mod:`tprompt.graph.config` re-exports it for the code that imports it there.
"""

from __future__ import annotations

import difflib
import json
import tomllib
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    JsonValue,
    SerializerFunctionWrapHandler,
    ValidationError,
    field_validator,
    model_serializer,
    model_validator,
)

from . import _cpu
from ._yaml import load_yaml
from .errors import ConfigError, UsageError, first_error
from .evaluator.template import MAX_DESCRIPTION_CHARS, ChatTemplate
from .judge.rubric import Rubric

DEFAULT_ORIGINAL_PROMPT = "Answer the question."


#: Seconds to wait for one served request (an API call) before it counts as failed and is retried.
#: A slow self-hosted model on a CPU writes a few tokens a second, and a server that takes one
#: request at a time queues the others: 256 tokens behind a queue of a few fit in this.
DEFAULT_REQUEST_TIMEOUT = 180.0
#: Seconds one call of a user metric (``metrics`` MODULE:FUNCTION), or its import, may take by default.
DEFAULT_METRIC_TIMEOUT = 30.0

Mode = Literal["auto", "generate", "logprob"]
#: How a local model computes: fp32 weights, bf16 (CPUs with native bf16 matmul) or dynamic int8 linears.
Precision = Literal["fp32", "bf16", "int8"]
PRECISIONS: tuple[Precision, ...] = ("fp32", "bf16", "int8")
#: The precision of a config that names none as it is read back (every run stored before runs recorded
#: theirs computed at fp32) and of ``get_model``. A new run's default is decided where its config is made
#: (:func:`make_config`, by :func:`default_precision`): bf16 on a CPU with native bf16 matmul (98.5-100%
#: argmax agreement with fp32 per task), else fp32; int8 agrees on 49-87% only.
DEFAULT_PRECISION: Precision = "fp32"


#: The kinds of model spec (``kind`` or ``kind:rest``) computed in this process, with no server: the embedded
#: model, ``hf:`` and ``fake``. The one rule for "is this model local" (the scorer's concurrency, a Ray cell's
#: resources, a run's default precision, whether a base URL applies).
IN_PROCESS_KINDS: tuple[str, ...] = ("smollm2", "hf", "fake")


def in_process_spec(spec: str | None) -> bool:
    """Whether a model spec names a model computed in this process (no server): see :data:`IN_PROCESS_KINDS`."""
    return bool(spec) and str(spec).strip().partition(":")[0] in IN_PROCESS_KINDS


def local_spec(spec: str | None) -> bool:
    """Whether a model spec names a model whose weights this process computes with (the embedded one or ``hf:``)."""
    return in_process_spec(spec) and not str(spec).strip().startswith("fake")


def default_precision(*specs: str | None) -> Precision:
    """The precision a new run or evaluation computes at when none is given: the one rule for it.

    bf16 when one of ``specs`` is a local model and the CPU multiplies bf16
    natively (its argmax agreement with fp32 is 98.5-100% on each task
    measured, see ``models.local.precision``), else fp32. A run records the precision
    it was created with, so resuming it elsewhere never changes its arithmetic.
    """
    if any(s is not None and local_spec(s) for s in specs) and _cpu.bf16_native():
        return "bf16"
    return DEFAULT_PRECISION


Budget = Literal["full", "racing"]
#: How the proposer writes candidates: the paper's meta-prompt, or GEPA-style reflection on a parent's failures.
ProposerStyle = Literal["paper", "reflective"]
#: Which candidate a reflective proposal improves on: the stage's best, or one drawn from its Pareto pool.
ParentSelection = Literal["best", "pareto"]
#: A weight: any finite number (inf or NaN would be stored as null, and the run could not be read back).
Weight = Annotated[float, Field(allow_inf_nan=False)]
#: A price in USD per million tokens: finite and not negative.
Price = Annotated[float, Field(ge=0, allow_inf_nan=False)]


#: Request body keys tprompt sets itself (or langchain-openai sends for it): not for ``extra_body``.
RESERVED_BODY_KEYS = frozenset({
    "model", "messages", "max_tokens", "max_completion_tokens", "temperature", "top_p", "stop", "seed", "n",
    "logprobs", "top_logprobs", "stream", "stream_options", "tools", "tool_choice",
})


def takes_extra_body(spec: str | None) -> bool:
    """Whether requests of the model ``spec`` carry ``extra_body`` (an OpenAI-compatible server: ``openai:``)."""
    return bool(spec) and str(spec).strip().partition(":")[0] == "openai"


def check_extra_body(value: dict[str, Any]) -> dict[str, Any]:
    """``extra_body``, checked: a table of JSON values (finite numbers) with no key tprompt sets itself.

    Raises:
        ValueError: a reserved key, or a value JSON cannot carry (the message names the key).
    """
    for key, item in value.items():
        if key in RESERVED_BODY_KEYS:
            raise ValueError(f"{key} is set by tprompt itself; give only server parameters such as repeat_penalty")
        try:
            json.dumps(item, allow_nan=False)
        except (TypeError, ValueError):
            raise ValueError(f"{key}: {item!r} is not a JSON value (text, a finite number, true/false, "
                             "a list or a table of them)") from None
    return value


#: Server parameters (``extra_body``): a table of JSON values, checked by :func:`check_extra_body`.
ExtraBody = Annotated[dict[str, JsonValue], AfterValidator(check_extra_body)]


class RecordedFile(BaseModel):
    """A file a run reads (a task file or folder, a metric module), as it was when the run recorded it."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    path: str = Field(description="Absolute path.")
    sha256: str = Field(description="sha256 of the content (of a folder: of its files' names and contents).")
    root: str | None = Field(None, description="A metric module: the folder its module name imports from.")


class RunConfig(BaseModel):
    """The knobs of a run. Defaults are the small demo that runs in minutes on a 2-core CPU."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str | None = Field(None, description="A label for the run.")
    source_tasks: list[str] = Field(
        default_factory=lambda: ["ai2_science"], description="Stage-1 task(s): bundled names or paths."
    )
    target_task: str = Field("arc_challenge", description="Stage-2 task: a bundled name or a path.")
    original_prompt: str = Field(DEFAULT_ORIGINAL_PROMPT, description="The prompt the optimization starts from.")
    template: ChatTemplate | None = Field(
        None,
        description="The user's prompt template (messages with {field} placeholders) the scorer is sent, rendered "
        "on each row; original_prompt is the text of its optimizable messages. It applies to every task that is "
        "not a bundled benchmark (those keep their Q&A template). None: the Q&A template everywhere.",
    )
    description: str | None = Field(
        None, description="What the target task is, for the proposer (overrides the task's own description)."
    )
    proposer: str = Field("smollm2", description="Model spec of the reference LLM that writes prompts.")
    scorer: str = Field("smollm2", description="Model spec of the scorer LLM that answers under them.")
    base_url: str | list[str] | None = Field(
        None,
        description="API root of an OpenAI-compatible server for <provider>:<model> specs (proposer and scorer), "
        "e.g. http://127.0.0.1:8000/v1, or a list of several serving the same model and revision (replicas: "
        "requests are spread over them, a failing one is retried on another); part of the cache key. "
        "Default: OPENAI_BASE_URL for openai: specs.",
    )
    extra_body: ExtraBody = Field(
        default_factory=dict,
        description="Server parameters sent in the body of every request to the run's openai:<model> specs "
        "(proposer, scorer and judge), e.g. {repeat_penalty = 1.0} for llama.cpp's server or Ollama; "
        "JSON values, none of the keys tprompt sets itself (model, messages, max_tokens, ...); part of the "
        "cache key.",
    )
    server_logprobs: dict[str, bool] = Field(
        default_factory=dict,
        description="Whether the served scorer returns token log-probabilities, by its revision (provider:model@"
        "URLs): probed once, retried like any call, when the run is created and needs to know (mode logprob, or "
        "auto with a task that has options), and recorded (filled in by tprompt: resume and replay do not ask again).",
    )
    precision: Precision = Field(
        DEFAULT_PRECISION,
        description="How the local models (smollm2, hf:...) compute: fp32, bf16 (CPUs with native bf16 matmul) "
        "or int8 (dynamic int8 linears); part of the cache key. Other models ignore it. A new run without it: "
        "bf16 where the CPU has native bf16 matmul, else fp32 (recorded in the run).",
    )
    prices: dict[str, tuple[Price, Price]] = Field(
        default_factory=dict,
        description="USD per million (input, output) tokens by model spec, overriding the built-in table.",
    )
    proposer_temperature: float = Field(1.0, ge=0.0, le=2.0)
    proposer_max_tokens: int = Field(96, ge=8, le=2048)
    scorer_temperature: float = Field(0.0, ge=0.0, le=2.0)
    mode: Mode = Field(
        "auto",
        description="Scoring mode: generate (verbalized answers), logprob (option probabilities, MC tasks on "
        "local models or servers returning logprobs, e.g. vLLM), auto (logprob where possible).",
    )
    steps: int = Field(2, ge=1, le=1000, description="Optimization steps per stage.")
    target_steps: int | None = Field(None, ge=1, le=1000, description="Steps of stage 2 (default: steps).")
    candidates: int = Field(3, ge=1, le=64, description="Candidates the proposer writes per step.")
    top_k: int = Field(2, ge=1, le=64, description="Source prompts transferred to the target stage.")
    examples: int = Field(16, ge=1, le=10_000, description="Training examples each candidate is scored on.")
    test_examples: int = Field(40, ge=1, le=10_000, description="Held-out test examples for the final table.")
    history_size: int = Field(20, ge=1, le=200, description="Earlier (prompt, score) pairs shown to the proposer.")
    proposer_style: ProposerStyle = Field(
        "paper",
        description="paper: the reference prompt of (prompt, score) history (the paper's method); reflective: each "
        "step picks a parent candidate and shows the proposer its training answers with their feedback, failures "
        "first (GEPA, arXiv 2507.19457), asking for an improved prompt.",
    )
    parent_selection: ParentSelection = Field(
        "best",
        description="Reflective style: the parent is the stage's best candidate (best), or drawn from the "
        "candidates best on at least one training example and metric (pareto).",
    )
    reflection_examples: int = Field(
        4, ge=1, le=32, description="Reflective style: the parent's training answers shown per proposal."
    )
    exemplars: int = Field(3, ge=0, le=20, description="Task examples shown in the reference prompt.")
    max_prompt_chars: int = Field(800, ge=20, le=20_000, description="Longer candidates are rejected.")
    patience: int | None = Field(
        None, ge=1, description="Stop a stage after this many steps without improvement (default: never)."
    )
    budget: Budget = Field(
        "full",
        description="full: every candidate on all examples; racing: successive halving from a small batch.",
    )
    racing_rungs: int = Field(3, ge=2, le=6, description="Rungs of successive halving when budget=racing.")
    scorer_budget: int | None = Field(
        None,
        ge=1,
        description="Cap on scorer calls on training examples over both stages; when reached, the stage in "
        "flight ends (so arms of an experiment can get the same budget).",
    )
    transfer: bool = Field(True, description="False: stage 2 starts from the original prompt (OPRO baseline).")
    weights: dict[str, Weight] = Field(
        default_factory=dict,
        description="Objective weights by metric name overriding defaults (the seven, or any metric the run computes).",
    )
    metrics: list[str] = Field(
        default_factory=list,
        description="Metric plug-ins computed on top of the seven (closed tasks) or instead of them (open-ended "
        "tasks; default rouge_l and token_f1): built-in names (exact_match, token_f1, contains, regex_match, "
        "json_valid, json_schema_valid, rouge_l) or import paths MODULE:FUNCTION. Each gets weight 1 unless weights say.",
    )
    metric_versions: dict[str, str] = Field(
        default_factory=dict,
        description="Version of each metric of `metrics` when the run was created (filled in by tprompt; a resume "
        "under another version is refused).",
    )
    metric_timeout: float = Field(
        DEFAULT_METRIC_TIMEOUT, gt=0, le=86_400,
        description="Seconds one call of a user metric (MODULE:FUNCTION, run in a worker process) may take; a call "
        "past it is that metric's failure on that example (undefined, counted, logged), and the run goes on.",
    )
    files: dict[str, RecordedFile] = Field(
        default_factory=dict,
        description="Task files and metric modules the run reads, by task name or `metric MODULE` (filled in by "
        "tprompt: absolute path and content hash; resume, replay and rescore refuse a file changed since).",
    )
    review: bool = Field(
        False,
        description="Pause before each proposed step is scored, so a person can accept, edit or drop its "
        "candidates (tprompt review RUN), then resume.",
    )
    seed: int = Field(0, description="Seed of example sampling and of the proposer's sampling.")
    concurrency: int = Field(
        4, ge=1, le=64,
        description="Requests in flight at once to each endpoint of an API model (with several base URLs, the run "
        "sends up to this many to each, their sum in all).",
    )
    request_timeout: float = Field(
        DEFAULT_REQUEST_TIMEOUT, gt=0, le=86_400,
        description="Seconds to wait for one request to a served (API) model before it is retried; "
        "a timed-out request is retried like a 503, then the run fails (resumably).",
    )
    judge: str | None = Field(
        None,
        description="Model spec of an LLM judge that scores every answer on the rubric's criteria (metrics "
        "judge_<criterion>, weighted into the objective by weights). Default: no judge.",
    )
    rubric: Rubric | None = Field(
        None, description="The judge's rubric: criteria, scale, instruction, version (default: relevance, "
        "coherence, fluency, faithfulness to the reference)."
    )
    program: str | None = Field(
        None,
        description="Your program, MODULE:FUNCTION: run(inputs, *, prompts, llm) -> str | dict, with a module-level "
        "PROMPTS = {name: text}; the run optimizes those named prompts, one per proposal, and the program answers "
        "each row through the llm tprompt gives it (docs/programs.md). original_prompt is then the JSON of the "
        "prompt set (default: PROMPTS).",
    )

    @model_serializer(mode="wrap")
    def _without_unset_program(self, handler: SerializerFunctionWrapHandler) -> Any:
        # A run without a program stores the config it always stored (byte for byte).
        data = handler(self)
        if isinstance(data, dict) and data.get("program", 0) is None:
            del data["program"]
        return data

    @model_validator(mode="before")
    @classmethod
    def _prompt_of_template(cls, data: Any) -> Any:
        # A template without an original prompt starts from the template's own optimizable messages.
        if isinstance(data, dict) and data.get("template") is not None and "original_prompt" not in data:
            template = data["template"]
            if isinstance(template, dict):
                template = ChatTemplate.model_validate(template)
            if isinstance(template, ChatTemplate):
                data = {**data, "original_prompt": template.original_text}
        return data

    @field_validator("base_url")
    @classmethod
    def _check_base_urls(cls, value: str | list[str] | None) -> str | list[str] | None:
        # A single string is checked but kept as it was given (logs of every version store one, trailing slash
        # and all); a list is new, and stored checked. Checked whatever the model: a fake run stores it too.
        if isinstance(value, list):
            return check_base_urls(value)
        if value is not None:
            check_base_url(value)
        return value

    @model_validator(mode="after")
    def _check(self) -> RunConfig:
        if not self.source_tasks and self.transfer:
            raise ValueError("source_tasks is empty: give at least one source task (or set transfer = false)")
        if not self.original_prompt.strip() and self.template is None:
            raise ValueError("original_prompt is empty")
        if self.template is not None:
            self._check_template(self.template)
        if self.description is not None and not (0 < len(self.description.strip()) <= MAX_DESCRIPTION_CHARS):
            raise ValueError(f"the description has {len(self.description)} characters; give 1 to "
                             f"{MAX_DESCRIPTION_CHARS} (the proposer's prompt takes no more)")
        for role in ("proposer", "scorer", "judge"):
            if getattr(self, role) is not None and not getattr(self, role).strip():
                raise ValueError(f"{role} is an empty model spec: give one such as smollm2, fake or openai:gpt-4o-mini")
        if self.precision != DEFAULT_PRECISION and not any(
            local_spec(s) for s in (self.proposer, self.scorer, self.judge) if s is not None
        ):
            raise ValueError(
                f"precision {self.precision} applies to local models (smollm2, hf:...); this run has none"
            )
        if self.extra_body and not any(takes_extra_body(s) for s in (self.proposer, self.scorer, self.judge)):
            raise ValueError("extra_body is sent to OpenAI-compatible servers (openai:<model> specs); this run has "
                             "none: drop it, or name a served model")
        if self.parent_selection != "best" and self.proposer_style != "reflective":
            raise ValueError("parent_selection pareto picks the parent of a reflective proposal: "
                             "set proposer_style = reflective (--proposer-style reflective)")
        if self.program is not None:
            self._check_program(self.program)
        if self.rubric is not None and self.judge is None:
            raise ValueError("a rubric is given but no judge: give a judge model spec (--judge SPEC)")
        history_max = 1 + self.steps * self.candidates
        if self.top_k > history_max:
            raise ValueError(
                f"top_k={self.top_k} is larger than the source history can be "
                f"(1 original + {self.steps} steps x {self.candidates} candidates = {history_max})"
            )
        return self

    def _check_program(self, program: str) -> None:
        module, _, function = program.partition(":")
        if not module.strip() or not function.strip() or not all(p.isidentifier() for p in (*module.split("."), function)):
            raise ValueError(f"program {program!r} is not MODULE:FUNCTION, e.g. mypkg.app:run")
        refused = (("template", self.template is not None, "a program sends its own messages: give no prompt template"),
                   ("mode", self.mode == "logprob", "a program's answer is its output: use mode generate or auto"),
                   ("proposer_style", self.proposer_style != "paper",
                    "the reflective proposer does not rewrite a program's prompts yet: use proposer_style paper"),
                   ("review", self.review, "review of a program's candidates is not built yet: leave review off"))
        for _key, bad, why in refused:
            if bad:
                raise ValueError(f"program {program}: {why}")

    def _check_template(self, template: ChatTemplate) -> None:
        template.check("template")
        problem = template.placeholder_problem(self.original_prompt)
        if problem is not None:
            raise ValueError(f"original_prompt does not fit the template: it {problem}")
        if len(template.optimizable) > 1:
            from .evaluator.tasks import bundled_names

            bundled = sorted(set(bundled_names()) & {*self.source_tasks, self.target_task})
            if bundled:
                raise ValueError(f"the template has {len(template.optimizable)} optimizable messages, and "
                                 f"{', '.join(bundled)} (bundled) is scored under its one-message Q&A template: "
                                 "use your own tasks, or one optimizable message")

    @property
    def judge_rubric(self) -> Rubric | None:
        """The rubric the judge scores by (the default one when none is given); None without a judge."""
        if self.judge is None:
            return None
        return self.rubric or Rubric()

    def extra_body_of(self, spec: str) -> dict[str, Any] | None:
        """The server parameters sent with every request of the model ``spec`` in this run (None: none)."""
        return dict(self.extra_body) if self.extra_body and takes_extra_body(spec) else None

    def precision_of(self, spec: str) -> Precision:
        """The precision the model ``spec`` computes at in this run (local models only; others: the default)."""
        return self.precision if local_spec(spec) else DEFAULT_PRECISION

    @property
    def stage2_steps(self) -> int:
        return self.target_steps or self.steps

    def stage_steps(self, stage: str) -> int:
        return self.steps if stage == "source" else self.stage2_steps


def check_base_url(url: str) -> str:
    """``url`` without surrounding spaces or a trailing slash, if it is an http(s) URL with a host.

    Raises:
        ValueError: it is not one (the message says which).
    """
    text = url.strip().rstrip("/") if isinstance(url, str) else ""
    try:
        parts = urlsplit(text)
        ok = parts.scheme in ("http", "https") and bool(parts.hostname) and text.isprintable()
    except ValueError:
        ok = False
    if not ok:
        raise ValueError(f"{url!r} is not an http(s) URL such as http://127.0.0.1:8000/v1")
    return text


def check_base_urls(urls: list[str]) -> list[str]:
    """Several base URLs, each checked by :func:`check_base_url`: at least one, none twice.

    Raises:
        ValueError: the list is empty, holds a non-URL, or names an endpoint twice.
    """
    if not urls:
        raise ValueError("the list of base URLs is empty: give at least one, e.g. [\"http://127.0.0.1:8000/v1\"]")
    checked = [check_base_url(u) for u in urls]
    twice = next((u for i, u in enumerate(checked) if u in checked[:i]), None)
    if twice is not None:
        raise ValueError(f"{twice} is listed twice: each endpoint once (--concurrency is per endpoint)")
    return checked


def base_urls(value: str | list[str] | tuple[str, ...] | None) -> tuple[str, ...]:
    """A ``base_url`` setting as a tuple of endpoints (empty without one)."""
    if value is None:
        return ()
    return (value,) if isinstance(value, str) else tuple(value)


def check_target_only(target_only: bool, sources: list[str] | None, *,
                      names: tuple[str, str] = ("--target-only", "--source")) -> None:
    """A run asked to be target-only names no source task (the CLI's options, the new-run form's fields).

    Raises:
        UsageError: it does; ``names`` are how the caller calls the two.
    """
    if target_only and sources:
        raise UsageError(f"{names[0]} runs no source stage, so it takes no {names[1]}",
                         hint=f"leave out {names[1]}, or {names[0]} to transfer from the sources")


def stage_rule(values: dict[str, Any], *, target_only: bool = False) -> dict[str, Any]:
    """``values`` with the rule of which stages a run has applied (one rule, for the CLI and the TUI).

    No source stage unless sources are named or the run is the bundled demo: a run that names a target
    but no source task is target-only (``transfer = false``, no source tasks); a run naming neither is
    the demo (ai2_science -> arc_challenge). An explicit ``transfer`` setting is kept as given.
    ``target_only`` (``--target-only``, the new-run form's box; see :func:`check_target_only`) asks for no
    source stage, over a settings file's sources.
    """
    if target_only:
        return {**values, "transfer": False, "source_tasks": []}
    if "transfer" in values:
        return values
    named = values.get("source_tasks")
    if named or ("source_tasks" not in values and "target_task" not in values):
        return values
    return {**values, "transfer": False, "source_tasks": []}


def make_config(values: dict[str, Any], *, where: str = "options") -> RunConfig:
    """Validate ``values`` into a :class:`RunConfig`; one clear ConfigError on any problem."""
    _check_keys(values, where)
    for key, value in values.items():
        _check_not_bool(key, value, where)
    try:
        config = RunConfig(**values)
    except ValidationError as exc:
        raise ConfigError(first_error(exc, where=where)) from exc
    if "precision" not in values:  # a new config: this machine's default, written into it
        precision = default_precision(config.proposer, config.scorer, config.judge)
        if precision != config.precision:
            config = config.model_copy(update={"precision": precision})
    return config


def read_settings_file(path: str | Path, *, what: str = "config file") -> dict[str, Any]:
    """Read a TOML, JSON or YAML file whose top level is a table of keys.

    Raises:
        ConfigError: missing file, unreadable or invalid file, or not a table.
    """
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"{what} {p} does not exist")
    try:
        text = p.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{what} {p}: {exc}") from exc
    suffix = p.suffix.lower()
    try:
        if suffix == ".json":
            data = json.loads(text)
        elif suffix in (".yaml", ".yml"):
            data = load_yaml(text)
        else:
            data = tomllib.loads(text)
    except Exception as exc:  # the parsers' own error types differ; all mean "not a valid file"
        raise ConfigError(f"{what} {p}: {exc}".splitlines()[0]) from exc
    if not isinstance(data, dict):
        raise ConfigError(f"{what} {p}: expected a table of keys at the top level")
    return data


#: The most criteria a rubric may name: each is one more judge question on every answer.
MAX_RUBRIC_CRITERIA = 50

#: The formats a settings file may be written in.
SETTINGS_SUFFIXES = (".toml", ".json", ".yaml", ".yml")


def load_rubric_file(path: str | Path) -> dict[str, Any]:
    """Read a judge's rubric (TOML, JSON or YAML: ``criteria``, ``scale``, ``instruction``, ``name``, ``version``,
    at the top level or under a ``[rubric]`` table) into the value of the config key ``rubric``, checked.

    Raises:
        ConfigError: the file is unreadable or the rubric is invalid (no criteria, a bad scale, ...).
    """
    if Path(path).suffix.lower() not in SETTINGS_SUFFIXES:
        raise ConfigError(f"rubric file {path}: a rubric is a .toml, .json or .yaml file, not "
                          f"{Path(path).suffix or 'a file without an extension'}")
    data = read_settings_file(path, what="rubric file")
    if set(data) == {"rubric"} and isinstance(data["rubric"], dict):
        data = data["rubric"]
    criteria = data.get("criteria")
    if not criteria:
        raise ConfigError(f"rubric file {path}: the rubric has no criteria: give at least one [[criteria]] "
                          "with a name and a description")
    if isinstance(criteria, list) and len(criteria) > MAX_RUBRIC_CRITERIA:
        raise ConfigError(f"rubric file {path}: {len(criteria)} criteria; give at most {MAX_RUBRIC_CRITERIA} "
                          "(each is one more judge question on every answer)")
    check_values({"rubric": data}, where=f"rubric file {path}")
    return data


def load_config_file(path: str | Path) -> dict[str, Any]:
    """Read a run config file into a dict of run keys, each value checked on its own.

    ``model`` sets both ``proposer`` and ``scorer`` (as ``--model`` does) unless the
    file names them; ``prompt_file`` sets ``original_prompt`` from a text file or
    a ``tprompt export`` JSON file (as ``--prompt-file`` does). Every value is checked here, so a bad value in the file is an
    error even when a command-line option overrides it.

    Raises:
        ConfigError: the file is unreadable, has an unknown key or a bad value.
    """
    data = read_settings_file(path)
    # Allow the run keys under a [run] table as well as at the top level.
    if set(data) == {"run"} and isinstance(data["run"], dict):
        data = data["run"]
    data = dict(data)
    if "model" in data:
        model = data.pop("model")
        data.setdefault("proposer", model)
        data.setdefault("scorer", model)
    if "prompt_file" in data:
        found = _prompt_from_file(data, where=str(path))
        data["original_prompt" if isinstance(found, str) else "template"] = found
    check_values(data, where=str(path))
    return data


def _prompt_from_file(data: dict[str, Any], *, where: str) -> str | ChatTemplate:
    """``prompt_file``: the original prompt, or the template, read from a file (:func:`read_prompt_source`)."""
    from .prompt_file import read_prompt_source

    name = data.pop("prompt_file")
    if "original_prompt" in data:
        raise ConfigError(f"{where}: give original_prompt or prompt_file, not both", key="prompt_file")
    if not isinstance(name, str) or not name.strip():
        raise ConfigError(f"{where}: prompt_file: expected a file name", key="prompt_file")
    return read_prompt_source(name, what=f"{where}: prompt_file")


def check_values(values: dict[str, Any], *, where: str) -> None:
    """Check each value against its field alone (type and bounds; no cross-field rules).

    Raises:
        ConfigError: an unknown key, a bool where a number belongs, or a value out of bounds.
    """
    from pydantic import TypeAdapter

    _check_keys(values, where)
    for key, value in values.items():
        field = RunConfig.model_fields[key]
        _check_not_bool(key, value, where)
        try:
            kind: Any = Annotated[(field.annotation, *field.metadata)] if field.metadata else field.annotation
            TypeAdapter(kind).validate_python(value)
        except ValidationError as exc:
            raise ConfigError(first_error(exc, where=where, prefix=(key,)), key=key) from exc


def _check_not_bool(key: str, value: Any, where: str) -> None:
    # pydantic would take true as 1 for a number field; a config value that is a bool is a mistake there.
    annotation = RunConfig.model_fields[key].annotation
    if isinstance(value, bool) and annotation is not bool:
        raise ConfigError(f"{where}: {key}: expected {_kind(annotation)}, got {str(value).lower()}", key=key)


def _kind(annotation: Any) -> str:
    return {int: "a whole number", float: "a number", str: "text"}.get(annotation, str(annotation))


def _check_keys(values: dict[str, Any], where: str) -> None:
    unknown = [k for k in values if k not in RunConfig.model_fields]
    if unknown:
        key = unknown[0]
        close = difflib.get_close_matches(key, [*RunConfig.model_fields, "model", "prompt_file"], n=1)
        hint = f"did you mean {close[0]!r}?" if close else "known keys: " + ", ".join(RunConfig.model_fields)
        raise ConfigError(f"{where}: unknown key {key!r}", hint=hint, key=key)


__all__ = (
    "Budget",
    "DEFAULT_ORIGINAL_PROMPT",
    "Mode",
    "RecordedFile",
    "RunConfig",
    "base_urls",
    "check_base_url",
    "check_base_urls",
    "ExtraBody",
    "check_extra_body",
    "takes_extra_body",
    "load_config_file",
    "check_target_only",
    "load_rubric_file",
    "make_config",
    "read_settings_file",
    "stage_rule",
)
