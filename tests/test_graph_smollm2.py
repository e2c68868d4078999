"""One Transfer-Prompting run end to end on the real embedded model (tiny config).

Marked slow, but CI runs it: the whole graph (proposer generating at
temperature 1, scorer answering from option probabilities, transfer, test)
with SmolLM2-135M-Instruct instead of the fake.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tprompt.graph import Runner, create_run, make_config
from tprompt.stores import EventLog

pytestmark = pytest.mark.slow


def test_tiny_run_on_the_embedded_model(tmp_path: Path) -> None:
    log = EventLog(tmp_path / "t.db")
    config = make_config(
        {
            "source_tasks": ["ai2_science"],
            "target_task": "arc_challenge",
            "proposer": "smollm2",
            "scorer": "smollm2",
            "steps": 1,
            "candidates": 2,
            "top_k": 1,
            "examples": 4,
            "test_examples": 4,
            "proposer_max_tokens": 32,
        }
    )
    run_id = create_run(log, config)
    runner = Runner(log, run_id)
    state = runner.run()
    assert state.status == "completed", state.error
    assert set(state.tested) == {"original", "best_source", "best_target"}
    for result in state.tested.values():
        assert result.n_examples == 4
        assert result.metrics["ifr"] == 1.0  # logprob mode: the answer is always an option
        assert 0.0 <= result.metrics["accuracy"] <= 1.0
    proposed = [e.event for e in log.events(run_id) if e.type == "step.proposed" and e.event.step == 1]
    assert len(proposed) == 2
    assert all(len(p.call_ids) == 2 for p in proposed)
    # The proposer really wrote text (kept as candidates or rejected with a reason).
    assert all(p.candidates or p.rejected for p in proposed)
    # A second identical run is served from the cache.
    again = Runner(log, create_run(log, config))
    assert again.run().status == "completed"
    assert again.recorder.model_calls == 0
