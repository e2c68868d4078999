"""What one run opens, once: its tasks, metrics, objective and model views.

A run needs the same things wherever it starts (``tprompt run``, ``resume``,
``fork``, ``rescore``, ``replay --rerun``, an experiment cell, the Python
API): the tasks its config names, loaded; its metric plug-ins, resolved at
their pinned versions; its objective weights, checked against that metric
set; and a view of each model it calls (the proposer, the scorer, the judge),
with this execution's concurrency, timeout and pause flag. :class:`RunResources`
holds them, typed and frozen, opened by :meth:`RunResources.open` from
(config, tasks given as objects, :class:`ExecutionOptions`).

This module is the only caller, for a run, of the task loader, the metric
resolver, the weight check and ``get_model``, and the only place their errors
are worded. ``rescore`` needs no model: it opens :class:`Evaluation`, the
evaluator's part alone.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from types import MappingProxyType
from typing import Any

from ..config import check_execution_options
from ..errors import ConfigError, UsageError, first_error
from ..evaluator import ObjectiveWeights, Task, load_task, objective
from ..evaluator.program import Program, load_program
from ..evaluator.registry import MetricSet, metric_versions, resolve_metrics, run_objective_weights
from ..evaluator.scoring import has_options
from ..evaluator.tasks import task_template
from ..models import ChatBackend, get_model
from .config import RunConfig

#: The evaluator's objective: metrics -> one number to maximize.
Objective = Callable[[Mapping[str, float | None]], float]


@dataclass(frozen=True, slots=True, kw_only=True)
class ExecutionOptions:
    """How this execution of a run calls its models and when it stops; not part of what the run records.

    Args:
        concurrency: requests in flight per endpoint of a served model (None: the run's config).
        request_timeout: seconds per request to a served model (None: the run's config).
        max_cost: USD; the run pauses (reason ``budget``) once its paid calls reach it.
        max_rollouts: scorer calls on training examples; the run pauses (reason ``rollouts``) before passing it.
        force: take over the run's lease from a process on another host (``resume --force``).
    """

    concurrency: int | None = None
    request_timeout: float | None = None
    max_cost: float | None = None
    max_rollouts: int | None = None
    force: bool = False

    def __post_init__(self) -> None:
        if self.max_cost is not None and not self.max_cost > 0:
            raise UsageError(f"--max-cost must be a positive number of US dollars, not {self.max_cost}")
        if self.max_rollouts is not None and self.max_rollouts < 1:
            raise UsageError(f"--max-rollouts must be a positive number of scorer calls, not {self.max_rollouts}")
        check_execution_options(self.concurrency, self.request_timeout)

    def applied(self, config: RunConfig) -> RunConfig:
        """``config`` as this execution runs it: its ``concurrency`` and ``request_timeout`` replaced where given."""
        update: dict[str, Any] = {}
        if self.concurrency is not None:
            update["concurrency"] = self.concurrency
        if self.request_timeout is not None:
            update["request_timeout"] = self.request_timeout
        return config.model_copy(update=update) if update else config


@dataclass(frozen=True, slots=True, kw_only=True)
class Evaluation:
    """The evaluator's part of a run: its tasks, metric set and objective (no model)."""

    config: RunConfig
    #: every task the run names, by name (given as objects, or loaded by name or path)
    tasks: Mapping[str, Task]
    metric_set: MetricSet
    weights: ObjectiveWeights
    #: replaces the weighted objective of ``weights``
    objective_fn: Objective | None = None

    @classmethod
    def open(
        cls,
        config: RunConfig,
        *,
        tasks: Mapping[str, Task] | None = None,
        task_names: Iterable[str] | None = None,
        objective_fn: Objective | None = None,
        abandoned: Callable[[], bool] | None = None,
    ) -> Evaluation:
        """Load the tasks (``task_names``, default: the config's), resolve the metrics, check the weights.

        Raises:
            UnknownTask, BadTaskFile, ConfigError (a metric or a weight).
        """
        given = dict(tasks or {})
        names = list(dict.fromkeys(task_names if task_names is not None else [*config.source_tasks, config.target_task]))
        loaded = {**given, **{name: given[name] if name in given else load_task(name) for name in names}}
        metric_set = resolve_metrics(config.metrics, config.metric_versions, timeout=config.metric_timeout,
                                     abandoned=abandoned)
        return cls(config=config, tasks=MappingProxyType(loaded), metric_set=metric_set,
                   weights=check_weights(config.weights, metric_set, config,
                                         open_tasks=any(t.kind == "text" for t in loaded.values())),
                   objective_fn=objective_fn)

    def task(self, name: str) -> Task:
        """The task ``name`` of this run."""
        try:
            return self.tasks[name]
        except KeyError:
            raise UsageError(f"task {name!r} is not one of this run's ({', '.join(self.tasks)})") from None

    def objective(self, metrics: Mapping[str, float | None]) -> float:
        """The one number the run maximizes, from a candidate's metrics."""
        if self.objective_fn is not None:
            return float(self.objective_fn(metrics))
        return objective(dict(metrics), self.weights)


def check_weights(weights: Mapping[str, float], metric_set: MetricSet, config: RunConfig | None = None, *,
                  open_tasks: bool = True) -> ObjectiveWeights:
    """A run's objective weights over ``metric_set`` (and its judge's criteria), checked: see
    :func:`tprompt.evaluator.registry.run_objective_weights` (ConfigError ``weights: ...``)."""
    return run_objective_weights(weights, metric_set, config.judge_rubric if config is not None else None,
                                 open_tasks=open_tasks)


def pin_metrics(config: RunConfig, metric_set: MetricSet) -> RunConfig:
    """``config`` with the version of each of its metrics recorded (``metric_versions``), as a new run stores it."""
    versions = metric_versions(metric_set)
    return config if versions == config.metric_versions else config.model_copy(update={"metric_versions": versions})


def pinned(config: RunConfig, resources: RunResources) -> RunConfig:
    """``config`` as a new run records it: its metrics' versions, and what ``resources`` found its servers do
    (``server_logprobs``)."""
    config = pin_metrics(config, resources.metric_set)
    found = {**config.server_logprobs, **resources.config.server_logprobs}
    return config if found == config.server_logprobs else config.model_copy(update={"server_logprobs": found})


def _probe_scorer(config: RunConfig, scorer: ChatBackend, tasks: Iterable[Task]) -> RunConfig:
    """``config`` with whether its served scorer returns log-probabilities recorded (``server_logprobs``).

    A run that recorded it tells the scorer (resume, replay: no request); else the scorer is asked now,
    when the run will need to know (mode logprob, or auto with a task that has options: what
    ``evaluator.resolve_mode`` asks first), so a new run records the answer before anything else is written.
    """
    if not scorer.probes_logprobs:
        return config
    known = config.server_logprobs.get(scorer.revision)
    if known is not None:
        scorer.assume_logprobs(known)
        return config
    if config.mode == "generate" or (config.mode == "auto" and not any(has_options(t) for t in tasks)):
        return config
    found = scorer.supports_option_probs  # the probe: retried like any call (a TransientBackendError after that)
    return config.model_copy(update={"server_logprobs": {**config.server_logprobs, scorer.revision: found}})


@dataclass(frozen=True, slots=True, kw_only=True)
class RunResources:
    """Everything one execution of a run uses, opened once (:meth:`open`) and passed down.

    ``config`` is the run's configuration as this execution runs it: metric
    versions pinned, execution options applied. ``pause`` is the execution's
    pause flag: the model views stop waiting for requests once it is up.
    """

    config: RunConfig
    options: ExecutionOptions
    evaluation: Evaluation
    proposer: ChatBackend
    scorer: ChatBackend
    #: the LLM judge (None: no judge configured)
    judge: ChatBackend | None
    #: the user's program whose prompts the run optimizes (None: the scorer answers under one prompt)
    program: Program | None = None
    pause: threading.Event = field(default_factory=threading.Event)

    @classmethod
    def open(
        cls,
        config: RunConfig,
        *,
        tasks: Mapping[str, Task] | None = None,
        task_names: Iterable[str] | None = None,
        options: ExecutionOptions | None = None,
        objective_fn: Objective | None = None,
    ) -> RunResources:
        """Open a run's resources: everything a run needs is checked here, before anything is written.

        Args:
            config: the run's configuration (from its ``run.created``, or about to be recorded).
            tasks: tasks given as Python objects, by the names ``config`` uses.
            task_names: the tasks to open (default: the config's source and target tasks).
            options: this execution's options (default: none).
            objective_fn: replaces the weighted objective.

        Raises:
            UnknownTask, BadTaskFile, UnknownModel, ModelUnavailable, MissingExtra,
            MissingCredentials, ConfigError, UsageError.
        """
        options = options or ExecutionOptions()
        pause = threading.Event()
        program = open_program(config)
        evaluation = Evaluation.open(config, tasks=tasks, task_names=task_names, objective_fn=objective_fn,
                                     abandoned=pause.is_set)
        config = options.applied(pin_metrics(config, evaluation.metric_set))
        evaluation = Evaluation(config=config, tasks=evaluation.tasks, metric_set=evaluation.metric_set,
                                weights=evaluation.weights, objective_fn=objective_fn)
        _check_references(list(evaluation.tasks.values()), config)
        for task in evaluation.tasks.values():
            template = task_template(config.template, task.name)
            if template is not None:
                template.check_rows([*task.train, *task.test], where=f"task {task.name}")
        # Each run gets its own view of a shared backend: its gate, timeout and pause are its own.
        views: dict[str, ChatBackend] = {}
        for spec in (config.proposer, config.scorer, *([config.judge] if config.judge else [])):
            if spec not in views:
                views[spec] = get_model(
                    spec, base_url=config.base_url, concurrency=config.concurrency,
                    request_timeout=config.request_timeout, abandoned=pause.is_set,
                    precision=config.precision_of(spec), extra_body=config.extra_body_of(spec),
                )
        config = _probe_scorer(config, views[config.scorer], evaluation.tasks.values())
        resources = cls(config=config, options=options, evaluation=evaluation, proposer=views[config.proposer],
                        scorer=views[config.scorer], judge=views[config.judge] if config.judge else None,
                        program=program, pause=pause)
        resources._check_mode()
        return resources

    def _check_mode(self) -> None:
        if self.config.mode != "logprob":
            return
        if not self.scorer.supports_option_probs:
            raise UsageError(
                f"mode logprob needs option probabilities (a local model, or a server that returns logprobs); "
                f"{self.config.scorer} has none",
                hint="use --mode generate",
            )
        open_tasks = [t.name for t in self.evaluation.tasks.values() if not has_options(t)]
        if open_tasks:
            raise UsageError(
                f"mode logprob needs multiple-choice or label (answer-space) tasks; {', '.join(open_tasks)} "
                + ("is not" if len(open_tasks) == 1 else "are not"),
                hint="use --mode generate or auto",
            )

    @property
    def tasks(self) -> Mapping[str, Task]:
        return self.evaluation.tasks

    @property
    def metric_set(self) -> MetricSet:
        return self.evaluation.metric_set

    @property
    def weights(self) -> ObjectiveWeights:
        return self.evaluation.weights

    def task(self, name: str) -> Task:
        return self.evaluation.task(name)

    def objective(self, metrics: Mapping[str, float | None]) -> float:
        return self.evaluation.objective(metrics)

    def matches(self, config: RunConfig) -> bool:
        """Whether these resources were opened for a run recorded with ``config`` (execution options aside)."""
        return self.options.applied(config) == self.config

    def recorded_as(self, recorded: RunConfig) -> RunResources:
        """These resources for the new run recorded with ``recorded``: the config they were opened for, as
        :func:`tprompt.run_files.record_files` recorded it (its tasks given by path named by their absolute path,
        its files hashed). Nothing is reopened: each path task is the one already loaded, named by its recorded
        path, as a resume loads it, so they :meth:`match <matches>` the run they are handed with.

        Raises:
            ValueError: ``recorded`` differs from these resources' config in more than the recorded fields
                (``source_tasks``, ``target_task``, ``files``): they were not opened for that run.
        """
        paths = {"source_tasks": recorded.source_tasks, "target_task": recorded.target_task, "files": recorded.files}
        config = self.options.applied(recorded)
        if (config != self.config.model_copy(update=paths)
                or len(recorded.source_tasks) != len(self.config.source_tasks)):
            raise ValueError("recorded_as: the recorded config is not the one these resources were opened for")
        if config == self.config:
            return self
        renamed = dict(zip([*self.config.source_tasks, self.config.target_task],
                           [*recorded.source_tasks, recorded.target_task], strict=True))
        tasks = {}
        for name, task in self.tasks.items():
            new = renamed.get(name, name)
            tasks[new] = task if new == name else task.model_copy(update={"name": new})
        evaluation = replace(self.evaluation, config=config, tasks=MappingProxyType(tasks))
        return replace(self, config=config, evaluation=evaluation)


def open_program(config: RunConfig) -> Program | None:
    """The run's program (None without one), its prompts checked against the run's original prompt set.

    Raises:
        ConfigError: the program does not load (:func:`load_program`), or the original prompt is not a set
            of its prompts (its PROMPTS were renamed since the run recorded them).
    """
    if config.program is None:
        return None
    program = load_program(config.program, timeout=config.program_timeout)
    try:
        program.prompt_set(config.original_prompt)
    except UsageError as exc:
        raise ConfigError(f"program {program.ref}: the run's original prompt does not name its prompts "
                          f"({', '.join(program.names)})",
                          hint="a run keeps the prompt names it was created with; "
                          "start a new run after renaming PROMPTS", key="program") from exc
    return program


def with_program(config: RunConfig, *, prompt_given: bool = False) -> RunConfig:
    """A new run's config with its original prompt set to its program's ``PROMPTS`` (unless ``prompt_given``).

    Raises:
        ConfigError: the program does not load (:func:`load_program`).
    """
    if config.program is None or prompt_given:
        return config
    return config.model_copy(update={"original_prompt": load_program(config.program, timeout=config.program_timeout).original_text})


def open_judge(config: RunConfig) -> ChatBackend:
    """A view of ``config``'s judge model alone (``tprompt rescore --judge``: no proposer or scorer is called)."""
    assert config.judge is not None
    return get_model(config.judge, base_url=config.base_url, concurrency=config.concurrency,
                     precision=config.precision_of(config.judge), extra_body=config.extra_body_of(config.judge))


def _check_references(tasks: list[Task], config: RunConfig) -> None:
    """An open-ended row without a reference can only be judged: refuse it when no judge is configured."""
    if config.judge:
        return
    for task in tasks:
        if task.kind != "text":
            continue
        for split, rows in (("train", task.train), ("test", task.test)):
            bare = next((r for r in rows if not r.targets), None)
            if bare is not None:
                raise ConfigError(
                    f"task {task.name}: {split} row {bare.id!r} has neither 'answer' nor 'reference', and no judge "
                    "is configured to score it", hint="give the row a reference, or configure a judge", key="judge",
                )


__all__ = ("Evaluation", "ExecutionOptions", "Objective", "RunResources", "check_weights", "first_error", "open_judge",
           "open_program", "pin_metrics", "with_program")
