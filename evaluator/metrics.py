"""The paper's metrics, in plain numpy (scikit-learn is a test-only dependency).

All functions take per-answer arrays: ``correct`` (bool), ``confidence`` (float
in [0, 1]) and ``followed`` (bool: the answer came in the demanded format).
Unparseable answers are passed in as wrong with confidence 0.

A metric that is undefined for the data returns ``None`` (shown as "n/a"),
never NaN and never an exception:

* every metric is None for zero answers;
* AUROC is None when all answers are correct or all are wrong (one class);
* PR-P (wrong answers positive) is None when no answer is wrong; PR-N (correct
  answers positive) is None when no answer is correct.

Constant confidence is fine: AUROC is then 0.5 and average precision equals the
share of positives, as in scikit-learn.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

# Names, labels and directions are the one metric table's; re-exported here.
from ..metric_specs import HIGHER_IS_BETTER as HIGHER_IS_BETTER
from ..metric_specs import METRIC_NAMES as METRIC_NAMES

ArrayLike = Sequence[float] | Sequence[bool] | np.ndarray


def _arr(values: ArrayLike, dtype: type) -> np.ndarray:
    return np.asarray(values, dtype=dtype).reshape(-1)


def accuracy(correct: ArrayLike) -> float | None:
    """Share of correct answers."""
    c = _arr(correct, bool)
    return float(c.mean()) if c.size else None


def ifr(followed: ArrayLike) -> float | None:
    """Instruction-following rate: share of answers given in the demanded format."""
    f = _arr(followed, bool)
    return float(f.mean()) if f.size else None


def calibration_bins(correct: ArrayLike, confidence: ArrayLike, n_bins: int = 10) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per non-empty equal-width bin: (mean accuracy, mean confidence, count).

    Bins are [0, 1/n], (1/n, 2/n], ..., assigned like scikit-learn's
    ``calibration_curve(strategy="uniform")`` so the two agree bin for bin.
    """
    c = _arr(correct, float)
    p = np.clip(_arr(confidence, float), 0.0, 1.0)
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    ids = np.searchsorted(edges[1:-1], p)
    counts = np.bincount(ids, minlength=n_bins)
    acc_sum = np.bincount(ids, weights=c, minlength=n_bins)
    conf_sum = np.bincount(ids, weights=p, minlength=n_bins)
    keep = counts > 0
    return acc_sum[keep] / counts[keep], conf_sum[keep] / counts[keep], counts[keep]


def ece(correct: ArrayLike, confidence: ArrayLike, n_bins: int = 10) -> float | None:
    """Expected calibration error over ``n_bins`` equal-width confidence bins:
    sum over bins of (bin size / n) * |bin accuracy - bin mean confidence|."""
    if n_bins < 1:
        raise ValueError("n_bins must be at least 1")
    c = _arr(correct, float)
    if not c.size:
        return None
    acc, conf, counts = calibration_bins(c, confidence, n_bins)
    return float(np.sum(counts * np.abs(acc - conf)) / c.size)


def _average_ranks(x: np.ndarray) -> np.ndarray:
    """1-based ranks with ties sharing their average rank (scipy's rankdata 'average')."""
    order = np.argsort(x, kind="mergesort")
    xs = x[order]
    # start index of each run of equal values
    starts = np.r_[0, np.flatnonzero(xs[1:] != xs[:-1]) + 1]
    ends = np.r_[starts[1:], xs.size]
    avg = (starts + ends + 1) / 2.0  # mean of 1-based positions start+1 .. end
    ranks = np.empty(x.size, dtype=float)
    ranks[order] = np.repeat(avg, ends - starts)
    return ranks


def auroc(correct: ArrayLike, confidence: ArrayLike) -> float | None:
    """Area under the ROC curve of confidence separating correct (positive) from
    wrong answers; ties count one half (as scikit-learn's roc_auc_score). None
    when only one class is present."""
    y = _arr(correct, bool)
    s = _arr(confidence, float)
    n_pos = int(y.sum())
    n_neg = y.size - n_pos
    if n_pos == 0 or n_neg == 0:
        return None
    ranks = _average_ranks(s)
    u = ranks[y].sum() - n_pos * (n_pos + 1) / 2.0
    return float(u / (n_pos * n_neg))


def average_precision(positive: ArrayLike, score: ArrayLike) -> float | None:
    """Average precision as scikit-learn's ``average_precision_score`` defines it:
    sum over distinct thresholds of (recall_k - recall_{k-1}) * precision_k.
    None when there is no positive."""
    y = _arr(positive, bool)
    s = _arr(score, float)
    n_pos = int(y.sum())
    if y.size == 0 or n_pos == 0:
        return None
    order = np.argsort(-s, kind="mergesort")
    ys, ss = y[order], s[order]
    # last index of each group of equal scores = one threshold
    last = np.r_[np.flatnonzero(ss[1:] != ss[:-1]), ys.size - 1]
    tp = np.cumsum(ys)[last].astype(float)
    fp = (last + 1) - tp
    precision = tp / (tp + fp)
    recall = tp / n_pos
    d_recall = np.diff(np.r_[0.0, recall])
    return float(np.sum(d_recall * precision))


def pr_p(correct: ArrayLike, confidence: ArrayLike) -> float | None:
    """AUPRC with wrong answers as positives, scored by 1 - confidence."""
    c = _arr(correct, bool)
    return average_precision(~c, 1.0 - _arr(confidence, float))


def pr_n(correct: ArrayLike, confidence: ArrayLike) -> float | None:
    """AUPRC with correct answers as positives, scored by confidence."""
    return average_precision(_arr(correct, bool), _arr(confidence, float))


def brier(correct: ArrayLike, confidence: ArrayLike) -> float | None:
    """Mean squared difference between confidence and correctness (0 is best)."""
    c = _arr(correct, float)
    if not c.size:
        return None
    p = np.clip(_arr(confidence, float), 0.0, 1.0)
    return float(np.mean((p - c) ** 2))


def compute_metrics(correct: ArrayLike, confidence: ArrayLike, followed: ArrayLike,
                    *, n_bins: int = 10) -> dict[str, float | None]:
    """All metrics of :data:`METRIC_NAMES` for one set of answers."""
    c = _arr(correct, bool)
    p = _arr(confidence, float)
    f = _arr(followed, bool)
    if not (c.size == p.size == f.size):
        raise ValueError("correct, confidence and followed must have the same length")
    if p.size and not np.all(np.isfinite(p)):
        raise ValueError("confidence must be finite")
    return {
        "accuracy": accuracy(c),
        "ifr": ifr(f),
        "ece": ece(c, p, n_bins),
        "auroc": auroc(c, p),
        "pr_p": pr_p(c, p),
        "pr_n": pr_n(c, p),
        "brier": brier(c, p),
    }
