"""The DSPy side of benchmarks/head_to_head.py: one arm (GEPA or MIPROv2), one seed. Not a test.

Runs in the benchmark's own DSPy environment (never tprompt's), so it imports
nothing from tprompt: the parent sends the rows as JSON on stdin and reads one
JSON object from the last line of stdout. Spec keys: ``arm`` ("gepa" or
"mipro"), ``base_url``, ``model``, ``instruction`` (the starting prompt, the
same as tprompt's original), ``train`` and ``test`` (lists of {question, answer};
the question carries its lettered options), ``budget`` (rollouts: task-LM calls
on training examples), ``seed``, ``threads``, ``task_max_tokens``,
``proposer_max_tokens``, ``extra_body`` (sent with every request).

Every call is counted by role by a counting ``dspy.LM``: the task LM (the
program answering a question) and the proposer (GEPA's reflection LM,
MIPROv2's prompt model). Rollouts are the task LM's calls while the optimizer
runs (it sees training rows only); the held-out score is then measured on the
test rows with the optimized program. The ChatAdapter's JSON fallback is off,
so one question is one task-LM call, as one row is one scorer call in tprompt.
"""

from __future__ import annotations

import json
import re
import sys
import threading
import time

import dspy

COUNTS: dict[str, int] = {"task": 0, "proposer": 0}
_LOCK = threading.Lock()


class CountingLM(dspy.LM):
    """A ``dspy.LM`` that counts its calls under its ``role``, copies included (optimizers copy LMs)."""

    def __init__(self, *args, role: str, **kwargs):
        super().__init__(*args, **kwargs)
        self.role = role

    def forward(self, *args, **kwargs):
        with _LOCK:
            COUNTS[self.role] += 1
        return super().forward(*args, **kwargs)


class AnswerQuestion(dspy.Signature):
    """Answer the question."""

    question: str = dspy.InputField(desc="the question and its lettered options")
    answer: str = dspy.OutputField(desc="the letter of the chosen option")


def letter(text: str | None) -> str:
    """The first standalone capital A-J in ``text`` (as an exact-match letter), or ''."""
    found = re.search(r"\b([A-J])\b", text or "")
    return found.group(1) if found else ""


def exact(gold, pred, trace=None) -> float:
    """Exact match of the letter: the metric both DSPy optimizers optimize and the test score."""
    return float(letter(getattr(pred, "answer", None)) == gold.answer)


def gepa_metric(gold, pred, trace=None, pred_name=None, pred_trace=None):
    """``exact`` with the feedback tprompt's built-in accuracy gives: the letter given against the gold one."""
    given = letter(getattr(pred, "answer", None))
    score = float(given == gold.answer)
    if score:
        return dspy.Prediction(score=score, feedback=f"Correct: {gold.answer}.")
    said = f"answered {given}" if given else "gave no option letter"
    return dspy.Prediction(score=score, feedback=f"Wrong: {said}; the correct option is {gold.answer}.")


def main() -> None:
    spec = json.loads(sys.stdin.read())
    common = dict(api_base=spec["base_url"], api_key="local", model_type="chat", cache=False, num_retries=3,
                  **({"extra_body": spec["extra_body"]} if spec.get("extra_body") else {}))
    task_lm = CountingLM(f"openai/{spec['model']}", role="task", temperature=0.0,
                         max_tokens=spec["task_max_tokens"], **common)
    proposer_lm = CountingLM(f"openai/{spec['model']}", role="proposer", temperature=1.0,
                             max_tokens=spec["proposer_max_tokens"], **common)
    dspy.configure(lm=task_lm, adapter=dspy.ChatAdapter(use_json_adapter_fallback=False))
    train = [dspy.Example(**row).with_inputs("question") for row in spec["train"]]
    test = [dspy.Example(**row).with_inputs("question") for row in spec["test"]]
    student = dspy.Predict(AnswerQuestion.with_instructions(spec["instruction"]))

    started = time.perf_counter()
    if spec["arm"] == "gepa":
        optimizer = dspy.GEPA(metric=gepa_metric, max_metric_calls=spec["budget"], reflection_lm=proposer_lm,
                              reflection_minibatch_size=min(3, len(train)), num_threads=spec["threads"],
                              # An answer the adapter cannot parse is a failure with feedback, not a hole: a small
                              # model fails the format often, and without this GEPA has nothing to reflect on.
                              add_format_failure_as_feedback=True,
                              seed=spec["seed"])
        program = optimizer.compile(student, trainset=train, valset=train)
    else:
        # Zero-shot instruction search (no demos, as tprompt optimizes the instruction only), the training rows
        # as the validation set, full evaluations: (1 + num_trials) x len(train) task-LM calls.
        trials = spec["budget"] // len(train) - 1
        optimizer = dspy.MIPROv2(metric=exact, prompt_model=proposer_lm, task_model=task_lm, auto=None,
                                 num_candidates=max(2, trials), max_bootstrapped_demos=0, max_labeled_demos=0,
                                 num_threads=spec["threads"], seed=spec["seed"], verbose=False)
        program = optimizer.compile(student, trainset=train, valset=train, num_trials=trials, minibatch=False,
                                    program_aware_proposer=False, data_aware_proposer=False)
    wall = time.perf_counter() - started
    rollouts, proposer_calls = COUNTS["task"], COUNTS["proposer"]

    evaluate = dspy.Evaluate(devset=test, metric=exact, num_threads=spec["threads"], display_progress=False,
                             failure_score=0.0)
    test_score = float(evaluate(program).score) / 100.0
    instruction = program.signature.instructions
    print(json.dumps({"test_score": test_score, "rollouts": rollouts, "proposer_calls": proposer_calls,
                      "wall_s": wall, "test_calls": COUNTS["task"] - rollouts, "prompt": instruction}))


if __name__ == "__main__":
    main()
