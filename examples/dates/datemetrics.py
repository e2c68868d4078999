"""The metric of the dates example (examples/dates): the reply is exactly the reference ISO date."""

import re

from tprompt import metric


@metric(name="iso_date", gloss="reply is exactly the reference ISO date", version="1")
def iso_date(example, answer: str) -> float:
    text = answer.strip()
    return float(bool(re.fullmatch(r"\d{4}-\d{2}-\d{2}", text)) and text in example.references)
