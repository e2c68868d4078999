"""What the Transcripts tab shows for one call: its messages and response, and what the run made of it.

A scorer call is shown with the answer it became: for a logprob (``options``) call each option's
letter, text and probability, the option chosen, the gold answer and right or wrong; for a generated
reply the answer parsed from it, the gold answer or the references, and the judge's rationales for
it. A judge call is shown with the answer it judged and the reference beside its rationales. Every
text from the run is appended literally (:class:`~tprompt.tui._literal.LiteralText`).
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

from rich.text import Text

from ..errors import TPromptError
from ..stores import StoredEvent
from ..stores.events import (
    Answer,
    Answered,
    CandidateAnswered,
    CandidateJudged,
    CandidateScored,
    Judged,
    Judgement,
    PromptTested,
    TestAnswered,
    TestJudged,
)
from ..stores.transcripts import TranscriptRow
from ._literal import LiteralText, literal
from .data import answers_where, fmt, judgement_text
from .transcripts import CallDetail
from .widgets import Row

#: an answer or its judgements, told apart from the others of a run: (prompt, task, stage, which answers, example)
AnswerKey = tuple[str, str, str, str, str]


def _key(ev: Answered | Judged, example_id: str) -> AnswerKey:
    stage = ev.stage if isinstance(ev, (CandidateAnswered, CandidateJudged)) else "test"
    return (ev.prompt_id, ev.task, stage, answers_where(ev), example_id)


def _scored_key(ev: CandidateScored | PromptTested, example_id: str) -> AnswerKey:
    """The key of the answer a metric value of ``ev`` is about (as :func:`_key` makes it for the answer set)."""
    if isinstance(ev, PromptTested):
        return (ev.prompt_id, ev.task, "test", f"test ({ev.role})", example_id)
    return (ev.prompt_id, ev.task, ev.stage, f"rung {ev.rung}" if ev.rung else "train", example_id)


class AnswerIndex:
    """A run's answers (``candidate.answered``, ``test.answered``) by the scorer call that made each, and its judgements
    and metric feedback by answer.

    Grown as the run is followed (:meth:`add` the fresh events).
    """

    def __init__(self) -> None:
        self._by_call: dict[str, list[tuple[Answered, Answer]]] = {}
        self._by_key: dict[AnswerKey, tuple[Answered, Answer]] = {}
        self._judged: dict[AnswerKey, list[Judgement]] = {}
        self._feedback: dict[AnswerKey, dict[str, str]] = {}

    def add(self, events: Iterable[StoredEvent]) -> None:
        for se in events:
            ev = se.event
            if isinstance(ev, (CandidateAnswered, TestAnswered)):
                for a in ev.answers:
                    self._by_key[_key(ev, a.example_id)] = (ev, a)
                    if a.call_id:
                        self._by_call.setdefault(a.call_id, []).append((ev, a))
            elif isinstance(ev, (CandidateJudged, TestJudged)):
                for j in ev.judgements:
                    self._judged.setdefault(_key(ev, j.example_id), []).append(j)
            elif isinstance(ev, (CandidateScored, PromptTested)):
                for metric_name, texts in ev.feedback.items():
                    for example_id, feedback in texts.items():
                        self._feedback.setdefault(_scored_key(ev, example_id), {})[metric_name] = feedback

    def of_call(self, call_id: str) -> list[tuple[Answered, Answer]]:
        """The answers a scorer call gave (one per answer set it served: a cache hit can serve several)."""
        return self._by_call.get(call_id, [])

    def answer(self, ev: Judged, example_id: str) -> tuple[Answered, Answer] | None:
        """The answer a judged event's judgement of ``example_id`` is about."""
        return self._by_key.get(_key(ev, example_id))

    def judgements(self, ev: Answered, example_id: str) -> list[Judgement]:
        """The judge's judgements of one answer (every criterion)."""
        return self._judged.get(_key(ev, example_id), [])

    def feedback(self, ev: Answered, example_id: str) -> dict[str, str]:
        """The feedback texts the metrics returned for one answer: metric name -> text."""
        return self._feedback.get(_key(ev, example_id), {})


class Examples:
    """The task rows answers refer to, loaded once per task when a call is first opened (gold answers, options, references)."""

    def __init__(self) -> None:
        self._tasks: dict[str, dict[str, Any] | str] = {}

    def get(self, task: str, example_id: str) -> tuple[Any | None, str | None]:
        """(the example, None), or (None, why it cannot be shown): the task cannot be loaded, or has no such row."""
        if task not in self._tasks:
            from ..evaluator import load_task

            try:
                loaded = load_task(task)
                self._tasks[task] = {e.id: e for e in (*loaded.train, *loaded.test)}
            except TPromptError as exc:  # a user task moved or changed since the run: say so, show the rest
                self._tasks[task] = f"task {task} cannot be loaded here ({exc})"
        rows = self._tasks[task]
        if isinstance(rows, str):
            return None, rows
        found = rows.get(example_id)
        return (found, None) if found is not None else (None, f"task {task} has no example {example_id} now")


def highlighted(content: str, needle: str) -> Text:
    """``content`` as literal Text with every (case-insensitive) occurrence of ``needle`` highlighted."""
    text = literal(content)
    if needle:
        text.highlight_words([needle], style="black on yellow", case_sensitive=False)
    return text


def option_probabilities(detail: CallDetail) -> list[tuple[str, float]] | None:
    """(letter, probability) per option of a logprob call, from its request's options and its response; None if not one."""
    letters = detail.params.get("options")
    if detail.params.get("kind") != "options" or not isinstance(letters, list) or detail.response is None:
        return None
    try:
        probs = json.loads(detail.response)
    except json.JSONDecodeError:
        return None
    if not isinstance(probs, list) or len(probs) != len(letters) or not all(isinstance(p, (int, float)) for p in probs):
        return None
    return [(str(letter), float(p)) for letter, p in zip(letters, probs)]


def call_row(number: int, r: TranscriptRow) -> Row:
    """A call's row of the Transcripts table (numbered in the order the calls were made)."""
    return Row(
        key=r.call_id,
        values=(number, r.agent, r.step or "", r.model, r.kind, r.prompt_tokens, r.completion_tokens, r.latency_s, r.cache_hit),
        cells=(
            LiteralText(str(number), justify="right"), LiteralText(r.agent), LiteralText(r.step or ""), LiteralText(r.model),
            LiteralText(r.kind), LiteralText(str(r.prompt_tokens if r.prompt_tokens is not None else "-"), justify="right"),
            LiteralText(str(r.completion_tokens if r.completion_tokens is not None else "-"), justify="right"),
            LiteralText(f"{r.latency_s:.3f}", justify="right"),
            LiteralText("hit" if r.cache_hit else "miss", style="green" if r.cache_hit else "yellow"),
        ),
    )


def call_text(row: TranscriptRow, detail: CallDetail, *, needle: str, answers: AnswerIndex, examples: Examples,
              judged: list[tuple[Judged, list[Judgement]]]) -> LiteralText:
    """The call's header, parameters, messages and response; then the answer it became, or the answers it judged."""
    text = LiteralText()
    text.append(f"call {row.call_id}  {row.agent}  {row.model}  step {row.step or '-'}", style="bold")
    text.append(f"\ntokens {row.prompt_tokens} in / {row.completion_tokens} out  latency {row.latency_s:.3f}s  "
                f"cache {'hit' if row.cache_hit else 'miss'}", style="dim")
    params = ", ".join(f"{k}={v}" for k, v in detail.params.items() if k not in ("kind", "model", "revision"))
    if params:
        text.append(f"\n{params}", style="dim")
    for role, content in detail.messages:
        text.append(f"\n\n[{role}]\n", style="bold cyan")
        text.append(highlighted(content, needle))
    given = answers.of_call(row.call_id)
    options = option_probabilities(detail)
    if options is not None and not row.error:
        text.append("\n\n[response: each option's probability]", style="bold green")
    else:
        text.append("\n\n[response]\n", style="bold green")
        if row.error:
            text.append(row.error, style="red")
        text.append(highlighted(detail.response or "", needle))
    if options is not None and not row.error:  # the options once, with the (first) answer's choice and gold marked
        first = given[0] if given else None
        example = examples.get(first[0].task, first[1].example_id)[0] if first else None
        text.append(_options_text(options, first[1] if first else None, example))
    for ev, answer in given:
        example, missing = examples.get(ev.task, answer.example_id)
        text.append(_answer_text(ev, answer, example, missing, answers.judgements(ev, answer.example_id),
                                 answers.feedback(ev, answer.example_id)))
    # One reply can serve several judged events (a cache hit when a stage judges the same answers again).
    for jev, judgements in judged:
        text.append(f"\n\n[judgements of {jev.prompt_id} ({jev.role if isinstance(jev, TestJudged) else jev.stage}) on "
                    f"{jev.task}, example {judgements[0].example_id}]", style="bold magenta")
        found = answers.answer(jev, judgements[0].example_id)
        if found is not None:
            example, missing = examples.get(jev.task, found[1].example_id)
            text.append(_judged_answer_text(found[1], example, missing))
        text.append(judgement_text(judgements, examples=False))
    return text


def _options_text(options: list[tuple[str, float]], answer: Answer | None, example: Any) -> LiteralText:
    """One line per option: letter, probability, text; the chosen one and the gold one marked."""
    choices = example.choices if example is not None and example.choices else ()
    gold = example.answer if example is not None else None
    text = LiteralText()
    for i, (letter, p) in enumerate(options):
        chosen = answer is not None and answer.parsed == letter
        style = "bold" if chosen else ""
        text.append(f"\n {'▶' if chosen else ' '} {letter}  {fmt(p)}  ", style=style)
        if i < len(choices):
            text.append(choices[i], style=style)
        if letter == gold:
            text.append("  ✓ gold", style="bold green")
    return text


def _answer_text(ev: Answered, answer: Answer, example: Any, missing: str | None, judgements: list[Judgement],
                 feedback: dict[str, str]) -> LiteralText:
    """The answer the run recorded from this call: chosen or parsed, the gold answer or references, right or wrong, the
    metrics' feedback, rationales."""
    where = f"{ev.role} prompt" if isinstance(ev, TestAnswered) else f"{ev.stage} step {ev.step}"
    text = LiteralText()
    text.append(f"\n\n[answer of {ev.prompt_id} ({where}) on {ev.task} {answers_where(ev)}, example {answer.example_id}]\n",
                style="bold yellow")
    shown = answer.output if answer.output is not None else answer.parsed
    if ev.mode == "logprob":
        text.append(f"chose {answer.parsed or '-'} (p={fmt(answer.confidence)})")
    else:
        text.append("answer ")
        text.append(repr(shown) if shown is not None else "none parsed", style="" if shown is not None else "red")
        text.append(f"  confidence {fmt(answer.confidence)}" + ("" if answer.followed_format else "  (format not followed)"))
    text.append(": ")
    text.append("right" if answer.correct else "wrong", style="bold green" if answer.correct else "bold red")
    text.append(_gold_text(example, missing))
    if answer.error:
        text.append(f"\nprogram error: {answer.error}", style="red")
    for metric_name, note in sorted(feedback.items()):
        text.append(f"\nfeedback ({metric_name}): ", style="bold cyan")
        text.append(note)
    if judgements:
        text.append("\njudge:", style="bold magenta")
        text.append(judgement_text(judgements, examples=False))
    return text


def _judged_answer_text(answer: Answer, example: Any, missing: str | None) -> LiteralText:
    shown = answer.output if answer.output is not None else answer.parsed
    text = LiteralText("\nanswer ")
    text.append(repr(shown) if shown is not None else "none parsed")
    text.append(_gold_text(example, missing))
    return text


def _gold_text(example: Any, missing: str | None) -> LiteralText:
    """A line ``gold C) Building new homes``, or one ``reference 'x'`` line per reference, or why there is none to show."""
    text = LiteralText()
    if example is None:
        text.append(f"\ngold unknown: {missing}", style="dim")
        return text
    if example.references:
        for ref in example.references:
            text.append("\nreference ", style="bold")
            text.append(repr(ref))
        return text
    if not example.answer:
        text.append("\nno gold answer or reference (judged only)", style="dim")
        return text
    text.append("\ngold ", style="bold")
    text.append(example.answer, style="bold")
    if example.choices and len(example.answer) == 1 and "A" <= example.answer <= "Z":
        index = ord(example.answer) - ord("A")
        if index < len(example.choices):
            text.append(f") {example.choices[index]}")
    elif example.answer_text:
        text.append(f" ({example.answer_text})")
    return text


__all__ = ("AnswerIndex", "Examples", "call_row", "call_text", "highlighted", "option_probabilities")
