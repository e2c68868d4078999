"""The API backend's client side: option probabilities from top logprobs, Retry-After, the concurrency bound.

The HTTP endpoint here is a scripted stdlib server that answers 429/503 or
counts requests in flight: these are the server behaviours a real model
server shows only under load. Everything else goes through the real
langchain-openai and openai clients.
"""

from __future__ import annotations

import json
import math
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from stub_openai import servers_of

from tprompt.errors import MissingCredentials, ModelCallFailed, TransientBackendError
from tprompt.models import ChatRequest, Recorder
from tprompt.models.api import ApiBackend, classify, option_distribution

pytest.importorskip("langchain_openai")


def completion(text: str = "B", logprobs: list | None = None) -> dict:
    choice: dict = {"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}
    if logprobs is not None:
        choice["logprobs"] = {"content": logprobs}
    return {
        "id": "x", "object": "chat.completion", "created": 0, "model": "m", "choices": [choice],
        "usage": {"prompt_tokens": 7, "completion_tokens": 1, "total_tokens": 8},
    }


class Scripted:
    """A local HTTP server whose POST answers come from ``respond(n) -> (status, headers, body)``."""

    def __init__(self, respond: Callable[[int], tuple[int, dict, dict]], on_request: Callable[[], None] | None = None):
        self.respond = respond
        self.on_request = on_request
        self.arrivals: list[float] = []
        self.bodies: list[dict] = []
        self.in_flight = 0
        self.max_in_flight = 0
        self.lock = threading.Lock()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body_in = json.loads(self.rfile.read(int(self.headers.get("content-length") or 0)) or b"{}")
                with outer.lock:
                    outer.bodies.append(body_in)
                    n = len(outer.arrivals)
                    outer.arrivals.append(time.monotonic())
                    outer.in_flight += 1
                    outer.max_in_flight = max(outer.max_in_flight, outer.in_flight)
                try:
                    if outer.on_request:
                        outer.on_request()
                    status, headers, body = outer.respond(n)
                finally:
                    with outer.lock:
                        outer.in_flight -= 1
                data = json.dumps(body).encode()
                self.send_response(status)
                for k, v in {"content-type": "application/json", **headers}.items():
                    self.send_header(k, v)
                self.send_header("content-length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args: object) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()
        self.base_url = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def scripted() -> Iterator[Callable[..., Scripted]]:
    yield from servers_of(Scripted)


@pytest.fixture
def waits(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """The seconds each ``time.sleep`` in this process was asked to wait during the test (then waited, as asked).

    A retry's wait is checked as what the client asked for, never as how long something took.
    """
    asked: list[float] = []
    sleep = time.sleep

    def recorded(seconds: float) -> None:
        asked.append(seconds)
        sleep(seconds)

    monkeypatch.setattr(time, "sleep", recorded)
    return asked


def backend(url: str, **kw) -> ApiBackend:
    return ApiBackend("openai", "m", spec="openai:m", base_url=url, **kw)


def test_option_distribution_sums_token_variants_and_renormalizes() -> None:
    top = [(" B", math.log(0.5)), ("B", math.log(0.2)), ("A.", math.log(0.1)), ("The", math.log(0.15))]
    probs = option_distribution(top, ("A", "B", "C"))
    assert math.isclose(sum(probs), 1.0)
    # C is not listed: it gets at most the mass the list leaves (0.05), shared by the missing options.
    assert probs[1] / probs[0] == pytest.approx(7.0)
    assert probs[2] / probs[0] == pytest.approx(0.05 / 0.1)
    assert option_distribution([("The", 0.0)], ("A", "B")) == (0.5, 0.5)


def test_no_key_is_needed_with_a_base_url_but_is_without(monkeypatch: pytest.MonkeyPatch) -> None:
    for var in ("OPENAI_API_KEY", "OPENAI_BASE_URL", "OPENAI_API_BASE"):
        monkeypatch.delenv(var, raising=False)
    with pytest.raises(MissingCredentials, match="--base-url"):
        ApiBackend("openai", "m", spec="openai:m")
    monkeypatch.setenv("OPENAI_BASE_URL", "http://127.0.0.1:9/v1/")
    assert ApiBackend("openai", "m", spec="openai:m").revision == "openai:m@http://127.0.0.1:9/v1"


def test_retry_after_is_honoured_then_the_answer_arrives(scripted, waits: list[float]) -> None:
    server = scripted(lambda n: (429, {"retry-after": "0.6"}, {"error": {"message": "slow down"}}) if n < 2
                      else (200, {}, completion("C")))
    (text, prompt, _completion_tokens), = backend(server.base_url).generate([ChatRequest(messages=(("user", "q"),))])
    assert text == "C" and prompt == 7
    assert len(server.arrivals) == 3 and waits.count(0.6) == 2  # each 429's Retry-After waited before the retry


def test_retries_run_out_into_a_recorded_resumable_failure(scripted, tmp_path, waits: list[float]) -> None:
    server = scripted(lambda n: (503, {"retry-after": "0.3"}, {"error": {"message": "overloaded"}}))
    model = backend(server.base_url)
    with pytest.raises(TransientBackendError) as info:
        model.generate([ChatRequest(messages=(("user", "q"),))])
    assert info.value.retry_after == pytest.approx(0.3) and info.value.status == 503
    with Recorder(tmp_path / "t.db", retries=1, backoff_s=0.01) as rec:
        before = len(server.arrivals)
        waits.clear()
        with pytest.raises(ModelCallFailed) as failed:
            rec.chat(model, [ChatRequest(messages=(("user", "q"),))], agent="scorer")
        # 3 client retries per attempt, each after the server's 0.3 s, and the recorder's one retry waited the
        # server's 0.3 s too, not its own 0.01 s
        assert waits.count(0.3) == 3 * 2 + 1 and 0.01 not in waits
        assert len(server.arrivals) - before == 2 * 4  # (1 + 1 recorder retry) x (1 + 3 client retries)
    assert "resume" in str(failed.value) and failed.value.call_ids


def test_requests_in_flight_never_exceed_the_concurrency(scripted) -> None:
    gate = threading.Barrier(3, timeout=30)

    def hold() -> None:
        try:
            gate.wait()  # the first three meet here: three are in flight at once
        except threading.BrokenBarrierError:
            pass

    server = scripted(lambda n: (200, {}, completion(str(n))), on_request=hold)
    model = backend(server.base_url, concurrency=3)
    answers = model.generate([ChatRequest(messages=(("user", f"q{i}"),)) for i in range(9)])
    assert len(answers) == 9
    assert server.max_in_flight == 3


def test_classify_reads_retry_after_ms() -> None:
    class Response:
        status_code = 429
        headers = {"retry-after-ms": "1500"}

    class RateLimitError(Exception):
        response = Response()

    error = classify(RateLimitError("too many"), "openai:m")
    assert isinstance(error, TransientBackendError) and error.retry_after == 1.5


def test_samples_of_one_request_get_their_own_seed(scripted) -> None:
    # One seed for all n samples made a seed-honouring server return n copies of one candidate.
    server = scripted(lambda n: (200, {}, completion(f"prompt {n}")))
    requests = [ChatRequest(messages=(("user", "write"),), temperature=1.0, seed=7, sample_index=i) for i in range(3)]
    backend(server.base_url, concurrency=1).generate(requests)
    assert sorted(b["seed"] for b in server.bodies) == [7, 8, 9]
