"""A stub OpenAI-compatible server on 127.0.0.1 for the timeout and pause tests.

A real socket server (stdlib ``ThreadingHTTPServer`` in a daemon thread) that
speaks ``POST /v1/chat/completions``. Its ``mode`` can change while it runs:

- ``answer``: a valid chat completion, deterministic in the request (the text
  is what the ``fake`` model answers to the same messages, temperature and
  seed, so runs against it parse, score and repeat exactly);
- ``hang``: accepts the request and never answers (until the server closes);
- ``empty``: a 200 whose ``choices`` list is empty;
- ``answer`` with ``hang_after=N``: the first N requests are answered, every
  later one hangs (a run then has finished calls and calls in flight);
- ``answer`` with ``fail_after=N``: the first N requests are answered, every
  later one gets a 503 (``failures`` counts them): a replica that went bad.
  Closing the server (:meth:`StubServer.close`) makes it refuse connections;
- ``legacy_only=True``: the length limit read is ``max_tokens`` alone (llama.cpp's
  Python server drops ``max_completion_tokens``: without ``max_tokens`` a request
  writes its whole reply); the tokens each reply generated are kept in ``generated``;
- ``logprobs=True``: a request asking for ``logprobs`` gets them (the first token's
  ``top_logprobs`` are the letters A-D, their probabilities the ``fake`` model's option
  probabilities), one token per word of the reply up to the length limit, as
  llama.cpp's server and vLLM do; otherwise the fields are ignored (``transformers serve``);
- ``penalty=True``: a repeat penalty applies unless the request body sets
  ``repeat_penalty`` to 1.0 (llama.cpp's default is 1.1): a penalized reply is what the
  ``fake`` model answers under another seed, so it differs from the penalty-free one;
- ``probe_hangs=N``: the first N capability probes (one-token logprob requests for
  "Reply with the letter A.") hang; ``probes`` counts the probes received;
- ``echo_auth=True``: every answer's text starts with the request's ``Authorization``
  header (a server that leaks the API key it was sent into its replies).

``gather=K`` holds each answered request until K are in flight or
``gather_s`` passes, so a test can see how many a client sends at once.
Every request body is kept in ``bodies``.
Tests wait on its counters with :meth:`StubServer.wait_for` (bounded), never on sleeps.
"""

from __future__ import annotations

import json
import math
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Protocol, TypeVar

import pytest

from tprompt.models.fake import FakeBackend
from tprompt.models.types import ChatRequest, OptionsRequest

_FAKE = FakeBackend("fake")
_PENALIZED = FakeBackend("fake:seed=7")  # what a server's default repeat penalty makes of the same requests
_LETTERS = ("A", "B", "C", "D")
_PROBE = "Reply with the letter A."


def completion(text: str, prompt_tokens: int, completion_tokens: int) -> dict:
    return {
        "id": "stub", "object": "chat.completion", "created": 0, "model": "stub",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
                  "total_tokens": prompt_tokens + completion_tokens},
    }


def deterministic_answer(body: dict, *, model: FakeBackend = _FAKE, logprobs: bool = False,
                         limit: int | None = None) -> dict:
    """The fake ``model``'s answer to an OpenAI chat request body; with ``logprobs``, its log-probabilities.

    ``limit``: the most tokens (words) the reply may have (None: the body's own limit).
    """
    messages = tuple((m["role"], m["content"] if isinstance(m["content"], str) else "") for m in body["messages"])
    if limit is None:
        limit = int(body.get("max_completion_tokens") or body.get("max_tokens") or 256)
    request = ChatRequest(messages=messages, temperature=float(body.get("temperature") or 0.0), max_tokens=limit,
                          seed=body.get("seed"))
    (text, prompt_tokens, completion_tokens), = model.generate([request])
    if not (logprobs and body.get("logprobs")):
        return completion(text, prompt_tokens, completion_tokens)
    (probs, _), = model.option_probs([OptionsRequest(messages=messages, options=_LETTERS)])
    top = sorted(((f" {letter}", math.log(p)) for letter, p in zip(_LETTERS, probs)), key=lambda t: -t[1])
    words = [top[0][0], *text.split()][:limit]
    content = [{"token": top[0][0], "logprob": top[0][1], "bytes": None,
                "top_logprobs": [{"token": t, "logprob": lp, "bytes": None}
                                 for t, lp in top[: int(body.get("top_logprobs") or 0)]]}]
    content += [{"token": f" {w}", "logprob": -1.0, "bytes": None, "top_logprobs": []} for w in words[1:]]
    reply = completion("".join(c["token"] for c in content), prompt_tokens, len(content))
    reply["choices"][0]["logprobs"] = {"content": content}
    return reply


class StubServer:
    """The server; see the module doc. ``answered``/``held`` count requests answered and hanging now."""

    def __init__(self, mode: str = "answer", *, hang_after: int | None = None, fail_after: int | None = None,
                 gather: int = 0, gather_s: float = 0.3, echo_auth: bool = False, legacy_only: bool = False,
                 logprobs: bool = False, penalty: bool = False, probe_hangs: int = 0) -> None:
        self.mode = mode
        self.legacy_only = legacy_only
        self.logprobs, self.penalty, self.probe_hangs = logprobs, penalty, probe_hangs
        self.bodies: list[dict] = []
        self.generated: list[int] = []
        self.probes = 0
        self.echo_auth = echo_auth
        self.hang_after = hang_after
        self.fail_after = fail_after
        self.failures = 0
        self.gather, self.gather_s = gather, gather_s
        self.received = 0
        self.answered = 0
        self.held = 0
        self.in_flight = 0
        self.max_in_flight = 0
        self.state = threading.Condition()
        self.closing = threading.Event()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers.get("content-length") or 0)) or b"{}")
                outer.bodies.append(dict(body))
                if outer.legacy_only:
                    body.pop("max_completion_tokens", None)
                probe = body.get("logprobs") and [m.get("content") for m in body.get("messages", [])] == [_PROBE]
                with outer.state:
                    n = outer.received
                    outer.received += 1
                    outer.probes += bool(probe)
                    hang = outer.mode == "hang" or (outer.hang_after is not None and n >= outer.hang_after)
                    hang = hang or bool(probe and outer.probes <= outer.probe_hangs)
                    fail = outer.fail_after is not None and n >= outer.fail_after
                    if fail:
                        outer.failures += 1
                    elif hang:
                        outer.held += 1
                    else:
                        outer.in_flight += 1
                        outer.max_in_flight = max(outer.max_in_flight, outer.in_flight)
                    outer.state.notify_all()
                if fail:
                    data = json.dumps({"error": {"message": "stub: replica unavailable", "type": "server_error"}})
                    self.send_response(503)
                    self.send_header("content-type", "application/json")
                    self.send_header("content-length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data.encode())
                    with outer.state:
                        outer.state.notify_all()
                    return
                if hang:
                    outer.closing.wait()  # never answers while the server runs
                    self.close_connection = True
                    return
                try:
                    if outer.gather:
                        with outer.state:
                            outer.state.wait_for(lambda: outer.in_flight >= outer.gather, timeout=outer.gather_s)
                    reply = completion("", 0, 0) | {"choices": []} if outer.mode == "empty" else deterministic_answer(
                        body, logprobs=outer.logprobs,
                        model=_PENALIZED if outer.penalty and body.get("repeat_penalty") != 1.0 else _FAKE,
                        limit=int(body.get("max_tokens") or 10_000) if outer.legacy_only else None)
                    if outer.legacy_only:
                        outer.generated.append(reply["usage"]["completion_tokens"] if reply["choices"] else 0)
                    if outer.echo_auth and reply["choices"]:
                        message = reply["choices"][0]["message"]
                        message["content"] = f"{self.headers.get('authorization')} {message['content']}"
                finally:
                    with outer.state:
                        outer.in_flight -= 1
                data = json.dumps(reply).encode()
                self.send_response(200)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)
                with outer.state:
                    outer.answered += 1
                    outer.state.notify_all()

            def log_message(self, *args: object) -> None:
                pass

        class Server(ThreadingHTTPServer):
            daemon_threads = True  # a held request never keeps the test process

        self.httpd = Server(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()
        self.base_url = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"

    def wait_for(self, predicate: Callable[[StubServer], bool], timeout: float = 60.0) -> None:
        """Block until ``predicate(self)`` holds; fail the test after ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        with self.state:
            while not predicate(self):
                left = deadline - time.monotonic()
                if left <= 0:
                    pytest.fail(f"stub server: condition not reached in {timeout} s "
                                f"(received {self.received}, answered {self.answered}, held {self.held})")
                self.state.wait(left)

    def close(self) -> None:
        self.closing.set()
        self.httpd.shutdown()
        self.httpd.server_close()


class _Closable(Protocol):
    def close(self) -> None: ...


S = TypeVar("S", bound=_Closable)


def servers_of(kind: Callable[..., S]) -> Iterator[Callable[..., S]]:
    """A fixture's body: a maker of ``kind`` servers (its arguments theirs), every one made closed at the end."""
    servers: list[S] = []

    def make(*args: Any, **kwargs: Any) -> S:
        servers.append(kind(*args, **kwargs))
        return servers[-1]

    yield make
    for server in servers:
        server.close()


@pytest.fixture
def stub() -> Iterator[Callable[..., StubServer]]:
    yield from servers_of(StubServer)


def completed_events(db: Path, run_id: str, server_keys: tuple[str, ...]) -> list[tuple[str, dict[str, Any]]]:
    """A completed run's comparable events, without the config keys that name a server (the stubs differ by port,
    not by answers)."""
    from tprompt.graph.api import comparable_events
    from tprompt.stores import EventLog

    with EventLog(db, readonly=True) as log:
        assert log.state(run_id).status == "completed"
        rows = comparable_events(log, run_id)
    for _, payload in rows:
        if isinstance(payload.get("config"), dict):
            for key in server_keys:
                payload["config"].pop(key, None)
    return rows
