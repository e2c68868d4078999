"""Which candidate a reflective proposal improves on: the stage's best, or one of its Pareto pool.

``--parent-selection best`` takes the stage's best candidate (the highest
objective, as everywhere in tprompt); ``pareto`` draws from the per-example
Pareto pool (:mod:`tprompt.stores.frontier`), each member as often as the
examples it is best on (GEPA's rule), with a random generator seeded by the
run's seed, stage and step, so a resumed run draws the same parent.
"""

from __future__ import annotations

import random
from collections.abc import Iterable

from ..evaluator import ObjectiveWeights
from ..stores.events import Event, Stage, StoredEvent
from ..stores.frontier import Frontier, stage_frontier
from .config import RunConfig


def frontier_weights(config: RunConfig) -> dict[str, float]:
    """The weights the Pareto pool's keys are chosen by: the seven's defaults under the run's own weights."""
    return {**ObjectiveWeights().model_dump(), **config.weights}


def run_frontier(events: Iterable[StoredEvent | Event], config: RunConfig, stage: Stage) -> Frontier:
    """``stage``'s Pareto pool as recorded in ``events`` under the run's weights."""
    return stage_frontier(events, stage, frontier_weights(config))


def draw_parent(frontier: Frontier, *, seed: int, stage: Stage, step: int) -> str | None:
    """One member of ``frontier``, drawn with probability proportional to the keys it is best on.

    Deterministic in (seed, stage, step): a killed run that proposes the same step again draws the same parent.
    None when the pool is empty (nothing scored yet).
    """
    if not frontier.members:
        return None
    rng = random.Random(f"{seed}:{stage}:{step}")
    weights = [max(1, len(frontier.wins.get(m, ()))) for m in frontier.members]
    return rng.choices(list(frontier.members), weights=weights, k=1)[0]


__all__ = ("draw_parent", "frontier_weights", "run_frontier")
