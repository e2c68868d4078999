"""PNG plots of a report group: score curves, reliability diagrams, the Pareto front.

matplotlib runs headless (the Agg backend) and is imported only when a report
is written, so nothing else in tprompt pays for it.
"""

from __future__ import annotations

import dataclasses
from collections import defaultdict
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from .._text import printable
from ..evaluator import pareto_front
from ..evaluator.metrics import calibration_bins, ece
from ..metric_specs import metric_spec
from ..stores import EventLog
from ..stores.curves import score_curve
from ..stores.events import ROLES, Stage
from .grid import ROLE_LABELS
from .plot_data import candidate_points, replay_test_answers

if TYPE_CHECKING:
    from .report_model import Group

#: One colour per arm or role, the same in every plot.
COLORS = {
    "original": "#7f7f7f",
    "best_source": "#9467bd",
    "best_target": "#1f77b4",
    "target_only": "#ff7f0e",
    "transfer": "#1f77b4",
}


#: Line style of each stage's curve.
_STAGE_STYLES: tuple[tuple[Stage, str], ...] = (("source", "--"), ("target", "-"))


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")  # no display on servers and in CI
    import matplotlib.pyplot as plt

    return plt


def plot_group(log: EventLog, group: Group, directory: Path, *, prefix: str) -> list[tuple[str, Path]]:
    """Write the group's plots into ``directory``; returns (caption, path) per file written."""
    # The title holds model and task names: shown escaped, like everywhere else (matplotlib
    # would warn on stderr, raw, about every control character it has no glyph for).
    group = dataclasses.replace(group, title=printable(group.title))
    files = []
    for caption, name, draw in (
        ("Score curves", "curves", _curves),
        ("Reliability diagrams (test split)", "reliability", _reliability),
        ("Pareto front: accuracy vs ECE", "pareto", _pareto),
    ):
        path = directory / f"{prefix}-{name}.png"
        if draw(log, group, path):
            files.append((caption, path))
    return files


def _label(arm: str) -> str:
    return ROLE_LABELS.get(arm, arm)


def _curves(log: EventLog, group: Group, path: Path) -> bool:
    plt = _pyplot()
    fig, (by_step, by_calls) = plt.subplots(1, 2, figsize=(11, 4.2))
    drawn = False
    labelled: set[str] = set()
    target_curves: dict[str, list[dict[int, float]]] = defaultdict(list)
    for ref in group.runs:
        state = log.state(ref.run_id)
        color = COLORS.get(ref.arm, "#333333")
        for stage, style in _STAGE_STYLES:
            curve = score_curve(state, stage)
            if not curve.steps:
                continue
            drawn = True
            label = f"{_label(ref.arm)} ({stage} stage)"
            kw = {"label": label} if label not in labelled else {}
            labelled.add(label)
            alpha = 0.35 if len({r.seed for r in group.runs}) > 1 else 0.9
            by_step.plot(curve.steps, curve.best, style, color=color, alpha=alpha, marker=".", **kw)
            by_calls.plot(curve.calls, curve.best, style, color=color, alpha=0.8, marker=".")
            if stage == "target":
                target_curves[ref.arm].append(dict(zip(curve.steps, curve.best)))
    if not drawn:
        plt.close(fig)
        return False
    for arm, curves in target_curves.items():
        if len(curves) < 2:
            continue
        steps = sorted(set().union(*curves))
        means = [float(np.mean([c[s] for c in curves if s in c])) for s in steps]
        by_step.plot(steps, means, "-", color=COLORS.get(arm, "#333333"), linewidth=2.5, label=f"{_label(arm)} (mean)")
    if group.budget:
        by_calls.axvline(group.budget, color="#d62728", linestyle=":", label="budget")
        by_calls.legend(loc="lower right", fontsize=8)
    by_step.set(xlabel="step of the stage", ylabel="best objective so far (training examples)",
                title="Best objective per step")
    by_calls.set(xlabel="training scorer calls spent (both stages)", title="Best objective per scorer call")
    by_step.legend(loc="lower right", fontsize=8)
    for ax in (by_step, by_calls):
        ax.grid(alpha=0.3)
    fig.suptitle(group.title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


def _role_of(arm: str) -> str:
    return arm if arm in ROLES else "best_target"


def _reliability(log: EventLog, group: Group, path: Path) -> bool:
    pooled: dict[str, tuple[list[bool], list[float]]] = {}
    for arm in group.arms:
        correct: list[bool] = []
        confidence: list[float] = []
        for sample in group.arm_samples(arm):
            answers = replay_test_answers(log, sample.run_id, _role_of(arm))
            if answers is not None:
                correct += answers[0]
                confidence += answers[1]
        if correct:
            pooled[arm] = (correct, confidence)
    if not pooled:
        return False
    plt = _pyplot()
    fig, axes = plt.subplots(1, len(pooled), figsize=(3.8 * len(pooled), 3.9), squeeze=False)
    for ax, (arm, (correct, confidence)) in zip(axes[0], pooled.items()):
        acc, conf, counts = calibration_bins(correct, confidence, 10)
        centers = (np.floor(np.clip(conf, 0, 0.999999) * 10) + 0.5) / 10
        ax.bar(centers, acc, width=0.09, color=COLORS.get(arm, "#333333"), alpha=0.75, edgecolor="black", label="accuracy")
        ax.plot([0, 1], [0, 1], ":", color="black", label="perfect calibration")
        ax.plot(conf, acc, "o", color="black", markersize=3)
        for x, y, n in zip(centers, acc, counts):
            ax.annotate(str(int(n)), (x, y), textcoords="offset points", xytext=(0, 2), ha="center", fontsize=7)
        value = ece(correct, confidence)
        ax.set(xlim=(0, 1), ylim=(0, 1.05), xlabel="confidence", title=f"{_label(arm)}\nECE {value:.3f}, n={len(correct)}")
        ax.title.set_fontsize(9)
        ax.grid(alpha=0.3)
    axes[0][0].set_ylabel("accuracy in bin")
    axes[0][0].legend(loc="upper left", fontsize=7)
    fig.suptitle(group.title + " (answers pooled over seeds)", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


def _pareto(log: EventLog, group: Group, path: Path) -> bool:
    cands: list[tuple[str, dict]] = []
    for ref in group.runs:
        cands += [(ref.arm, p) for p in candidate_points(log, ref.run_id) if p.get("accuracy") is not None
                  and p.get("ece") is not None]
    tests = [(s.arm, s.values) for s in group.samples if s.values.get("accuracy") is not None
             and s.values.get("ece") is not None]
    if not cands and not tests:
        return False
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6.5, 4.8))
    by_arm: dict[str, list[dict]] = defaultdict(list)
    for arm, p in cands:
        by_arm[arm].append(p)
    for arm, pts in by_arm.items():
        ax.scatter([p["ece"] for p in pts], [p["accuracy"] for p in pts], s=14, alpha=0.35,
                   color=COLORS.get(arm, "#333333"), label=f"{_label(arm)}: candidates (train)")
    if cands:
        front = pareto_front([p for _, p in cands], key=lambda p: p, metrics=("accuracy", "ece"))
        front = sorted(front, key=lambda p: p["ece"])
        ax.plot([p["ece"] for p in front], [p["accuracy"] for p in front], drawstyle="steps-post", color="black",
                linewidth=1.2, marker="o", markerfacecolor="none", markersize=8, label="Pareto front (train)")
    for arm in dict.fromkeys(a for a, _ in tests):
        pts = [v for a, v in tests if a == arm]
        ax.scatter([v["ece"] for v in pts], [v["accuracy"] for v in pts], s=110, marker="*", edgecolor="black",
                   color=COLORS.get(arm, "#333333"), label=f"{_label(arm)}: test split")
    ax.set(xlabel=metric_spec("ece").long_label, ylabel=f"{metric_spec('accuracy').label} (higher is better)",
           title=group.title)
    ax.title.set_fontsize(9)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="best")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


__all__ = ("COLORS", "plot_group")
