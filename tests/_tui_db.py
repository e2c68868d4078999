"""Builds the recorded databases the TUI tests and snapshots run against.

Deterministic on purpose: fixed run ids, a fake clock for every stored
timestamp, counted call ids and fixed latencies, and the ``fake`` model, so a
screenshot of the same screen is the same on every machine.
"""

from __future__ import annotations

import itertools
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from tprompt.graph import Runner, create_run, make_config
from tprompt.stores import EventLog

#: A prompt full of rich markup: it must show literally everywhere.
MARKUP_PROMPT = "[bold]x[/] [link=http://a]y[/link] [/] [red on blue]Answer[/red on blue] \\[escaped] [/bold]"

DEMO_RUN = "r-demo000001"
FORK_RUN = "r-fork000001"
MARKUP_RUN = "r-markup0001"

DEMO_CONFIG: dict[str, Any] = {
    "name": "demo",
    "source_tasks": ["ai2_science"],
    "target_task": "arc_challenge",
    "proposer": "fake",
    "scorer": "fake",
    "steps": 2,
    "candidates": 3,
    "top_k": 2,
    "examples": 4,
    "test_examples": 5,
    # logprob on these multiple-choice tasks: the fake model's option
    # probabilities give candidates different scores, so the plot has a shape.
    "mode": "auto",
}


def _fake_clock() -> Any:
    start = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
    ticks = itertools.count()
    return lambda: (start + timedelta(seconds=next(ticks))).isoformat(timespec="microseconds")


def deterministic(monkeypatch: pytest.MonkeyPatch) -> None:
    """Fixed timestamps and call ids for everything written while the patch lasts."""
    import tprompt.models.recorder as recorder
    import tprompt.stores.control as control
    import tprompt.stores.log as log_module
    import tprompt.stores.transcripts as transcripts

    clock = _fake_clock()
    for module in (log_module, transcripts, control):
        monkeypatch.setattr(module, "now_iso", clock)
    calls = itertools.count(1)
    monkeypatch.setattr(recorder, "new_call_id", lambda: f"call-{next(calls):05d}")


def build_recorded_db(path: Path) -> Path:
    """A database with a finished run, a fork of it onto another target, and a markup-laden run."""
    with EventLog(path) as log:
        create_run(log, make_config(DEMO_CONFIG), run_id=DEMO_RUN)
        Runner(log, DEMO_RUN).run()
        state = log.state(DEMO_RUN)
        source_end = next(se.seq for se in log.events(DEMO_RUN) if se.type == "stage.completed")
        best_source = state.best("source")
        assert best_source is not None
        config = dict(state.config, target_task="mmlu/college_biology", name="fork")
        log.fork(
            DEMO_RUN,
            source_end,
            config=config,
            target_task="mmlu/college_biology",
            from_prompt_id=best_source.prompt_id,
            run_id=FORK_RUN,
            name="fork",
        )
        Runner(log, FORK_RUN).run()
        markup = dict(DEMO_CONFIG, name="[b]markup[/b]", original_prompt=MARKUP_PROMPT, steps=1, candidates=2)
        create_run(log, make_config(markup), run_id=MARKUP_RUN)
        Runner(log, MARKUP_RUN).run()
        # Latency is measured wall-clock time; pin it for the screenshots.
        with log._conn:
            log._conn.execute("UPDATE transcripts SET latency_s = 0.125")
        # Everything into the main file, so a plain copy of it is complete.
        log._conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    return path


def screen_text(app: Any) -> str:
    """The app's current screen as plain text (what a user would read)."""
    import io

    from rich.console import Console

    width, height = app.size
    console = Console(width=width, height=height, file=io.StringIO(), force_terminal=True, record=True,
                      legacy_windows=False, safe_box=False)
    console.print(app.screen._compositor.render_update(full=True, screen_stack=app._background_screens))
    return console.export_text()


# -- a run whose every text would drive a terminal (issue 19, item 2) ------------------------

#: OSC 0 (window title), CSI 2J (clear screen), an OSC 8 link, a DCS query, C1 CSI and NEL,
#: BEL, CR, backspace and DEL, plus rich markup: the UI must show all of it, obey none of it.
EVIL = ("\x1b]0;pwned-title\x07 \x1b[2J\x1b[31mred \x1b]8;;http://x.test\x1b\\link\x1b]8;;\x1b\\ "
        "\x1bP1$r\x1b\\ \x9b1m\x85 \x07\r\x08\x7f [bold]B[/bold]")
#: The raw bytes none of the UI's output may carry.
RAW = tuple(chr(c) for c in (*range(0x09), *range(0x0B, 0x20), *range(0x7F, 0xA0)))
EVIL_RUN = "r-evil000001"
EVIL_FAILED = "r-evil000002"


def evil(place: str) -> str:
    """The hostile text after ``place:`` (a word), so each place it is fed into is told apart on the screen."""
    return f"{place}:{EVIL}"


def build_evil_db(path: Path) -> Path:
    """Two runs written straight into the log, as a model or a user could: every text holds :data:`EVIL`.

    ``EVIL_RUN`` is paused for a review of its step 1 (its candidates, the original prompt, a scored
    step 0, calls with hostile messages, response, model, agent and error); ``EVIL_FAILED`` closed
    its source stage (on a hostile prompt) and failed with a hostile error.
    """
    from tprompt.stores import PromptCandidate, RunCreated, prompt_id_of
    from tprompt.stores.events import (
        Answer,
        CandidateScored,
        PromptTested,
        RunFailed,
        RunPaused,
        StageCompleted,
        StageStarted,
        StepCompleted,
        StepProposed,
        TestAnswered,
    )
    from tprompt.stores.transcripts import NewCall, TranscriptStore

    def cand(text: str) -> PromptCandidate:
        return PromptCandidate(prompt_id=prompt_id_of(text), text=text)

    task, model = evil("task"), evil("model")
    original = PromptCandidate(prompt_id=prompt_id_of(evil("original")), text=evil("original"), origin="original")
    config = {"proposer": model, "scorer": model, "review": True, "source_tasks": [task], "target_task": task}
    scored = [original, cand(evil("proposedA")), cand(evil("proposedB") + "\nsecond line")]
    pending = [cand(evil("review1")), cand(evil("review2"))]
    with EventLog(path) as log:
        log.create_run(RunCreated(config=config, source_tasks=[task], target_task=task, original_prompt=original,
                                  name=evil("name")), run_id=EVIL_RUN)
        log.append(EVIL_RUN, [StageStarted(stage="source", tasks=[task])])
        log.append(EVIL_RUN, [StepProposed(stage="source", step=0, candidates=scored)])
        for i, c in enumerate(scored):
            log.append(EVIL_RUN, [CandidateScored(
                stage="source", step=0, prompt_id=c.prompt_id, text=c.text, task=task, n_examples=2,
                metrics={"accuracy": 0.25 + i / 4, evil("metric"): 0.25}, objective=0.25 + i / 4)])
        log.append(EVIL_RUN, [StepCompleted(stage="source", step=0, best_prompt_id=scored[2].prompt_id,
                                            best_objective=0.75)])
        log.append(EVIL_RUN, [StepProposed(stage="source", step=1, candidates=pending)])
        log.append(EVIL_RUN, [RunPaused(reason=evil("pausereason"))])
        log.create_run(RunCreated(config=config, source_tasks=[task], target_task=task, original_prompt=original,
                                  name=evil("failedrun")), run_id=EVIL_FAILED)
        # A finished source stage (its prompts can be forked from), then a failure.
        log.append(EVIL_FAILED, [StageStarted(stage="source", tasks=[task]),
                                 StepProposed(stage="source", step=0, candidates=scored[1:2])])
        log.append(EVIL_FAILED, [CandidateScored(stage="source", step=0, prompt_id=scored[1].prompt_id,
                                                 text=scored[1].text, task=task, n_examples=2,
                                                 metrics={"accuracy": 0.5}, objective=0.5)])
        log.append(EVIL_FAILED, [StepCompleted(stage="source", step=0, best_prompt_id=scored[1].prompt_id,
                                               best_objective=0.5),
                                 StageCompleted(stage="source", top_k=[scored[1].prompt_id])])
        # Its original prompt tested (a logprob answer from a hostile call, a hostile metric), then the failure.
        answer = Answer(example_id=evil("example"), parsed=evil("parsed"), confidence=0.75, followed_format=True,
                        correct=False, call_id="call-evil-3")
        log.append(EVIL_FAILED, [TestAnswered(role="original", prompt_id=original.prompt_id, text=original.text, task=task,
                                              mode="logprob", answers=[answer])])
        log.append(EVIL_FAILED, [PromptTested(role="original", prompt_id=original.prompt_id, text=original.text, task=task,
                                              n_examples=1, metrics={"accuracy": 0.0, evil("testmetric"): 0.5},
                                              objective=0.25, undefined={evil("undefined"): 1})])
        log.append(EVIL_FAILED, [RunFailed(error=evil("error"))])
    body = json.dumps({"kind": "chat", "model": model, "temperature": 0.0,
                       "messages": [["system", evil("systemmessage")], ["user", evil("usermessage")]]})
    store = TranscriptStore(path)
    try:
        store.record([NewCall(call_id="call-evil-1", run_id=EVIL_RUN, seq=3, step="source:0", agent=evil("agent"),
                              model=model, kind="chat", cache_key="k-evil", request=body, response=evil("response"),
                              prompt_tokens=3, completion_tokens=4, latency_s=0.125, cache_hit=False, cost=0.5,
                              error=evil("callerror")),
                      NewCall(call_id="call-evil-2", run_id=EVIL_RUN, seq=3, step="source:0", agent=evil("agent"),
                              model=model, kind="chat", cache_key="k-evil-2", request=body.replace("user", "usr"),
                              response=evil("response2"), prompt_tokens=3, completion_tokens=4, latency_s=0.125,
                              cache_hit=False, cost=0.5),
                      NewCall(call_id="call-evil-3", run_id=EVIL_FAILED, seq=7, step="test", agent="scorer", model=model,
                              kind="options", cache_key="k-evil-3",
                              request=json.dumps({"kind": "options", "model": model, "options": [evil("letter"), "B"],
                                                  "messages": [["user", evil("question")]]}),
                              response="[0.75, 0.25]", prompt_tokens=3, completion_tokens=0, latency_s=0.125,
                              cache_hit=False, cost=None)])
    finally:
        store.close()
    with EventLog(path) as log:
        log._conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    return path
