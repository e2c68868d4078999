"""The ``fake`` model: deterministic, offline and fast, for tests, CI and demos.

Its answers depend only on the request and its seed (an open-ended question, one
without an answer format, gets two of its own sentences back). It cannot know gold
answers: scorer answers are honestly pseudo-random (about 1 in 10 off-format),
proposer answers are instructions assembled from a phrase vocabulary chosen by
the request hash. Spec options, comma separated: ``seed=N``, ``delay=S``
(seconds per request, so tests can kill a run mid-flight), ``transient=N``
(the first N calls raise a retryable error), ``fail=1`` (every call fails),
``gate=PATH`` (every call waits until the file PATH exists, so a test can hold
a run in flight for exactly as long as it needs, whatever the machine's load;
with ``gate_after=N`` the first N requests this backend gets pass without waiting,
so a test can hold a run inside a batch, after the answers it needs are recorded),
``calls=PATH`` (every request appends one line to the file PATH as it is sent, so a
test can count the calls paid across processes and machines, killed ones included),
``garble=1`` (as a judge, every reply is prose with no score in it).
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
import threading
import time
from collections.abc import Sequence

from ..errors import BackendError, TransientBackendError, UnknownModel
from .base import ChatBackend
from .types import ChatRequest, OptionsRequest

_OPENINGS = (
    "Read the question carefully",
    "Think step by step",
    "Consider each option in turn",
    "Recall the relevant facts first",
    "Work through the problem methodically",
    "Identify what the question is really asking",
    "Break the problem into smaller parts",
    "Restate the question in your own words",
)
_MIDDLES = (
    "eliminate the options that contradict known facts",
    "check your reasoning against the question's details",
    "prefer the answer supported by the strongest evidence",
    "watch for words like NOT, EXCEPT and ALWAYS",
    "compare the remaining choices side by side",
    "estimate before you compute",
    "verify each intermediate result",
    "be honest about how sure you are",
)
_ENDINGS = (
    "then give your final answer and how confident you are.",
    "then answer in the required format with a calibrated confidence.",
    "and state a confidence that reflects your real certainty.",
    "then commit to one answer and rate your confidence from 0 to 100%.",
)
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+")
_OPTION_LINE = re.compile(r"^\s*\(?([A-J])[).:]\s", re.MULTILINE)
#: A fixed answer space offered in the demanded format, e.g. "<one of True / False>".
_ANSWER_SPACE = re.compile(r"<one of ([^>]+)>")
#: A judge request (judge/request.py): the reply lines it asks for, and its scale.
_JUDGE_LINE = re.compile(r"^([a-z][a-z0-9_]*): <score> \|", re.MULTILINE)
_JUDGE_SCALE = re.compile(r"score from (-?\d+) \(worst\) to (-?\d+) \(best\)")
_RATIONALES = ("on topic and to the point", "clear but terse", "states the answer without support",
               "reasoning is easy to follow", "wording is awkward in places", "matches what was asked")


def _digest(*parts: object) -> int:
    text = json.dumps(parts, sort_keys=True, ensure_ascii=False, default=str)
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "big")


class FakeBackend(ChatBackend):
    """Deterministic stand-in for a chat model; never a silent fallback for a real one."""

    supports_option_probs = True
    scores_whole_options = True  # each option's probability is a digest of the whole option
    revision = "fake-v1"

    def __init__(self, spec: str = "fake") -> None:
        self.spec = spec
        self.seed = 0
        self.delay = 0.0
        self.transient = 0
        self.fail = False
        self.gate = ""
        self.gate_after = 0
        self.calls_file = ""
        self.garble = False
        _, _, options = spec.partition(":")
        for item in filter(None, (p.strip() for p in options.split(","))):
            key, _, value = item.partition("=")
            try:
                if key == "seed":
                    self.seed = int(value)
                elif key == "delay":
                    self.delay = float(value)
                    if not 0 <= self.delay < 3600:
                        raise ValueError(key)
                elif key == "transient":
                    self.transient = int(value)
                    if self.transient < 0:
                        raise ValueError(key)
                elif key == "fail":
                    self.fail = value not in ("", "0", "false")
                elif key == "gate" and value:
                    self.gate = value
                elif key == "gate_after":
                    self.gate_after = int(value)
                    if self.gate_after < 0:
                        raise ValueError(key)
                elif key == "calls" and value:
                    self.calls_file = value
                elif key == "garble":
                    self.garble = value not in ("", "0", "false")
                else:
                    raise ValueError(key)
            except ValueError:
                raise UnknownModel(
                    f"bad fake model option {item!r} in {spec!r}",
                    hint="use fake, fake:seed=3, fake:delay=0.2 or fake:seed=3,delay=0.2 (delay in seconds, >= 0)",
                ) from None
        self._calls = 0
        self._requests = 0  # requests received (a call may carry several): what gate_after counts
        self._lock = threading.Lock()

    def _enter_call(self, count: int) -> None:
        with self._lock:
            self._calls += 1
            calls = self._calls
            gated = self._requests + count > self.gate_after  # this call carries a request past the first N
            self._requests += count
        if self.calls_file:
            # One O_APPEND write per call: lines from concurrent processes never interleave.
            fd = os.open(self.calls_file, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
            try:
                os.write(fd, b"call\n" * count)
            finally:
                os.close(fd)
        if self.fail:
            raise BackendError(f"the fake model {self.spec} fails every call (fail=1)")
        if calls <= self.transient:
            raise TransientBackendError(f"the fake model {self.spec}: transient failure {calls} of {self.transient}")
        if self.gate and gated:
            self._wait_for_gate()
        if self.delay:
            time.sleep(self.delay * count)

    def _wait_for_gate(self, bound: float = 600.0) -> None:
        deadline = time.monotonic() + bound  # only bounds a test that never opens the gate
        while not os.path.exists(self.gate):
            if time.monotonic() > deadline:
                raise BackendError(f"the fake model {self.spec}: gate {self.gate} never opened")
            time.sleep(0.01)

    def generate(self, requests: Sequence[ChatRequest]) -> list[tuple[str, int, int]]:
        self._enter_call(len(requests))
        results = []
        for req in requests:
            text = self._answer(req)
            if req.stop:
                cuts = [text.find(s) for s in req.stop if s and s in text]
                if cuts:
                    text = text[: min(cuts)]
            words = text.split()
            if len(words) > req.max_tokens:
                text = " ".join(words[: req.max_tokens])
            prompt_tokens = sum(len(c.split()) for _, c in req.messages)
            results.append((text, prompt_tokens, len(text.split())))
        return results

    def option_probs(self, requests: Sequence[OptionsRequest]) -> list[tuple[tuple[float, ...], int]]:
        self._enter_call(len(requests))
        results = []
        for req in requests:
            if not req.options:
                raise BackendError("an options request needs at least one option")
            logits = [((_digest(self.seed, req.messages, req.answer_prefix, opt) % 1000) / 250.0) for opt in req.options]
            top = max(logits)
            weights = [math.exp(x - top) for x in logits]
            total = sum(weights)
            prompt_tokens = sum(len(c.split()) for _, c in req.messages) + len(req.answer_prefix.split())
            results.append((tuple(w / total for w in weights), prompt_tokens))
        return results

    def _answer(self, req: ChatRequest) -> str:
        h = _digest(self.seed, req.messages, req.temperature, req.top_p, req.seed, req.sample_index)
        judged = _JUDGE_LINE.findall(req.messages[-1][1])
        if judged:
            if self.garble:  # a judge that writes prose, never a score line (fake:garble=1)
                return "What a thoughtful answer; I enjoyed reading it."
            return self._judgement(req.messages[-1][1], judged, h)
        if any("<INS>" in content for _, content in req.messages):
            return "<INS>" + self._instruction(h) + "</INS>"
        question = req.messages[-1][1]
        if question.startswith("Question: ") and "\nReply " not in question:
            return self._open_reply(h, question)
        letters = _OPTION_LINE.findall(question)
        space = _ANSWER_SPACE.search(question)
        if letters:
            answer = letters[h % len(letters)]
        elif space:
            words = [w.strip() for w in space.group(1).split("/") if w.strip()]
            answer = words[h % len(words)]
        else:
            answer = str((h >> 8) % 100)
        confidence = 30 + 5 * ((h >> 16) % 14)
        if (h >> 24) % 10 == 0:  # deliberately off-format, so IFR < 1
            return f"I think it is probably {answer}, but I am not sure."
        return f"Answer: {answer}\nConfidence: {confidence}%"

    @staticmethod
    def _judgement(text: str, criteria: list[str], h: int) -> str:
        """One line per criterion, as the judge's request asks; about 1 in 12 lines off-format (parse failures)."""
        scale = _JUDGE_SCALE.search(text)
        low, high = (int(scale.group(1)), int(scale.group(2))) if scale else (1, 5)
        lines = []
        for c in criteria:
            k = _digest(h, c)
            if k % 12 == 0:
                lines.append(f"{c}: hard to say")  # deliberately unparseable
                continue
            lines.append(f"{c}: {low + (k >> 8) % (high - low + 1)} | {_RATIONALES[(k >> 16) % len(_RATIONALES)]}")
        return "\n".join(lines)

    @staticmethod
    def _open_reply(h: int, question: str) -> str:
        """An open-ended question (no answer format demanded): two consecutive sentences of it, picked by hash."""
        sentences = [x.strip() for x in _SENTENCE_END.split(question.removeprefix("Question: ")) if x.strip()]
        start = h % max(1, len(sentences) - 1)
        return " ".join(sentences[start : start + 2])

    @staticmethod
    def _instruction(h: int) -> str:
        opening = _OPENINGS[h % len(_OPENINGS)]
        middle = _MIDDLES[(h >> 8) % len(_MIDDLES)]
        second = _MIDDLES[(h >> 16) % len(_MIDDLES)]
        ending = _ENDINGS[(h >> 24) % len(_ENDINGS)]
        parts = [opening, middle] + ([second] if second != middle and (h >> 32) % 2 else [])
        return ", ".join(parts) + ", " + ending
