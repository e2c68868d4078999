"""Starting, resuming and forking runs: the functions front ends call."""

from __future__ import annotations

from typing import Any

from ..agents import get_model
from ..errors import ConfigError, UsageError
from ..evaluator import ObjectiveWeights, load_task
from ..stores import EventLog
from ..stores.events import PromptCandidate, RunCreated, prompt_id_of
from ..stores.projection import RunState
from .config import RunConfig, make_config


def preflight(config: RunConfig) -> None:
    """Check everything a run needs before anything is written.

    Raises:
        UnknownTask, BadTaskFile, UnknownModel, ModelUnavailable, MissingExtra,
        MissingCredentials, ConfigError.
    """
    tasks = [load_task(name) for name in [*config.source_tasks, config.target_task]]
    try:
        ObjectiveWeights(**config.weights)
    except Exception as exc:  # pydantic ValidationError or TypeError from unknown keys
        raise ConfigError(f"weights: {exc}".splitlines()[0], hint="see `tprompt eval --help` for the metric names") from exc
    get_model(config.proposer)
    scorer = get_model(config.scorer)
    if config.mode == "logprob":
        if not scorer.supports_option_probs:
            raise UsageError(
                f"mode logprob needs a local model with option probabilities; {config.scorer} has none",
                hint="use --mode generate",
            )
        open_tasks = [t.name for t in tasks if t.kind != "choice"]
        if open_tasks:
            raise UsageError(
                f"mode logprob needs multiple-choice tasks; {', '.join(open_tasks)} are not",
                hint="use --mode generate or auto",
            )


def create_run(log: EventLog, config: RunConfig, *, run_id: str | None = None) -> str:
    """Validate and record a new run (its ``run.created`` event); returns the run id."""
    preflight(config)
    text = config.original_prompt
    created = RunCreated(
        config=config.model_dump(mode="json"),
        source_tasks=list(config.source_tasks) if config.transfer else [],
        target_task=config.target_task,
        original_prompt=PromptCandidate(prompt_id=prompt_id_of(text), text=text, origin="original"),
        name=config.name,
    )
    return log.create_run(created, run_id=run_id)


def fork_run(
    log: EventLog,
    run_id: str,
    *,
    at_seq: int | None = None,
    from_prompt_id: str | None = None,
    overrides: dict[str, Any] | None = None,
) -> str:
    """Branch ``run_id`` at a seq, or from one of its source prompts onto a (new) target.

    With ``from_prompt_id`` the fork point is the end of the parent's source
    stage and the target stage is seeded with exactly that prompt.

    Raises:
        UnknownRun, SeqOutOfRange, UsageError (no such prompt, or no fork point), ConfigError.
    """
    run_id = log.resolve(run_id)
    if (at_seq is None) == (from_prompt_id is None):
        raise UsageError("give exactly one of --at SEQ or --from-prompt PROMPT_ID")
    parent = log.state(run_id)
    if not parent.config:
        raise UsageError(f"run {run_id} has no configuration; it cannot be forked")
    if from_prompt_id is not None:
        from_prompt_id = _resolve_prompt(parent, from_prompt_id)
        at_seq = _source_stage_end(log, run_id, parent, from_prompt_id)
    assert at_seq is not None
    log.check_seq(run_id, at_seq)
    at_state = log.state(run_id, upto=at_seq)
    values = dict(at_state.config)
    values.update(overrides or {})
    config = make_config(values, where="fork options")
    if from_prompt_id is not None and not config.transfer:
        raise UsageError("--from-prompt needs transfer on")
    preflight(config)
    return log.fork(
        run_id,
        at_seq,
        config=config.model_dump(mode="json"),
        target_task=config.target_task,
        from_prompt_id=from_prompt_id,
        name=config.name,
    )


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


def _source_stage_end(log: EventLog, run_id: str, state: RunState, prompt_id: str) -> int:
    for se in log.events(run_id):
        if se.type == "stage.completed" and getattr(se.event, "stage", None) == "source":
            return se.seq
    raise UsageError(
        f"run {run_id} has not finished its source stage, so there is no transfer point yet",
        hint="resume it first, or fork --at SEQ",
    )


__all__ = ("create_run", "fork_run", "preflight")
