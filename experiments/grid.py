"""Experiments: a named grid of runs that compares Transfer-Prompting with its baselines.

An experiment config names models, source task sets, target tasks, seeds and
scorer-call budgets. Each *cell* (model x source set x target x budget) gets,
per seed, two runs under the same budget of training scorer calls:

* ``target_only`` -- the OPRO baseline: ``transfer=False``, the target stage
  starts from the original prompt;
* ``transfer`` -- Transfer-Prompting: source stage, top-k transfer, target stage.

The third arm, the original prompt, needs no run: every run tests the original
prompt on the same held-out examples (``prompt.tested`` role ``original``).

Cells are ordinary runs in the event log, named ``<experiment>/<cell>/<arm>/s<seed>``
and carrying their whole config, so they can be browsed, forked and resumed
like any run. Running an experiment again finds its runs by name and config:
finished ones are skipped, unfinished ones are resumed, missing ones are
created. The experiment itself is one row of the ``experiments`` table.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Protocol

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    FieldSerializationInfo,
    ValidationError,
    ValidationInfo,
    field_serializer,
    field_validator,
    model_validator,
)

from ..config import ExtraBody, Precision, check_base_urls, checked_config
from ..errors import ConfigError, UnknownRun, first_error
from ..graph.config import RunConfig, make_config, read_settings_file
from ..graph.rules import full_run_cost, steps_to_spend
from ..stores import EventLog
from ..stores import experiments as experiments_table
from ..stores.projection import RunState
from ..stores.summary import ROLE_LABELS

if TYPE_CHECKING:
    from ..graph.resources import ExecutionOptions, RunResources

Arm = Literal["target_only", "transfer"]

#: The optimization arms, in the order they are run and reported.
ARMS: tuple[Arm, ...] = ("target_only", "transfer")

#: How arms are labelled in tables (the original prompt is the third arm).
ARM_LABELS: dict[str, str] = {
    "original": "original prompt",
    "target_only": "target-only (OPRO)",
    "transfer": "Transfer-Prompting",
}

#: How arms and a single run's tested roles are labelled in reports and plots: a role as ``show`` names it
#: (:data:`~tprompt.stores.summary.ROLE_LABELS`) with "prompt", an arm by :data:`ARM_LABELS`.
REPORT_LABELS: dict[str, str] = {
    **{role: f"{label} prompt" for role, label in ROLE_LABELS.items()},
    **ARM_LABELS,
}

#: Run keys an experiment sets per cell; giving them under [run] is a mistake.
_CELL_KEYS = ("name", "source_tasks", "target_task", "proposer", "scorer", "seed", "transfer", "scorer_budget")


class ModelPair(BaseModel):
    """The proposer (reference LLM) and scorer of one model row of the grid."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str | None = Field(None, description="Label in run names and tables (default: the scorer spec).")
    proposer: str = Field("smollm2", description="Model spec that writes candidate prompts.")
    scorer: str | None = Field(None, description="Model spec that answers the questions (default: the proposer).")
    base_url: str | list[str] | None = Field(
        None, description="OpenAI-compatible server of this row's API specs, or a list of several serving the same "
        "model and revision (run.base_url)."
    )
    request_timeout: float | None = Field(
        None, gt=0, le=86_400, description="Seconds per request to this row's served models (run.request_timeout)."
    )
    precision: Precision | None = Field(
        None, description="How this row's local models compute: fp32, bf16 or int8 (run.precision)."
    )
    extra_body: ExtraBody | None = Field(
        None, description="Server parameters sent with every request to this row's openai: models, e.g. "
        "{repeat_penalty = 1.0} for llama.cpp's server (run.extra_body)."
    )

    @field_validator("base_url")
    @classmethod
    def _base_urls(cls, value: str | list[str] | None) -> str | list[str] | None:
        return check_base_urls(value) if isinstance(value, list) else value

    @property
    def scorer_spec(self) -> str:
        return self.scorer or self.proposer

    @property
    def label(self) -> str:
        return self.name or self.scorer_spec


class ExperimentConfig(BaseModel):
    """A grid of runs. See docs/experiments.md for the file format."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str = Field(..., min_length=1, description="Identifies the experiment in the database.")
    description: str | None = None
    models: list[ModelPair] = Field(default_factory=lambda: [ModelPair()], min_length=1)
    sources: list[list[str]] = Field(default_factory=lambda: [["ai2_science"]], min_length=1)
    targets: list[str] = Field(..., min_length=1)
    seeds: list[int] = Field(default_factory=lambda: [0], min_length=1)
    budgets: list[int] | None = Field(
        None, description="Scorer-call budgets (training examples, both stages); default: one, the transfer "
        "arm's full cost under the run settings."
    )
    run: RunConfig = Field(
        default_factory=RunConfig,
        description="RunConfig settings shared by every run: the keys given are the config's fields set, and only "
        "they are stored and passed on to the cells (a cell's defaults, such as precision, are decided for it).",
    )

    @field_validator("run", mode="before")
    @classmethod
    def _run(cls, value: Any, info: ValidationInfo) -> Any:
        # The [run] table, checked as a run's options are (one line, naming the key); ``where`` comes from
        # plan_experiment's validation context.
        if not isinstance(value, dict):
            return value
        where = (info.context or {}).get("where", "experiment")
        return checked_config(value, where=f"{where} [run]")

    @field_serializer("run")
    def _run_as_given(self, run: RunConfig, info: FieldSerializationInfo) -> Any:
        return run.model_dump(mode=info.mode, exclude_unset=True)

    @field_validator("models", mode="before")
    @classmethod
    def _models(cls, value: Any) -> Any:
        # "smollm2" is shorthand for proposer = scorer = "smollm2".
        if isinstance(value, list):
            return [{"proposer": v} if isinstance(v, str) else v for v in value]
        return value

    @field_validator("sources", mode="before")
    @classmethod
    def _sources(cls, value: Any) -> Any:
        # "ai2_science" is shorthand for the one-task set ["ai2_science"].
        if isinstance(value, list):
            return [[v] if isinstance(v, str) else v for v in value]
        return value

    @model_validator(mode="after")
    def _check(self) -> ExperimentConfig:
        if "/" in self.name or not self.name.strip():
            raise ValueError(f"name {self.name!r}: use a non-empty name without '/'")
        for key in _CELL_KEYS:
            if key in self.run.model_fields_set:
                raise ValueError(f"run.{key} is set per cell by the experiment; use the grid keys instead")
        if self.run.patience is not None:
            raise ValueError("run.patience would end arms before they spend their budget; leave it out")
        for group in ("models", "sources", "targets", "seeds", "budgets"):
            values = getattr(self, group) or []
            keys = [json.dumps(v.model_dump() if isinstance(v, BaseModel) else v) for v in values]
            if len(set(keys)) != len(keys):
                raise ValueError(f"{group} lists the same entry twice")
        labels = [m.label for m in self.models]
        if len(set(labels)) != len(labels):
            raise ValueError("two models have the same label; give them distinct `name`s")
        if any(not s for s in self.sources):
            raise ValueError("sources holds an empty task set")
        if self.budgets is not None and any(b < 1 for b in self.budgets):
            raise ValueError("budgets must be positive numbers of scorer calls")
        return self

    def fingerprint(self) -> str:
        """A hash of the config: an experiment name stands for one grid."""
        text = json.dumps(self.model_dump(mode="json"), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(text.encode()).hexdigest()[:16]


@dataclass(frozen=True, slots=True)
class Cell:
    """One target cell of the grid: model x source set x target x budget."""

    model: str
    sources: tuple[str, ...]
    target: str
    budget: int

    @property
    def key(self) -> str:
        return f"{self.model}:{'+'.join(self.sources)}->{self.target}:b{self.budget}"


@dataclass(frozen=True, slots=True)
class CellRun:
    """One run of the grid: a cell's arm under one seed."""

    experiment: str
    cell: Cell
    arm: Arm
    seed: int
    config: RunConfig

    @property
    def name(self) -> str:
        return self.config.name or ""


@dataclass(frozen=True, slots=True)
class Experiment:
    """A validated experiment: its config, where it came from and its planned runs."""

    config: ExperimentConfig
    cells: tuple[Cell, ...]
    runs: tuple[CellRun, ...]
    experiment_id: str | None = None

    @property
    def name(self) -> str:
        return self.config.name


# -- loading and planning -----------------------------------------------------------------


def load_experiment_file(path: str | Path) -> dict[str, Any]:
    """Read a TOML, YAML or JSON experiment file into a dict (validated by :func:`plan_experiment`)."""
    data = read_settings_file(path, what="experiment file")
    data.setdefault("name", Path(path).stem)
    return data


#: Training scorer calls of a transfer run with every step full (the default budget): the cost model is the
#: graph's (:mod:`tprompt.graph.rules`), asked here.
transfer_cost = full_run_cost


def plan_experiment(values: dict[str, Any], *, where: str = "experiment") -> Experiment:
    """Validate an experiment config and expand its grid into runs.

    Raises:
        ConfigError: an unknown key, a bad value, or a budget too small for the
            transfer arm to reach its target stage.
    """
    try:
        config = ExperimentConfig.model_validate(values, context={"where": where})
    except ValidationError as exc:
        hint = None
        if exc.errors()[0].get("type") == "extra_forbidden":
            hint = "known keys: " + ", ".join(ExperimentConfig.model_fields)
        raise ConfigError(first_error(exc, where=where), hint=hint) from exc
    base = config.run
    cells: list[Cell] = []
    for model in config.models:
        for sources in config.sources:
            for target in config.targets:
                default = transfer_cost(base, len(sources))
                for budget in config.budgets or [default]:
                    cells.append(Cell(model.label, tuple(sources), target, budget))
    minimum = {}
    for cell in cells:
        if base.budget == "full":
            # Source stage, re-scoring the transferred prompts, and one target step.
            need = len(cell.sources) * (base.examples + base.steps * base.candidates * base.examples)
            need += base.top_k * base.examples + base.candidates * base.examples
            if cell.budget < need:
                minimum[cell.key] = need
    limit = RunConfig.model_fields["target_steps"].metadata
    max_steps = next(m.le for m in limit if getattr(m, "le", None) is not None)
    for cell in cells:
        if steps_to_spend(base, cell.budget) > max_steps:
            # Past this the budget can never be spent: the arms would stop at the step cap, unequal.
            raise ConfigError(
                f"{where}: budget {cell.budget} of cell {cell.key} is too large: spending it would take more "
                f"than {max_steps} target steps",
                hint="lower budgets, or raise run.candidates / examples so a step spends more",
            )
    if minimum:
        key, need = next(iter(minimum.items()))
        raise ConfigError(
            f"{where}: budget of cell {key} is too small: the transfer arm needs {need} scorer calls to reach "
            "one target step",
            hint="raise budgets, or lower run.steps / candidates / examples / top_k",
        )
    if base.program is not None:
        from ..graph.resources import with_program  # (loads the program: a bad one is one line, before any run)
    models = {m.label: m for m in config.models}
    runs: list[CellRun] = []
    for seed in config.seeds:  # seeds outermost: a partial experiment has whole seeds
        for cell in cells:
            model = models[cell.model]
            for arm in ARMS:
                values_ = config.run.model_dump(exclude_unset=True)
                values_.update(
                    name=f"{config.name}/{cell.key}/{arm}/s{seed}",
                    source_tasks=list(cell.sources) if arm == "transfer" else [],
                    target_task=cell.target,
                    proposer=model.proposer,
                    scorer=model.scorer_spec,
                    **({"base_url": model.base_url} if model.base_url else {}),
                    **({"request_timeout": model.request_timeout} if model.request_timeout is not None else {}),
                    **({"precision": model.precision} if model.precision is not None else {}),
                    **({"extra_body": model.extra_body} if model.extra_body is not None else {}),
                    seed=seed,
                    transfer=arm == "transfer",
                    scorer_budget=cell.budget,
                    target_steps=steps_to_spend(base, cell.budget),
                )
                run_config = make_config(values_, where=f"{where} cell {cell.key} ({arm}, seed {seed})")
                if base.program is not None:  # its PROMPTS, unless [run] gives original_prompt
                    run_config = with_program(run_config, prompt_given="original_prompt" in values_)
                runs.append(CellRun(config.name, cell, arm, seed, run_config))
    return Experiment(config=config, cells=tuple(cells), runs=tuple(runs))


# -- the experiments table ------------------------------------------------------------------


def record_experiment(log: EventLog, experiment: Experiment) -> Experiment:
    """Store the experiment (once) and return it with its id.

    Raises:
        ConfigError: an experiment of that name exists with a different grid.
    """
    config_json = json.dumps(experiment.config.model_dump(mode="json"), sort_keys=True)
    exp_id, stored = experiments_table.record(log, experiment.name, config_json)
    if _normalized(stored) != json.loads(config_json):
        raise ConfigError(
            f"experiment {experiment.name!r} already exists in {log.path} with a different config",
            hint="give the changed grid a new `name` (finished cells are found by name)",
        )
    return Experiment(experiment.config, experiment.cells, experiment.runs, exp_id)


def _normalized(config_json: str) -> Any:
    """A stored grid with today's defaults filled in: one recorded before a key was added is the same grid."""
    data = json.loads(config_json)
    try:
        return ExperimentConfig(**data).model_dump(mode="json")
    except (ValidationError, ConfigError):
        return data


def list_experiments(log: EventLog) -> list[tuple[str, str, str]]:
    """``(experiment_id, name, created_at)`` of every stored experiment, oldest first."""
    return experiments_table.listed(log)


def find_experiment(log: EventLog, ref: str) -> Experiment | None:
    """The stored experiment named ``ref`` (or with that id or id prefix), planned again; None if none."""
    rows = experiments_table.matching(log, ref)
    if len(rows) > 1:
        raise UnknownRun(f"{ref!r} matches several experiments", hint="give more of the id")
    if not rows:
        return None
    exp_id, config_json = rows[0]
    planned = plan_experiment(json.loads(config_json), where=f"experiment {ref}")
    return Experiment(planned.config, planned.cells, planned.runs, exp_id)


# -- cells as runs ---------------------------------------------------------------------------


def find_cell_run(log: EventLog, cell_run: CellRun) -> str | None:
    """The id of the run recorded for ``cell_run`` (found by name and config), or None.

    Raises:
        ConfigError: a run of that name exists but with another config.
    """
    wanted = cell_run.config.model_dump(mode="json")
    named = experiments_table.root_runs_named(log, cell_run.name)
    for run_id in named:
        config = log.state(run_id).config
        if config is not None and config.model_dump(mode="json") == wanted:
            return run_id
    if named:
        raise ConfigError(
            f"run {named[0]} is named {cell_run.name!r} but has another config",
            hint="rename the experiment, or use another --db",
        )
    return None


def cell_states(log: EventLog, experiment: Experiment) -> Iterator[tuple[CellRun, RunState | None]]:
    """Each planned run with its state (None: not started yet)."""
    for cell_run in experiment.runs:
        run_id = find_cell_run(log, cell_run)
        yield cell_run, (log.state(run_id) if run_id else None)


class Execute(Protocol):
    """Runs or resumes one cell's run: ``execute(log, run_id, cell_run, index, total, resources=...)``.

    ``resources`` are the run's, opened already (by the experiment's preflight or its ``create_run``), or None:
    give them to :class:`~tprompt.graph.runner.Runner` so the run does not open them again.
    """

    def __call__(self, log: EventLog, run_id: str, cell_run: CellRun, index: int, total: int, /, *,
                 resources: RunResources | None = None) -> RunState: ...


def _default_execute(log: EventLog, run_id: str, cell_run: CellRun, index: int, total: int, /, *,
                     resources: RunResources | None = None) -> RunState:
    from ..graph.runner import Runner

    return Runner(log, run_id, resources=resources).run()


def preflight_experiment(experiment: Experiment, *, options: ExecutionOptions | None = None) -> dict[int, RunResources]:
    """Check every planned run's tasks and models (once per combination) before anything runs.

    Returns:
        the resources opened (with ``options``), by the index in ``experiment.runs`` of the run each was
        opened for (the first of its combination): pass them on, so that run does not open them again.

    Raises:
        UnknownTask, UnknownModel, ConfigError: the first problem found.
    """
    from ..graph.api import preflight

    checked: set[tuple[Any, ...]] = set()
    opened: dict[int, RunResources] = {}
    for index, cell_run in enumerate(experiment.runs):
        c = cell_run.config
        key = (c.proposer, c.scorer, tuple(c.source_tasks), c.target_task, c.mode)
        if key not in checked:
            opened[index] = preflight(cell_run.config, options=options)
            checked.add(key)
    return opened


def run_experiment(
    log: EventLog,
    experiment: Experiment,
    *,
    execute: Execute | None = None,
    on_skip: Callable[[CellRun, RunState, int, int], None] | None = None,
    options: ExecutionOptions | None = None,
) -> tuple[Experiment, list[tuple[CellRun, RunState]]]:
    """Record ``experiment`` and run its cells in order; finished cells are skipped.

    Each cell is created (``create_run``) when missing and run or resumed with
    ``execute(log, run_id, cell_run, index, total, resources=...)`` (default: a plain
    :class:`Runner`); a run's resources are opened once, with ``options`` (this
    execution's), and passed on. The loop stops at the first run that does not complete
    (paused): rerunning continues from there.

    Returns:
        the recorded experiment and ``(cell run, state)`` of the runs visited.

    Raises:
        whatever ``execute`` raises (a failed run stays resumable).
    """
    from ..graph.api import open_run, preflight

    execute = execute or _default_execute
    opened = preflight_experiment(experiment, options=options)
    experiment = record_experiment(log, experiment)
    visited: list[tuple[CellRun, RunState]] = []
    total = len(experiment.runs)
    for index, cell_run in enumerate(experiment.runs, start=1):
        resources = opened.pop(index - 1, None)
        run_id = find_cell_run(log, cell_run)
        if run_id is not None:
            state = log.state(run_id)
            if state.status == "completed":
                if on_skip is not None:
                    on_skip(cell_run, state, index, total)
                visited.append((cell_run, state))
                continue
        else:
            # the cell's Runner gets them as the run recorded them (task files by absolute path)
            run_id, resources = open_run(log, cell_run.config,
                                         resources=resources or preflight(cell_run.config, options=options))
        state = execute(log, run_id, cell_run, index, total, resources=resources)
        visited.append((cell_run, state))
        if state.status != "completed":
            break
    return experiment, visited


__all__ = (
    "ARMS",
    "ARM_LABELS",
    "Arm",
    "Cell",
    "CellRun",
    "Experiment",
    "ExperimentConfig",
    "ModelPair",
    "REPORT_LABELS",
    "cell_states",
    "find_cell_run",
    "find_experiment",
    "list_experiments",
    "load_experiment_file",
    "plan_experiment",
    "preflight_experiment",
    "record_experiment",
    "run_experiment",
    "transfer_cost",
)
