"""Option probabilities over the API, against a real vLLM on 127.0.0.1 (see vllm_server.py).

vLLM returns ``top_logprobs``, so here ``--mode logprob`` goes over the
OpenAI-compatible API end to end: an eval, a complete two-stage run, ``auto``
picking logprob, a kill -9 and resume, and the option probabilities compared
with the local computation on the same model (``smollm2``, transformers).
"""

from __future__ import annotations

import json
import signal
import sqlite3
import statistics
import subprocess
import sys
from pathlib import Path

import pytest
from served_server import Server
from test_graph import wait_for_row
from test_served import _env, call_counts, paid_twice, run_args, tprompt
from vllm_server import option_probs_both, vllm_served  # noqa: F401  (the session fixture)

from tprompt.graph import comparable_events
from tprompt.stores import EventLog

pytestmark = pytest.mark.vllm

RUN_SETTINGS = """
source_tasks = ["ai2_science"]
target_task = "arc_challenge"
mode = "logprob"
steps = 1
candidates = 2
top_k = 2
examples = 4
test_examples = 4
proposer_temperature = 0.0
proposer_max_tokens = 48
"""

#: Questions compared with the local computation, and the tolerance: vLLM fp32 against transformers fp32 on
#: the same weights, chat template and tokens (the first assistant token) differed by at most 6e-6 on 16 and
#: on 40 questions (docs/models.md); 1e-3 leaves room for other kernels, never for another measurement
#: (after "Answer: " the difference is 0.23).
AGREEMENT_QUESTIONS = 16
MAX_PROB_DIFFERENCE = 1e-3

@pytest.fixture(scope="module")
def settings(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("vllm-config") / "run.toml"
    path.write_text(RUN_SETTINGS)
    return path


@pytest.fixture(scope="module")
def serial_run(vllm_served: Server, settings: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str, dict]:  # noqa: F811
    """A complete two-stage logprob run against vLLM, one request at a time."""
    db = tmp_path_factory.mktemp("vllm-serial") / "t.db"
    out = tprompt(db, *run_args(vllm_served, settings, "--concurrency", "1"))
    return db, json.loads(out.stdout)["run_id"], json.loads(out.stdout)


def test_eval_in_logprob_mode_reads_the_options_probabilities(vllm_served: Server, tmp_path: Path) -> None:  # noqa: F811
    db = tmp_path / "t.db"
    args = ("eval", "--task", "arc_challenge", "--prompt", "Answer carefully.", "--model", vllm_served.spec,
            "--base-url", vllm_served.base_url, "--mode", "logprob", "-n", "4", "--json")
    first = json.loads(tprompt(db, *args).stdout)
    assert first["mode"] == "logprob"
    assert first["counts"]["model_calls"] == 4 and first["counts"]["examples"] == 4
    again = json.loads(tprompt(db, *args).stdout)
    assert again["counts"]["model_calls"] == 0 and again["counts"]["cache_hits"] == 4
    assert again["metrics"] == first["metrics"]
    with sqlite3.connect(db) as conn:
        answers = [json.loads(r[0]) for r in conn.execute(
            "SELECT b.body FROM transcripts t JOIN bodies b ON b.hash = t.response_hash WHERE t.cache_hit = 0"
        )]
    assert len(answers) == 4
    for probs in answers:  # the recorded answer of an options call: the options' probabilities
        assert len(probs) >= 3 and abs(sum(probs) - 1.0) < 1e-9
        assert max(probs) > 1.0 / len(probs)  # read from the model's alternatives, not the uniform fallback


def test_auto_picks_logprob_on_vllm(vllm_served: Server, tmp_path: Path) -> None:  # noqa: F811
    from tprompt.graph import RunConfig, Runner, create_run
    from tprompt.models.api import ApiBackend

    backend = ApiBackend("openai", vllm_served.model, spec=vllm_served.spec, base_url=vllm_served.base_url)
    assert backend.supports_option_probs is True
    log = EventLog(tmp_path / "auto.db")
    config = RunConfig(proposer=vllm_served.spec, scorer=vllm_served.spec, base_url=vllm_served.base_url, mode="auto",
                       steps=1, candidates=1, top_k=1, examples=1, test_examples=1)
    runner = Runner(log, create_run(log, config))
    assert runner.mode_for(runner.task("arc_challenge")) == "logprob"


def test_complete_two_stage_run_in_logprob_mode(serial_run: tuple[Path, str, dict]) -> None:
    db, run_id, result = serial_run
    assert result["status"] == "completed"
    assert {row["role"] for row in result["table"]} == {"original", "best_source", "best_target"}
    assert all(row["n_examples"] == 4 for row in result["table"])
    modes = [e.event.mode for e in EventLog(db).events(run_id) if hasattr(e.event, "mode")]
    assert len(modes) > 3 and set(modes) == {"logprob"}  # every scoring, source, target and test
    paid, _ = call_counts(db)
    assert paid > 0 and not paid_twice(db)


def test_kill_9_then_resume_pays_no_call_twice(
    vllm_served: Server, settings: Path, serial_run: tuple[Path, str, dict], tmp_path: Path  # noqa: F811
) -> None:
    db = tmp_path / "crash.db"
    proc = subprocess.Popen(
        [sys.executable, "-m", "tprompt.cli", "--db", str(db), *run_args(vllm_served, settings, "--concurrency", "1")],
        env=_env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )
    try:
        # In the middle: a source candidate has been scored and the next one's calls are being made.
        wait_for_row(
            db,
            "SELECT 1 FROM events WHERE type = 'candidate.scored' AND "
            "(SELECT count(*) FROM transcripts) > (SELECT count(*) FROM events WHERE type = 'candidate.scored') * 4",
            proc,
        )
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.wait(timeout=60)
        proc.stderr.close()
    log = EventLog(db)
    (run,) = log.runs()
    assert log.state(run.run_id).status == "running", "the run finished before it was killed"
    paid_before, _ = call_counts(db)
    assert json.loads(tprompt(db, "resume", run.run_id, "--json").stdout)["status"] == "completed"
    paid, hits = call_counts(db)
    assert not paid_twice(db)
    assert hits > 0  # the resume took the killed run's answers from the cache
    ref_db, ref_run, _ = serial_run
    assert comparable_events(log, run.run_id) == comparable_events(EventLog(ref_db), ref_run)
    print(f"\nkill -9 after {paid_before} paid calls; resume paid {paid - paid_before} more, {hits} cache hits")


def test_option_probabilities_agree_with_the_local_computation(vllm_served: Server) -> None:  # noqa: F811
    served, local = option_probs_both(vllm_served.base_url, vllm_served.model, AGREEMENT_QUESTIONS)
    diffs = [max(abs(x - y) for x, y in zip(a, b)) for a, b in zip(served, local)]
    print(f"\nvLLM vs local: max |dp| {max(diffs):.2g}, median {statistics.median(diffs):.2g} on {len(served)} questions")
    assert max(diffs) <= MAX_PROB_DIFFERENCE
    for a, b in zip(served, local):
        # The same answer, unless the local top two are within the tolerance of each other.
        top, second = sorted(b, reverse=True)[:2]
        assert argmax(a) == argmax(b) or top - second <= 2 * MAX_PROB_DIFFERENCE

def argmax(probs: tuple[float, ...]) -> int:
    return max(range(len(probs)), key=probs.__getitem__)
