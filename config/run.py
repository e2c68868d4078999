"""The typed configuration of a run, :class:`RunConfig`: its fields, their defaults and bounds, and the rules
over several of them. It is stored whole in the ``run.created`` event.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SerializerFunctionWrapHandler,
    field_validator,
    model_serializer,
    model_validator,
)

from ..evaluator.template import MAX_DESCRIPTION_CHARS, ChatTemplate
from ..judge.rubric import Rubric
from ..metric_specs import DEFAULT_OPEN_METRICS, OPEN_METRICS
from .specs import (
    DEFAULT_PRECISION,
    ExtraBody,
    Precision,
    check_base_url,
    check_base_urls,
    local_spec,
    takes_extra_body,
)

DEFAULT_ORIGINAL_PROMPT = "Answer the question."


#: Seconds to wait for one served request (an API call) before it counts as failed and is retried.
#: A slow self-hosted model on a CPU writes a few tokens a second, and a server that takes one
#: request at a time queues the others: 256 tokens behind a queue of a few fit in this.
DEFAULT_REQUEST_TIMEOUT = 180.0
#: The most requests in flight at once to one endpoint (``concurrency``, ``--concurrency``).
MAX_CONCURRENCY = 64
#: The longest a request may be waited for, in seconds (``request_timeout``, ``--request-timeout``).
MAX_REQUEST_TIMEOUT = 86_400.0
#: Seconds one call of a user metric (``metrics`` MODULE:FUNCTION), or its import, may take by default.
DEFAULT_METRIC_TIMEOUT = 30.0
#: Seconds a user's program (``program`` MODULE:FUNCTION) may compute on one row, or take to import, by default
#: (its time waiting for its model calls not counted).
DEFAULT_PROGRAM_TIMEOUT = 60.0

Mode = Literal["auto", "generate", "logprob"]

Budget = Literal["full", "racing"]
#: How the proposer writes candidates: the paper's meta-prompt, or GEPA-style reflection on a parent's failures.
ProposerStyle = Literal["paper", "reflective"]
#: Which candidate a reflective proposal improves on: the stage's best, or one drawn from its Pareto pool.
ParentSelection = Literal["best", "pareto"]
#: A weight: any finite number (inf or NaN would be stored as null, and the run could not be read back).
Weight = Annotated[float, Field(allow_inf_nan=False)]
#: A price in USD per million tokens: finite and not negative.
Price = Annotated[float, Field(ge=0, allow_inf_nan=False)]


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
        f"tasks; default {' and '.join(DEFAULT_OPEN_METRICS)}): built-in names "
        f"({', '.join(m.name for m in OPEN_METRICS)}) or import paths MODULE:FUNCTION. Each gets weight 1 unless "
        "weights say.",
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
        4, ge=1, le=MAX_CONCURRENCY,
        description="Requests in flight at once to each endpoint of an API model (with several base URLs, the run "
        "sends up to this many to each, their sum in all); also the rows a program answers at once.",
    )
    request_timeout: float = Field(
        DEFAULT_REQUEST_TIMEOUT, gt=0, le=MAX_REQUEST_TIMEOUT,
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
    program_timeout: float = Field(
        DEFAULT_PROGRAM_TIMEOUT, gt=0, le=86_400,
        description="Seconds the program (run in a worker process) may compute on one row, its time waiting for "
        "its model calls not counted, and the longest its import may take; a row past it is a failed answer "
        "(recorded, counted) and the run goes on.",
    )

    @model_serializer(mode="wrap")
    def _without_unset_program(self, handler: SerializerFunctionWrapHandler) -> Any:
        # A run without a program stores the config it always stored (byte for byte).
        data = handler(self)
        if isinstance(data, dict) and data.get("program", 0) is None:
            del data["program"]
            data.pop("program_timeout", None)
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
            from ..evaluator.tasks import bundled_names

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


__all__ = (
    "Budget",
    "DEFAULT_METRIC_TIMEOUT",
    "DEFAULT_ORIGINAL_PROMPT",
    "DEFAULT_PROGRAM_TIMEOUT",
    "DEFAULT_REQUEST_TIMEOUT",
    "MAX_CONCURRENCY",
    "MAX_REQUEST_TIMEOUT",
    "Mode",
    "ParentSelection",
    "Price",
    "ProposerStyle",
    "RecordedFile",
    "RunConfig",
    "Weight",
)
