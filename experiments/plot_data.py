"""What the report's plots draw besides its tables: every candidate's metrics, and test answers replayed.

Reliability diagrams need each test answer's confidence, which events do not
keep: the answers are replayed from the LLM cache (the same requests the run
made, looked up by cache key, never sent to a model), so a plot costs no model
calls. The score curves are :func:`tprompt.stores.curves.score_curve`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from ..errors import TPromptError
from ..evaluator import ObjectiveWeights, load_task, score_prompt
from ..stores import EventLog
from ..stores.events import Stage


def candidate_points(log: EventLog, run_id: str, stage: Stage = "target") -> list[dict[str, float | None]]:
    """Metrics (and objective) of every full-set candidate score of ``stage`` (training examples)."""
    state = log.state(run_id)
    result = []
    for s in state.stage_scores(stage):
        if s.eliminated:
            continue
        result.append({**s.metrics, "objective": s.objective})
    return result


class _CacheOnly:
    """A stand-in recorder that answers only from the LLM cache and writes nothing."""

    class Missing(Exception):
        pass

    def __init__(self, log: EventLog) -> None:
        self.store = log.transcripts

    def _lookup(self, bodies: list[dict[str, Any]]) -> list[str]:
        from ..models.recorder import cache_key

        keys = [cache_key(b) for b in bodies]
        found = self.store.lookup(keys)
        if any(k not in found for k in keys):
            raise self.Missing()
        return [found[k].response for k in keys]

    def chat(self, model, requests, **_: Any):
        from ..models.recorder import chat_request_body
        from ..models.types import ChatResult

        texts = self._lookup([chat_request_body(model, r) for r in requests])
        return [ChatResult(text=t, call_id="", cache_hit=True, prompt_tokens=0, completion_tokens=0, latency_s=0.0)
                for t in texts]

    def option_probs(self, model, requests, **_: Any):
        from ..models.recorder import options_request_body
        from ..models.types import OptionsResult

        texts = self._lookup([options_request_body(model, r) for r in requests])
        return [OptionsResult(probs=tuple(json.loads(t)), call_id="", cache_hit=True, prompt_tokens=0, latency_s=0.0)
                for t in texts]


@dataclass(frozen=True, slots=True)
class _ModelStub:
    """What a cache key needs of a model: its spec and revision. Never called."""

    spec: str
    revision: str
    supports_option_probs: bool = True


def _scorer_revision(log: EventLog, run_id: str, spec: str) -> str | None:
    body = log.transcripts.first_request_body(run_id, "scorer", spec)
    if body is None:
        return None
    try:
        return json.loads(body).get("revision")
    except (ValueError, AttributeError):
        return None


def replay_test_answers(log: EventLog, run_id: str, role: str) -> tuple[list[bool], list[float]] | None:
    """(correct, confidence) per test example of a run's tested ``role``, replayed from the cache.

    None when the run has not tested the role, its task is open-ended (no confidence), or its answers are not
    in the cache.
    """
    state = log.state(run_id)
    row = state.tested.get(role)
    if row is None or state.config is None:
        return None
    config = state.config
    try:
        task = load_task(row.task)
    except (TPromptError, ValueError):
        return None
    if task.kind == "text":  # open-ended: the scorer states no confidence, there is nothing to calibrate
        return None
    revision = _scorer_revision(log, run_id, config.scorer)
    if revision is None:
        return None
    examples = task.sample(config.test_examples, split="test", seed=config.seed)
    model = _ModelStub(config.scorer, revision)
    modes = ["logprob", "generate"] if config.mode == "auto" else [config.mode]
    for mode in modes:
        try:
            ev = score_prompt(row.text, examples, task=task, model=model, recorder=_CacheOnly(log),  # type: ignore[arg-type]
                              mode=mode, weights=ObjectiveWeights(**config.weights))  # type: ignore[arg-type]
        except (_CacheOnly.Missing, TPromptError):
            continue
        return [a.correct for a in ev.answers], [a.confidence for a in ev.answers]
    return None


__all__ = ("candidate_points", "replay_test_answers")
