"""Two processes on one file needing the same answer pay for it once: the call is claimed, the other waits (issue 32)."""

from __future__ import annotations

import subprocess
import sys
import threading
from pathlib import Path

from tprompt.models import ChatRequest, Recorder
from tprompt.models.fake import FakeBackend
from tprompt.stores.holder import Holder, process_start
from tprompt.stores.transcripts import NewCall, TranscriptStore, body_hash, canonical_json

MESSAGES = (("system", "Answer with a letter."), ("user", "Which is a mammal?\nA) shark\nB) whale"))
WAIT = 120  # seconds: bounds a hang, not a wait for something to happen


class Counting(FakeBackend):
    def __init__(self) -> None:
        super().__init__("fake")
        self.sent = 0

    def generate(self, requests, **kw):  # type: ignore[no-untyped-def]
        self.sent += len(requests)
        return super().generate(requests, **kw)


def _body_and_key(model: FakeBackend) -> tuple[str, str]:
    from tprompt.models.recorder import chat_request_body

    text = canonical_json(chat_request_body(model, ChatRequest(messages=MESSAGES)))
    return text, body_hash(text)


def _other_live_process() -> tuple[subprocess.Popen[bytes], Holder]:
    # Alive until the test closes its stdin (or kills it): a holder that waits on state, not on a clock.
    proc = subprocess.Popen([sys.executable, "-c", "import sys; sys.stdin.read()"], stdin=subprocess.PIPE)
    return proc, Holder(proc.pid, Holder.me().host, process_start(proc.pid) or "")


def test_a_call_another_process_is_paying_for_is_waited_for_not_paid_again(tmp_path: Path) -> None:
    db = tmp_path / "c.db"
    model = Counting()
    text, key = _body_and_key(model)
    other_proc, other = _other_live_process()
    recorder, theirs = Recorder(db, run_id="r-1"), TranscriptStore(db)
    try:
        assert theirs.claim([key], other)[0] == [key]  # the other process is paying for it
        waiting = threading.Event()
        settled = recorder.store.settled

        def watched(keys):  # type: ignore[no-untyped-def]
            waiting.set()
            return settled(keys)

        recorder.store.settled = watched  # type: ignore[method-assign]
        got: list = []
        worker = threading.Thread(target=lambda: got.extend(recorder.chat(model, [ChatRequest(messages=MESSAGES)],
                                                                          agent="scorer")))
        worker.start()
        assert waiting.wait(WAIT), "the recorder did not wait for the other process's claim"
        # The other process's answer arrives, and its claim goes with it.
        theirs.record([NewCall(call_id="c-other", run_id="r-0", seq=None, step=None, agent="scorer", model="fake",
                               kind="chat", cache_key=key, request=text, response="B", prompt_tokens=3,
                               completion_tokens=1, latency_s=0.5, cache_hit=False, cost=None)], unclaim=[key])
        worker.join(WAIT)
    finally:
        other_proc.kill()
        other_proc.wait()
        recorder.close()
        theirs.close()
    assert model.sent == 0 and recorder.model_calls == 0
    assert [(r.text, r.cache_hit) for r in got] == [("B", True)]


def test_a_claim_whose_holder_died_is_taken_over_and_paid_once(tmp_path: Path) -> None:
    db = tmp_path / "d.db"
    model = Counting()
    _, key = _body_and_key(model)
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    with TranscriptStore(db) as theirs:
        theirs.claim([key], Holder(dead.pid, Holder.me().host, "1"))
    with Recorder(db, run_id="r-1") as recorder:
        got = recorder.chat(model, [ChatRequest(messages=MESSAGES)], agent="scorer")
    assert model.sent == 1 and not got[0].cache_hit
    with TranscriptStore(db) as store:
        assert store.claim([key])[2]  # answered: cached, and the dead process's claim is gone
