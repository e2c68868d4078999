"""A user's own metrics, as `tprompt run --metric` names them by import path.

Run it on the fake model (offline, seconds) from the repository's examples folder:

    cd examples
    tprompt --db demo.db run --model fake --source pubmedqa_long --target pubmedqa_long \
        --steps 1 --candidates 2 --top-k 1 --examples 4 --test-examples 4 \
        --metric my_metrics:brevity --metric my_metrics:overlap --metric rouge_l

`brevity` is per example (one reply at a time), `overlap` is over the whole answer set.
Bump a metric's `version` when you change what it computes: a run recorded under
version 1 then refuses to resume under version 2 (rescore it instead).
"""

from __future__ import annotations

from tprompt import metric

#: Replies longer than this many words lose brevity.
MAX_WORDS = 60


@metric(name="brevity", label="brevity", gloss="short replies", version="1")
def brevity(example, answer: str) -> float:
    """1.0 up to MAX_WORDS words, then falling off as MAX_WORDS / words."""
    words = len(answer.split())
    return 1.0 if words <= MAX_WORDS else MAX_WORDS / words


@metric(name="overlap", gloss="share of replies sharing a word with the reference", per="set", version="1")
def overlap(examples, answers) -> float:
    """Over the whole set: the share of replies that share at least one word with their reference."""
    hits = 0
    for example, answer in zip(examples, answers):
        reference = set(" ".join(example.references).lower().split())
        hits += bool(reference & set(answer.lower().split()))
    return hits / len(answers) if answers else 0.0
