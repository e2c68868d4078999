"""Starting, resuming and forking runs: the functions front ends call."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ..errors import UsageError
from ..evaluator import Task
from ..run_files import record_files
from ..stores import EventLog
from ..stores.events import (
    PromptCandidate,
    RunCreated,
    RunFailed,
    RunForked,
    RunPaused,
    RunResumed,
    StageCompleted,
    program_candidate,
    prompt_id_of,
)
from ..stores.projection import RunState
from .config import RunConfig, make_config
from .resources import ExecutionOptions, RunResources, first_error, pin_metrics, pinned


def preflight(
    config: RunConfig, tasks: Mapping[str, Task] | None = None, *, options: ExecutionOptions | None = None
) -> RunResources:
    """Check everything a run needs before anything is written: open its resources.

    Returns the opened :class:`RunResources`; pass them on (to :func:`create_run`
    and :class:`Runner`) so nothing is opened twice.

    Raises:
        UnknownTask, BadTaskFile, UnknownModel, ModelUnavailable, MissingExtra,
        MissingCredentials, ConfigError.
    """
    return RunResources.open(config, tasks=tasks, options=options)


def create_run(
    log: EventLog,
    config: RunConfig,
    *,
    run_id: str | None = None,
    tasks: Mapping[str, Task] | None = None,
    resources: RunResources | None = None,
) -> str:
    """Validate and record a new run (its ``run.created`` event); returns the run id.

    ``tasks``: tasks given as Python objects, by the names ``config`` uses
    (pass them again to :class:`Runner` to run or resume it). ``resources``:
    the run's resources opened already (:func:`preflight`) for ``config``;
    opened here otherwise. :func:`open_run` also returns them, for the run.
    """
    return open_run(log, config, run_id=run_id, tasks=tasks, resources=resources)[0]


def open_run(
    log: EventLog,
    config: RunConfig,
    *,
    run_id: str | None = None,
    tasks: Mapping[str, Task] | None = None,
    resources: RunResources | None = None,
) -> tuple[str, RunResources]:
    """:func:`create_run`, returning the run's id and its resources as the run recorded them.

    The run records its task files by absolute path (:func:`~tprompt.run_files.record_files`); the resources
    returned name them so (:meth:`RunResources.recorded_as`, nothing reopened): pass them to :class:`Runner`
    to run the new run without opening them again.
    """
    if resources is None or not resources.matches(pinned(config, resources)):
        resources = RunResources.open(config, tasks=tasks)
    # paths made absolute, contents hashed: the run works from any folder
    recorded = record_files(pinned(config, resources), given=dict(tasks or {}))
    resources = resources.recorded_as(recorded)
    text = recorded.original_prompt
    original = PromptCandidate(prompt_id=prompt_id_of(text), text=text, origin="original")
    if resources.program is not None:
        original = program_candidate(resources.program.prompt_set(text), origin="original")
    created = RunCreated(
        config=recorded,
        source_tasks=list(recorded.source_tasks) if recorded.transfer else [],
        target_task=recorded.target_task,
        original_prompt=original,
        name=recorded.name,
    )
    return log.create_run(created, run_id=run_id), resources


def fork_run(
    log: EventLog,
    run_id: str,
    *,
    at_seq: int | None = None,
    from_prompt_id: str | None = None,
    overrides: dict[str, Any] | None = None,
    validate: bool = True,
) -> str:
    """Branch ``run_id``: see :func:`open_fork`, which also returns the fork's resources; returns the fork's id."""
    return open_fork(log, run_id, at_seq=at_seq, from_prompt_id=from_prompt_id, overrides=overrides,
                     validate=validate)[0]


def open_fork(
    log: EventLog,
    run_id: str,
    *,
    at_seq: int | None = None,
    from_prompt_id: str | None = None,
    overrides: dict[str, Any] | None = None,
    validate: bool = True,
    options: ExecutionOptions | None = None,
) -> tuple[str, RunResources | None]:
    """Branch ``run_id`` at a seq, or after its source stage (or from one of its source prompts) onto a (new) target.

    Without ``at_seq`` the fork point is the end of the parent's source stage, so the
    fork's target stage starts from the source stage's top-k, as the transfer does.

    The fork's config is the parent's (as of the fork point) updated with
    ``overrides``. With ``from_prompt_id`` the fork point is the end of the
    parent's source stage and the target stage is seeded with exactly that
    prompt. ``validate=False`` skips checking that the fork can run (tasks,
    models), for forks only meant to be inspected.

    Returns:
        the fork's id, and the resources opened to check it (None with ``validate=False``), with ``options``:
        pass them to :class:`Runner` to run the fork without opening them again.

    Raises:
        UnknownRun, SeqOutOfRange, UsageError (no such prompt, or no fork point), ConfigError.
    """
    run_id = log.resolve(run_id)
    if at_seq is not None and from_prompt_id is not None:
        raise UsageError("give at most one of --at SEQ or --from-prompt PROMPT_ID",
                         hint="neither: the fork's target stage starts from the source stage's top-k (transfer)")
    if from_prompt_id is not None:
        parent = log.state(run_id)
        from_prompt_id = _resolve_prompt(parent, from_prompt_id)
    if at_seq is None:  # the paper's transfer: after the source stage, its top-k (or the one prompt) seed the target
        at_seq = _source_stage_end(log, run_id)
    assert at_seq is not None
    log.check_seq(run_id, at_seq)
    at_state = log.state(run_id, upto=at_seq)
    if at_state.config is None:
        raise UsageError(f"run {run_id} has no run configuration, so it cannot be forked")
    config = at_state.config
    if overrides:
        config = make_config({**config.model_dump(), **overrides}, where="fork options")
    # The fork point's target unless an override names another (they agree for runs made by create_run).
    target = str((overrides or {}).get("target_task") or at_state.target_task or config.target_task)
    resources = None
    if validate:
        if from_prompt_id is not None and not config.transfer:
            raise UsageError("--from-prompt needs transfer on")
        resources = RunResources.open(config, options=options)
        config = record_files(pinned(config, resources))
        resources = resources.recorded_as(config)
        target = config.target_task
    new_id = log.fork(
        run_id,
        at_seq,
        config=config,
        target_task=target,
        from_prompt_id=from_prompt_id,
        name=config.name,
    )
    return new_id, resources


def _resolve_prompt(state: RunState, prompt_id: str) -> str:
    source_ids = {s.prompt_id for s in state.stage_scores("source")}
    matches = sorted(p for p in source_ids if p.startswith(prompt_id))
    if len(matches) == 1:
        return matches[0]
    if not matches:
        raise UsageError(
            f"run {state.run_id} has no source prompt {prompt_id!r}",
            hint="`tprompt show RUN` lists its prompts",
        )
    raise UsageError(f"{prompt_id!r} matches several prompts: {', '.join(matches)}", hint="give more of the id")


def _source_stage_end(log: EventLog, run_id: str) -> int:
    for se in log.events(run_id):
        if isinstance(se.event, StageCompleted) and se.event.stage == "source":
            return se.seq
    config = log.state(run_id).config
    if config is not None and not config.transfer:
        raise UsageError(f"run {run_id} is target-only: it has no source stage to transfer from",
                         hint="fork it at an event with --at SEQ (`tprompt events RUN` lists them)")
    raise UsageError(
        f"run {run_id} has not finished its source stage, so there is no transfer point yet",
        hint="resume it first, or fork --at SEQ",
    )




def comparable_events(log: EventLog, run_id: str, *, own_only: bool = False) -> list[tuple[str, dict[str, Any]]]:
    """A run's events as (type, payload) without what differs between two executions.

    Dropped: envelope ids and timestamps, transcript call ids (also those of
    recorded answers and judgements), the config's ``server_logprobs`` (what a
    server was found to do: a run created before it was recorded has none), and
    the pause/resume/failure marks (where a run was interrupted is not its result).
    """
    rows = []
    for se in log.events(run_id):
        if own_only and se.run_id != run_id:
            continue
        if isinstance(se.event, (RunPaused, RunResumed, RunFailed, RunForked)):
            continue
        fields = type(se.event).model_fields
        exclude: dict[str, Any] = {}
        if "call_ids" in fields:
            exclude["call_ids"] = True
        if "answers" in fields:
            exclude["answers"] = {"__all__": {"call_id"}}
        if "judgements" in fields:
            exclude["judgements"] = {"__all__": {"call_id"}}
        if "config" in fields:
            exclude["config"] = {"server_logprobs"}
        rows.append((se.type, se.event.model_dump(mode="json", exclude=exclude)))
    return rows


def rerun_check(
    log: EventLog, run_id: str, *, on_update: Any = None, options: ExecutionOptions | None = None,
) -> tuple[bool, str]:
    """Re-execute ``run_id`` from its config in a scratch copy of the database.

    The copy has the same LLM cache, so a deterministic run replays for free;
    the original database is not written. ``options`` (concurrency, request
    timeout) change how the re-run calls its models. Returns (same, explanation).
    """
    import tempfile

    from .runner import Runner

    run_id = log.resolve(run_id)
    original = log.state(run_id)
    assert original.config is not None  # a run's history starts with run.created
    with tempfile.TemporaryDirectory(prefix="tprompt-rerun-") as tmp:
        scratch_path = f"{tmp}/rerun.db"
        log.store.backup(scratch_path)
        with EventLog(scratch_path) as scratch:
            if original.parent_run_id is not None:
                assert original.parent_seq is not None
                new_id = scratch.fork(
                    original.parent_run_id,
                    original.parent_seq,
                    config=original.config,
                    target_task=original.target_task or "",
                    from_prompt_id=original.from_prompt_id,
                )
                resources = None
            else:
                new_id, resources = open_run(scratch, original.config,
                                             resources=RunResources.open(original.config, options=options))
            Runner(scratch, new_id, options=options, resources=resources).run(on_update)
            again = comparable_events(scratch, new_id, own_only=original.parent_run_id is not None)
        before = comparable_events(log, run_id, own_only=original.parent_run_id is not None)
    if original.status != "completed":
        again = again[: len(before)]
    for i, (a, b) in enumerate(zip(before, again)):
        if a != b:
            return False, f"event {i + 1} differs: recorded {a[0]} {a[1]}, re-run {b[0]} {b[1]}"
    if len(before) != len(again):
        return False, f"recorded {len(before)} events, the re-run produced {len(again)}"
    return True, f"the re-run produced the same {len(before)} events"


__all__ = ("comparable_events", "create_run", "first_error", "fork_run", "open_fork", "open_run", "pin_metrics",
           "preflight", "rerun_check")
