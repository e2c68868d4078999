"""Models load on the first call the cache cannot answer (issue 12, item 8), and the embedded
model's commands print no library warnings (item 11)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tprompt.models import ChatRequest, OptionsRequest, Recorder
from tprompt.models.backend import LazyBackend, _load
from tprompt.models.fake import FakeBackend

REQUESTS = [ChatRequest(messages=(("user", f"question {i}"),), max_tokens=8) for i in range(3)]


def counting_lazy(loads: list[int]) -> LazyBackend:
    def load() -> FakeBackend:
        loads.append(1)
        return FakeBackend("fake")

    return LazyBackend("fake", FakeBackend.revision, load, batched=False)


def test_a_cached_call_loads_nothing(tmp_path: Path) -> None:
    loads: list[int] = []
    with Recorder(tmp_path / "c.db") as rec:
        first = rec.chat(counting_lazy(loads), REQUESTS, agent="scorer")
    assert loads == [1]
    again = counting_lazy(loads)
    with Recorder(tmp_path / "c.db") as rec:
        second = rec.chat(again, REQUESTS, agent="scorer")
    assert loads == [1] and not again.loaded  # every answer came from the cache
    assert [r.text for r in second] == [r.text for r in first] and all(r.cache_hit for r in second)


@pytest.mark.slow
def test_embedded_model_cached_repeat_loads_no_weights(tmp_path: Path) -> None:
    opts = [OptionsRequest(messages=(("user", f"2 + {i} = ?\nA) {2 + i}\nB) {3 + i}"),), options=("A", "B"))
            for i in range(4)]
    cold = _load("smollm2")
    assert isinstance(cold, LazyBackend) and not cold.loaded  # naming it loads nothing
    with Recorder(tmp_path / "s.db") as rec:
        first = rec.option_probs(cold, opts, agent="scorer")
    assert cold.loaded
    warm = _load("smollm2")
    with Recorder(tmp_path / "s.db") as rec:
        second = rec.option_probs(warm, opts, agent="scorer")
    assert not warm.loaded
    assert [r.probs for r in second] == [r.probs for r in first]


@pytest.mark.slow
def test_embedded_model_commands_print_no_library_warnings(tmp_path: Path) -> None:
    for mode in ("generate", "logprob"):
        proc = subprocess.run(
            [sys.executable, "-m", "tprompt.cli", "--db", str(tmp_path / "w.db"), "eval", "--task", "arc_challenge",
             "--examples", "2", "--model", "smollm2", "--prompt", "Answer.", "--mode", mode, "--json"],
            capture_output=True, text=True, timeout=600,
        )
        assert proc.returncode == 0, proc.stderr
        assert "Warning" not in proc.stderr and "deprecated" not in proc.stderr, proc.stderr


@pytest.mark.slow
def test_a_cached_run_on_the_embedded_model_loads_no_weights(tmp_path: Path) -> None:
    from tprompt.graph import Runner, create_run, make_config
    from tprompt.models import backend
    from tprompt.stores import EventLog

    cfg = make_config(dict(source_tasks=["ai2_science"], target_task="arc_challenge", proposer="fake",
                           scorer="smollm2", steps=1, candidates=1, top_k=1, examples=2, test_examples=2,
                           mode="logprob"))
    log = EventLog(tmp_path / "r.db")
    Runner(log, create_run(log, cfg)).run()
    backend._models.clear()  # a new process, as far as models go
    again = Runner(log, create_run(log, cfg))
    assert again.run().status == "completed"
    assert again.recorder.model_calls == 0 and not again.scorer.loaded
