"""PNG plots of a report group: score curves, reliability diagrams, the Pareto front.

Each plot is built as a matplotlib figure by a ``*_figure`` function (what
tests read back: panels, titles, ticks, legends) and saved by :func:`plot_group`.
matplotlib runs headless (the Agg backend) and is imported only when a report
is written, so nothing else in tprompt pays for it.

What the plots keep apart, because one axis would mislead:

* the source and the target stage's objectives are measured on different
  tasks' training examples: one row of panels per stage;
* training candidates (training examples) and test results (held-out split):
  one panel each in the Pareto plot;
* a reliability diagram and its ECE need the scorer's confidence, which an
  open-ended task does not have: no diagram for a group whose test rows have
  no ECE.

Legends sit beside the panels, never on the data.
"""

from __future__ import annotations

import dataclasses
from collections import defaultdict
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from .._text import printable
from ..evaluator import pareto_front
from ..evaluator.metrics import calibration_bins, ece
from ..metric_specs import metric_spec
from ..stores import EventLog
from ..stores.curves import score_curve
from ..stores.events import ROLES, Stage
from .grid import REPORT_LABELS
from .plot_data import candidate_points, replay_test_answers

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

    from .report_model import Group

#: One colour per arm or role, the same in every plot.
COLORS = {
    "original": "#7f7f7f",
    "best_source": "#9467bd",
    "best_target": "#1f77b4",
    "target_only": "#ff7f0e",
    "transfer": "#1f77b4",
}

#: What each stage's objective is measured on (the y label of its row of curves).
_STAGE_DATA: dict[Stage, str] = {"source": "source tasks' training examples",
                                 "target": "target task's training examples"}


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")  # no display on servers and in CI
    import matplotlib.pyplot as plt

    return plt


def plot_group(log: EventLog, group: Group, directory: Path, *, prefix: str) -> list[tuple[str, Path]]:
    """Write the group's plots into ``directory``; returns (caption, path) per file written."""
    files = []
    for caption, name, fig in group_figures(log, group):
        path = directory / f"{prefix}-{name}.png"
        # "tight" keeps the legends, which sit outside the panels, inside the image.
        fig.savefig(path, dpi=110, bbox_inches="tight")
        _pyplot().close(fig)
        files.append((caption, path))
    return files


def group_figures(log: EventLog, group: Group) -> list[tuple[str, str, Figure]]:
    """(caption, file stem, figure) of each plot the group has data for; the caller closes the figures."""
    # The title holds model and task names: shown escaped, like everywhere else (matplotlib
    # would warn on stderr, raw, about every control character it has no glyph for).
    group = dataclasses.replace(group, title=printable(group.title))
    makers: tuple[tuple[str, str, Callable[[EventLog, Group], Figure | None]], ...] = (
        ("Score curves", "curves", curves_figure),
        ("Reliability diagrams (test split)", "reliability", reliability_figure),
        ("Pareto front: accuracy vs ECE", "pareto", pareto_figure),
    )
    out = []
    for caption, name, make in makers:
        fig = make(log, group)
        if fig is not None:
            out.append((caption, name, fig))
    return out


def _label(arm: str) -> str:
    return REPORT_LABELS.get(arm, arm)


def _legend_outside(fig: Figure, axes: Sequence[Axes]) -> None:
    """One legend for the figure, right of its panels (each label once)."""
    seen: dict[str, Any] = {}
    for ax in axes:
        for handle, label in zip(*ax.get_legend_handles_labels()):
            seen.setdefault(label, handle)
    if seen:
        fig.legend(list(seen.values()), list(seen), loc="upper left", bbox_to_anchor=(1.0, 0.95), fontsize=8,
                   frameon=False)


def _integer_ticks(ax: Axes) -> None:
    from matplotlib.ticker import MaxNLocator

    ax.xaxis.set_major_locator(MaxNLocator(integer=True))


def curves_figure(log: EventLog, group: Group) -> Figure | None:
    """Best objective so far per step and per scorer call: one row of panels per stage, None without curves."""
    per_stage: dict[Stage, list[tuple[str, Any]]] = {"source": [], "target": []}
    for ref in group.runs:
        state = log.state(ref.run_id)
        for stage in per_stage:
            curve = score_curve(state, stage)
            if curve.steps:
                per_stage[stage].append((ref.arm, curve))
    stages = [s for s, curves in per_stage.items() if curves]
    if not stages:
        return None
    several = len({r.seed for r in group.runs}) > 1
    plt = _pyplot()
    fig, axes = plt.subplots(len(stages), 2, figsize=(10, 3.6 * len(stages)), squeeze=False, sharex="col")
    for row, stage in zip(axes, stages):
        by_step, by_calls = row
        by_arm: dict[str, list[dict[int, float]]] = defaultdict(list)
        for arm, curve in per_stage[stage]:
            color = COLORS.get(arm, "#333333")
            label = _label(arm) + (", each seed" if several else "")
            by_step.plot(curve.steps, curve.best, "-", color=color, alpha=0.35 if several else 0.9, marker=".",
                         label=label)
            by_calls.plot(curve.calls, curve.best, "-", color=color, alpha=0.8, marker=".", label=label)
            by_arm[arm].append(dict(zip(curve.steps, curve.best)))
        for arm, curves in by_arm.items():
            if len(curves) < 2:
                continue
            steps = sorted(set().union(*curves))
            means = [float(np.mean([c[s] for c in curves if s in c])) for s in steps]
            by_step.plot(steps, means, "-", color=COLORS.get(arm, "#333333"), linewidth=2.5,
                         label=f"{_label(arm)} (mean over seeds)")
        if group.budget:
            by_calls.axvline(group.budget, color="#d62728", linestyle=":", label="budget")
        by_step.set(ylabel=f"best objective so far\n({_STAGE_DATA[stage]})",
                    title=f"{stage.capitalize()} stage: best objective per step")
        by_calls.set(title=f"{stage.capitalize()} stage: best objective per scorer call")
        for ax in row:
            _integer_ticks(ax)
            ax.grid(alpha=0.3)
            ax.title.set_fontsize(10)
    axes[-1][0].set_xlabel("step of the stage")
    axes[-1][1].set_xlabel("training scorer calls spent (both stages)")
    _legend_outside(fig, axes.ravel())
    fig.suptitle(group.title, fontsize=10)
    fig.tight_layout()
    return fig


def _role_of(arm: str) -> str:
    return arm if arm in ROLES else "best_target"


def reliability_figure(log: EventLog, group: Group) -> Figure | None:
    """One reliability diagram per arm whose test rows have an ECE; None when none has (open-ended tasks)."""
    pooled: dict[str, tuple[list[bool], list[float]]] = {}
    seeds: set[int] = set()
    for arm in group.arms:
        correct: list[bool] = []
        confidence: list[float] = []
        for sample in group.arm_samples(arm):
            if sample.values.get("ece") is None:  # no confidence to draw (an open-ended task)
                continue
            answers = replay_test_answers(log, sample.run_id, _role_of(arm))
            if answers is not None:
                correct += answers[0]
                confidence += answers[1]
                seeds.add(sample.seed)
        if correct:
            pooled[arm] = (correct, confidence)
    if not pooled:
        return None
    plt = _pyplot()
    fig, axes = plt.subplots(1, len(pooled), figsize=(3.6 * len(pooled), 3.9), squeeze=False, sharey=True)
    for ax, (arm, (correct, confidence)) in zip(axes[0], pooled.items()):
        acc, conf, counts = calibration_bins(correct, confidence, 10)
        centers = (np.floor(np.clip(conf, 0, 0.999999) * 10) + 0.5) / 10
        ax.bar(centers, acc, width=0.09, color=COLORS.get(arm, "#333333"), alpha=0.75, edgecolor="black",
               label="accuracy in bin (bar label: answers in bin)")
        ax.plot([0, 1], [0, 1], ":", color="black", label="perfect calibration")
        ax.plot(conf, acc, "o", color="black", markersize=3, label="bin: (mean confidence, accuracy)")
        for x, y, n in zip(centers, acc, counts):
            ax.annotate(str(int(n)), (x, y), textcoords="offset points", xytext=(0, 2), ha="center", fontsize=7)
        value = ece(correct, confidence)
        ax.set(xlim=(0, 1), ylim=(0, 1.05), xlabel="confidence", title=f"{_label(arm)}\nECE {value:.3f}, n={len(correct)}")
        ax.title.set_fontsize(9)
        ax.grid(alpha=0.3)
    axes[0][0].set_ylabel("accuracy in bin")
    _legend_outside(fig, axes[0])
    if len(seeds) > 1:
        where = f" (test answers pooled over {len(seeds)} seeds)"
    else:
        where = f" (test answers, seed {next(iter(seeds))})"
    fig.suptitle(group.title + where, fontsize=9)
    fig.tight_layout()
    return fig


def pareto_figure(log: EventLog, group: Group) -> Figure | None:
    """Accuracy vs ECE: training candidates and their front (left), test results (right); None without either."""
    cands: list[tuple[str, dict]] = []
    for ref in group.runs:
        cands += [(ref.arm, p) for p in candidate_points(log, ref.run_id) if p.get("accuracy") is not None
                  and p.get("ece") is not None]
    tests = [(s.arm, s.values) for s in group.samples if s.values.get("accuracy") is not None
             and s.values.get("ece") is not None]
    if not cands and not tests:
        return None
    plt = _pyplot()
    panels = int(bool(cands)) + int(bool(tests))
    fig, axes = plt.subplots(1, panels, figsize=(4.6 * panels, 4.4), squeeze=False, sharex=True, sharey=True)
    panel = iter(axes[0])
    if cands:
        ax = next(panel)
        by_arm: dict[str, list[dict]] = defaultdict(list)
        for arm, p in cands:
            by_arm[arm].append(p)
        for arm, pts in by_arm.items():
            ax.scatter([p["ece"] for p in pts], [p["accuracy"] for p in pts], s=14, alpha=0.45,
                       color=COLORS.get(arm, "#333333"), label=f"{_label(arm)}: candidates (train)")
        front = pareto_front([p for _, p in cands], key=lambda p: p, metrics=("accuracy", "ece"))
        front = sorted(front, key=lambda p: p["ece"])
        ax.plot([p["ece"] for p in front], [p["accuracy"] for p in front], drawstyle="steps-post", color="black",
                linewidth=1.2, marker="o", markerfacecolor="none", markersize=8, label="Pareto front (train)")
        ax.set(title="Training candidates (target stage, training examples)")
    if tests:
        ax = next(panel)
        for arm in dict.fromkeys(a for a, _ in tests):
            pts = [v for a, v in tests if a == arm]
            ax.scatter([v["ece"] for v in pts], [v["accuracy"] for v in pts], s=110, marker="*", edgecolor="black",
                       color=COLORS.get(arm, "#333333"), label=f"{_label(arm)}: test split")
        ax.set(title="Held-out test split")
    for ax in axes[0]:
        ax.set(xlabel=metric_spec("ece").long_label)
        ax.title.set_fontsize(9)
        ax.grid(alpha=0.3)
    axes[0][0].set_ylabel(f"{metric_spec('accuracy').label} (higher is better)")
    _legend_outside(fig, axes[0])
    fig.suptitle(group.title, fontsize=9)
    fig.tight_layout()
    return fig


__all__ = ("COLORS", "curves_figure", "group_figures", "pareto_figure", "plot_group", "reliability_figure")
