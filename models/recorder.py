"""The recorder: every model call goes through here.

A request's cache key is the sha256 of its canonical JSON: model spec and
revision, kind, messages and every sampling parameter including the sample
index. A hit returns the stored answer with no model call. Misses go to a
backend that answers a batch in one pass (the embedded model) as one batch, and
to any other backend one request per call, up to its concurrency at once. Every
request, hit or miss, becomes one transcript row, and each answer is durable
(cache row + transcript row) as soon as it arrives, before the next is awaited.
Transient model errors are retried with backoff; a call that still fails is
recorded as failed rows and raised as :class:`ModelCallFailed`.
"""

from __future__ import annotations

import json
import os
import queue
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

from ..errors import BackendError, ModelCallFailed
from ..stores.db import Closing, Store
from ..stores.log import EventLog
from ..stores.transcripts import CacheEntry, NewCall, TranscriptStore, body_hash, canonical_json
from ._retry import BACKOFF_S, RETRIES, with_retries
from .backend import ChatBackend
from .pricing import call_cost, override
from .row_progress import rows_done
from .types import ChatRequest, ChatResult, OptionsRequest, OptionsResult, check_messages


def chat_request_body(model: ChatBackend, request: ChatRequest) -> dict[str, Any]:
    """The canonical form of a chat request: what is hashed and stored."""
    return {
        "kind": "chat",
        "model": model.spec,
        "revision": model.revision,
        "messages": [list(m) for m in request.messages],
        "temperature": request.temperature,
        "max_tokens": request.max_tokens,
        "top_p": request.top_p,
        "stop": list(request.stop),
        "seed": request.seed,
        "sample_index": request.sample_index,
        **_templates(request.templates),
    }


def options_request_body(model: ChatBackend, request: OptionsRequest) -> dict[str, Any]:
    """The canonical form of an options request."""
    return {
        "kind": "options",
        "model": model.spec,
        "revision": model.revision,
        "messages": [list(m) for m in request.messages],
        "options": list(request.options),
        "answer_prefix": request.answer_prefix,
        **_templates(request.templates),
    }


def _templates(refs: Sequence[str]) -> dict[str, Any]:
    # Only when given: a request built without declared templates keeps the key it always had.
    return {"templates": list(refs)} if refs else {}


def cache_key(body: dict[str, Any]) -> str:
    """sha256 of the canonical (sorted-key) JSON of a request body."""
    return body_hash(canonical_json(body))


def new_call_id() -> str:
    return "c-" + uuid.uuid4().hex[:12]


class Recorder(Closing):
    """Cache lookups, model calls and transcript rows for one database.

    Args:
        db: a database path (the recorder opens its own connection, so it can
            share the file with an :class:`EventLog` writing at the same time),
            an :class:`EventLog` (its connection and lock are shared), or
            an open :class:`~tprompt.stores.db.Store` to share.
        run_id: the run every call belongs to unless a call says otherwise.
        retries: attempts after the first for retryable errors.
        prices: USD per million (input, output) tokens by model spec, over the models' own
            (a run's ``prices`` setting); decides each answered call's ``cost``.
        backoff_s: the first retry's wait; it doubles each time.

    Attributes:
        model_calls: requests actually sent to a model (misses).
        requests: every request seen (hits + misses).
    """

    def __init__(
        self,
        db: str | os.PathLike[str] | Store | EventLog,
        *,
        run_id: str | None = None,
        retries: int = RETRIES,
        backoff_s: float = BACKOFF_S,
        prices: Mapping[str, Sequence[float]] | None = None,
    ) -> None:
        self.prices = dict(prices or {})
        if isinstance(db, EventLog):
            # The log's connection and lock, shared: a run holds one connection to its file, closed with
            # the log (a connection of the recorder's own, never closed by a Runner, kept the file's
            # write-ahead log unmerged until garbage collection).
            self.store = db.transcripts
        else:
            self.store = TranscriptStore(db)
        self.run_id = run_id
        self.retries = retries
        self.backoff_s = backoff_s
        self.model_calls = 0
        self.requests = 0
        self._count_lock = threading.Lock()

    def close(self) -> None:
        """Close the recorder's own connection (not a shared one)."""
        self.store.close()

    def at(self, agent: str, *, run_id: str | None = None, step: str | None = None, seq: int | None = None) -> CallSite:
        """This recorder bound to a call site: every call made through it is filed under these."""
        return CallSite(self, agent, run_id=run_id, step=step, seq=seq)

    # -- the two kinds of call -------------------------------------------------------

    def cost(self, model: ChatBackend, prompt_tokens: int, completion_tokens: int) -> float | None:
        """USD of one answered call: the run's price for the model if it gives one, else the model's own."""
        return call_cost(override(model.spec, self.prices, model.price), prompt_tokens, completion_tokens)

    def chat(
        self,
        model: ChatBackend,
        requests: Sequence[ChatRequest],
        *,
        agent: str,
        run_id: str | None = None,
        step: str | None = None,
        seq: int | None = None,
    ) -> list[ChatResult]:
        """Answer chat requests, from the cache where possible; order of results == order of requests.

        Raises:
            ModelCallFailed: the model failed after retries; the failure is recorded.
        """
        for req in requests:
            check_messages(req.messages)
        bodies = [chat_request_body(model, r) for r in requests]
        raw = self._run(model, "chat", list(requests), bodies, model.generate, agent, run_id, step, seq)
        return [
            ChatResult(text=resp, call_id=cid, cache_hit=hit, prompt_tokens=pt, completion_tokens=ct, latency_s=lat)
            for resp, cid, hit, pt, ct, lat in raw
        ]

    def option_probs(
        self,
        model: ChatBackend,
        requests: Sequence[OptionsRequest],
        *,
        agent: str,
        run_id: str | None = None,
        step: str | None = None,
        seq: int | None = None,
    ) -> list[OptionsResult]:
        """Probability of each answer option per request (see :class:`OptionsRequest`).

        Raises:
            ModelCallFailed: the model failed after retries (or cannot score options).
        """
        for req in requests:
            check_messages(req.messages)
        bodies = [options_request_body(model, r) for r in requests]

        def call(batch: Sequence[OptionsRequest]) -> list[tuple[str, int, int]]:
            return [(canonical_json(list(probs)), pt, 0) for probs, pt in model.option_probs(batch)]

        raw = self._run(model, "options", list(requests), bodies, call, agent, run_id, step, seq)
        return [
            OptionsResult(probs=tuple(json.loads(resp)), call_id=cid, cache_hit=hit, prompt_tokens=pt, latency_s=lat)
            for resp, cid, hit, pt, _ct, lat in raw
        ]

    # -- shared machinery ------------------------------------------------------------------

    def _run(
        self,
        model: ChatBackend,
        kind: str,
        requests: list[Any],
        bodies: list[dict[str, Any]],
        call: Callable[[Sequence[Any]], list[tuple[str, int, int]]],
        agent: str,
        run_id: str | None,
        step: str | None,
        seq: int | None,
    ) -> list[tuple[str, str, bool, int, int, float]]:
        run_id = run_id if run_id is not None else self.run_id
        started = time.perf_counter()
        texts = [canonical_json(b) for b in bodies]
        keys = [body_hash(t) for t in texts]
        cached = self.store.lookup(keys)
        lookup_s = (time.perf_counter() - started) / max(1, len(requests))
        # Identical requests within one call are sent once.
        positions: dict[str, list[int]] = {}
        for i, key in enumerate(keys):
            if key not in cached:
                positions.setdefault(key, []).append(i)
        results: list[tuple[str, str, bool, int, int, float] | None] = [None] * len(requests)
        with self._count_lock:
            self.requests += len(requests)

        def row(i: int, **fields: Any) -> NewCall:
            return NewCall(call_id=new_call_id(), run_id=run_id, seq=seq, step=step, agent=agent, model=model.spec,
                           kind=kind, cache_key=keys[i], request=texts[i], **fields)

        def record_hits(found: Mapping[str, CacheEntry], at: Iterable[int]) -> None:
            hits = []
            for i in at:
                entry = found[keys[i]]
                hits.append(row(i, response=entry.response, prompt_tokens=entry.prompt_tokens,
                                completion_tokens=entry.completion_tokens, latency_s=lookup_s, cache_hit=True,
                                cost=entry.cost))
                results[i] = (entry.response, hits[-1].call_id, True, entry.prompt_tokens, entry.completion_tokens,
                              lookup_s)
            self.store.record(hits)

        record_hits(cached, (i for i, key in enumerate(keys) if key in cached))
        failed: list[str] = []
        error: BaseException | None = None
        pending = list(positions)  # the keys not answered yet
        claimed: set[str] = set()
        try:
            while pending:
                # Claim what nobody is paying for: two processes on one file (a grid's workers) needing the same
                # answer pay once; the other waits for it below and records it as a cache hit.
                if self.store.claims:
                    mine, theirs, answered = self.store.claim(pending)
                else:
                    mine, theirs, answered = pending, [], {}
                claimed.update(mine)
                record_hits(answered, (i for key in answered for i in positions[key]))
                with self._count_lock:
                    self.model_calls += len(mine)
                # Each finished answer is written (cache row + transcript row) before the next one is awaited,
                # so a killed process pays again only for the calls that were still in flight.
                for done, outcome, latency in self._answer(model, call, [requests[positions[k][0]] for k in mine]):
                    key = mine[done]
                    rows = []
                    for n, i in enumerate(positions[key]):
                        if isinstance(outcome, BaseException):
                            rows.append(row(i, response=None, prompt_tokens=None, completion_tokens=None,
                                            latency_s=latency if n == 0 else 0.0, cache_hit=False,
                                            error=f"{type(outcome).__name__}: {outcome}"))
                            continue
                        response, pt, ct = outcome
                        hit = n > 0  # a duplicate of a request answered in this same call
                        rows.append(row(i, response=response, prompt_tokens=pt, completion_tokens=ct,
                                        latency_s=lookup_s if hit else latency, cache_hit=hit,
                                        cost=None if hit else self.cost(model, pt, ct)))
                        results[i] = (response, rows[-1].call_id, hit, pt, ct, rows[-1].latency_s)
                    self.store.record(rows, unclaim=[key])
                    claimed.discard(key)
                    if not model.batched:  # a batched backend reports its own rows (models/local)
                        rows_done(len(positions[key]))
                    if isinstance(outcome, BaseException):
                        error = error or outcome
                        failed += [r.call_id for r in rows]
                if theirs:  # (a lazy backend is not touched, let alone loaded, when all was cached)
                    pending = self._wait_for_others(theirs, positions, record_hits, getattr(model, "abandoned", None))
                else:
                    pending = []
        finally:
            self.store.unclaim(sorted(claimed))  # abandoned or interrupted: another process may pay for them
        if error is not None:
            raise ModelCallFailed(
                f"model {model.spec} failed for {len(failed)} request(s) of agent {agent}: {error}",
                hint="the failure is recorded (`tprompt transcript RUN`); fix the cause and resume the run",
                call_ids=failed,
            ) from error
        return results  # type: ignore[return-value]

    def _wait_for_others(self, theirs: list[str], positions: Mapping[str, list[int]],
                         record_hits: Callable[[Mapping[str, CacheEntry], Iterable[int]], None],
                         abandoned: Callable[[], bool] | None) -> list[str]:
        """Wait while other processes pay for ``theirs``; each answer is recorded here as a cache hit.

        Returns:
            the keys to claim again: released with no answer (their holder failed or died), with any
            still waited for (the caller claims what it can and comes back here for the rest).
        """
        waiting = list(theirs)
        while waiting:
            answered, released = self.store.settled(waiting)
            record_hits(answered, (i for key in answered for i in positions[key]))
            waiting = [k for k in waiting if k not in answered]
            if released:
                return waiting
            if waiting:
                if abandoned is not None and abandoned():
                    raise CallsAbandoned()
                time.sleep(CLAIM_POLL_S)  # a poll of the database for the other process's answer
        return []

    def _answer(
        self, model: ChatBackend, call: Callable[[Sequence[Any]], list[tuple[str, int, int]]], batch: list[Any]
    ) -> Iterator[tuple[int, tuple[str, int, int] | BackendError, float]]:
        """``(index in batch, answer or error, latency in s)`` as answers finish.

        A backend that answers a batch in one pass (``model.batched``) is called once; any other
        gets one request per call, ``model.concurrency`` at a time, and each answer is yielded the
        moment it arrives. A run's view of an API backend (``model.abandoned`` set) is waited for
        in daemon threads: once ``abandoned()`` is True this raises :class:`CallsAbandoned`.
        """
        if not batch:
            return
        if model.batched:
            t0 = time.perf_counter()
            try:
                outputs: list[Any] = self._call_with_retries(call, batch)
            except BackendError as exc:
                outputs = [exc] * len(batch)
            latency = (time.perf_counter() - t0) / len(batch)
            for i, output in enumerate(outputs):
                yield i, output, latency
            return

        def one(req: Any) -> tuple[tuple[str, int, int] | BackendError, float]:
            t0 = time.perf_counter()
            try:
                return self._call_with_retries(call, [req], abandoned)[0], time.perf_counter() - t0
            except BackendError as exc:
                return exc, time.perf_counter() - t0

        abandoned = getattr(model, "abandoned", None)
        width = max(1, min(len(batch), int(getattr(model, "concurrency", 1) or 1)))
        if width == 1 and abandoned is None:
            for i, req in enumerate(batch):
                yield (i, *one(req))
            return
        yield from _in_daemon_threads(one, batch, width, abandoned)

    def _call_with_retries(self, call, batch, abandoned: Callable[[], bool] | None = None):
        outputs = with_retries(lambda: call(batch), retries=self.retries, backoff_s=self.backoff_s, abandoned=abandoned)
        if len(outputs) != len(batch):
            raise BackendError(f"the model returned {len(outputs)} answers for {len(batch)} requests")
        return outputs


@dataclass(frozen=True, slots=True)
class CallSite:
    """A :class:`Recorder` bound to where its calls come from: the agent, run, step and event seq.

    What an agent is handed instead of a recorder and four labels: ``chat`` and
    ``option_probs`` file every call under them. ``seq`` is the event the calls
    belong to (the one the node appends next); ``step`` reads like ``source:2``.
    """

    recorder: Recorder
    agent: str
    run_id: str | None = None
    step: str | None = None
    seq: int | None = None

    def chat(self, model: ChatBackend, requests: Sequence[ChatRequest]) -> list[ChatResult]:
        """:meth:`Recorder.chat` filed under this call site."""
        return self.recorder.chat(model, requests, agent=self.agent, run_id=self.run_id, step=self.step, seq=self.seq)

    def option_probs(self, model: ChatBackend, requests: Sequence[OptionsRequest]) -> list[OptionsResult]:
        """:meth:`Recorder.option_probs` filed under this call site."""
        return self.recorder.option_probs(model, requests, agent=self.agent, run_id=self.run_id, step=self.step,
                                          seq=self.seq)

    def moved(self, *, seq: int | None = None, recorder: Recorder | None = None) -> CallSite:
        """The same call site filed at another ``seq`` or through another recorder (one per thread)."""
        return replace(self, seq=self.seq if seq is None else seq, recorder=recorder or self.recorder)
class CallsAbandoned(Exception):
    """Control flow: the run stopped waiting for the model calls in flight (it is pausing).

    The answers that had arrived are recorded; the calls still in flight are
    not, and a resumed run sends them again.
    """


#: How often a wait for answers looks whether the run still wants them.
ABANDON_POLL_S = 0.1
#: How often a wait for a call another process is paying for looks for its answer.
CLAIM_POLL_S = 0.05


def _in_daemon_threads(
    one: Callable[[Any], tuple[Any, float]], batch: list[Any], width: int, abandoned: Callable[[], bool] | None
) -> Iterator[tuple[int, Any, float]]:
    """``(index, *one(item))`` as each finishes, ``width`` at a time, in daemon threads.

    Daemon threads, not a ``ThreadPoolExecutor``: a request to a hung server
    must keep neither this wait (``abandoned()`` turning True raises
    :class:`CallsAbandoned` within :data:`ABANDON_POLL_S`) nor the process's
    exit (an executor's threads are joined at exit) until its timeout.
    """
    if abandoned is not None and abandoned():
        raise CallsAbandoned()
    todo: queue.SimpleQueue[tuple[int, Any] | None] = queue.SimpleQueue()
    done: queue.SimpleQueue[tuple[int, tuple[Any, float] | BaseException]] = queue.SimpleQueue()
    for item in enumerate(batch):
        todo.put(item)
    stop = threading.Event()

    def work() -> None:
        while not stop.is_set():
            try:
                item = todo.get_nowait()
            except queue.Empty:
                return
            assert item is not None
            try:
                result: tuple[Any, float] | BaseException = one(item[1])
            except BaseException as exc:  # handed to the waiting thread, which raises it
                result = exc
            done.put((item[0], result))

    for _ in range(width):
        threading.Thread(target=work, name="tprompt-call", daemon=True).start()
    try:
        for _ in range(len(batch)):
            while True:
                if abandoned is not None and abandoned():
                    raise CallsAbandoned()
                try:
                    index, result = done.get(timeout=ABANDON_POLL_S)
                    break
                except queue.Empty:
                    continue
            if isinstance(result, BaseException):
                raise result
            yield (index, *result)
    finally:
        stop.set()  # idle workers take nothing more; one in a request finishes it and exits
