"""Multi-label metrics, per-genre threshold tuning and constant-predictor baselines.

The reporting set follows ``docs/sources.md#multilabel-metrics``: micro/macro/samples
F1 at a fixed threshold 0.5 and at per-genre thresholds tuned on validation (never on test),
macro mAP, Hamming loss and precision@1, always beside constant baselines. ``1 - Hamming`` is never
reported as an accuracy (all-zeros already scores high on it). scikit-learn metrics, ``zero_division=0``.
"""

from __future__ import annotations

from typing import Mapping

import numpy as np

__all__ = [
    "METRIC_KEYS",
    "average_precision_macro",
    "precision_at_1",
    "multilabel_metrics",
    "tune_thresholds",
    "constant_baselines",
]

METRIC_KEYS = ("micro_f1", "macro_f1", "samples_f1", "map", "hamming", "p_at_1",
               "micro_f1_tuned", "macro_f1_tuned", "samples_f1_tuned")

_GRID = np.round(np.arange(0.05, 0.951, 0.05), 2)


def average_precision_macro(labels: np.ndarray, scores: np.ndarray) -> float:
    """Macro mean of per-genre average precision over genres with at least one positive.

    A genre without positives has no defined AP (sklearn would warn and score it 0); it is left
    out of the mean. Returns nan when no genre has a positive.
    """
    from sklearn.metrics import average_precision_score

    labels = np.asarray(labels)
    keep = labels.sum(axis=0) > 0
    if not keep.any():
        return float("nan")
    return float(average_precision_score(labels[:, keep], np.asarray(scores)[:, keep], average="macro"))


def precision_at_1(labels: np.ndarray, scores: np.ndarray) -> float:
    """Fraction of samples whose top-scored genre is one of their true genres."""
    top = np.asarray(scores).argmax(axis=1)
    return float(np.asarray(labels)[np.arange(len(top)), top].mean()) if len(top) else float("nan")


def _f1s(labels: np.ndarray, preds: np.ndarray) -> dict[str, float]:
    from sklearn.metrics import f1_score

    return {avg: float(f1_score(labels, preds, average=avg, zero_division=0))
            for avg in ("micro", "macro", "samples")}


def multilabel_metrics(labels: np.ndarray, scores: np.ndarray, thresholds: np.ndarray | None = None,
                       preds: np.ndarray | None = None) -> dict[str, float]:
    """The full reporting set for one predictor.

    Args:
        labels: ``[n, G]`` 0/1 ground truth.
        scores: ``[n, G]`` probabilities (higher = more likely).
        thresholds: ``[G]`` tuned per-genre thresholds (default: 0.5 everywhere).
        preds: fixed ``[n, G]`` 0/1 predictions overriding both thresholds (constant baselines).

    Returns:
        A dict with the keys of :data:`METRIC_KEYS`.
    """
    from sklearn.metrics import hamming_loss

    labels = np.asarray(labels).astype(np.int64)
    scores = np.asarray(scores, dtype=np.float64)
    if labels.shape != scores.shape:
        raise ValueError(f"labels {labels.shape} and scores {scores.shape} differ in shape")
    fixed = (scores >= 0.5).astype(np.int64) if preds is None else np.asarray(preds).astype(np.int64)
    tuned = fixed if preds is not None or thresholds is None else (scores >= np.asarray(thresholds)).astype(np.int64)
    at_05 = _f1s(labels, fixed)
    at_t = _f1s(labels, tuned)
    return {
        "micro_f1": at_05["micro"], "macro_f1": at_05["macro"], "samples_f1": at_05["samples"],
        "map": average_precision_macro(labels, scores),
        "hamming": float(hamming_loss(labels, fixed)),
        "p_at_1": precision_at_1(labels, scores),
        "micro_f1_tuned": at_t["micro"], "macro_f1_tuned": at_t["macro"], "samples_f1_tuned": at_t["samples"],
    }


def tune_thresholds(labels: np.ndarray, scores: np.ndarray, grid: np.ndarray = _GRID) -> np.ndarray:
    """Per-genre thresholds maximising that genre's F1 on the given (validation) set.

    Ties go to the threshold closest to 0.5; a genre without positives keeps 0.5.

    Returns:
        float ``[G]`` thresholds.
    """
    labels = np.asarray(labels).astype(bool)
    scores = np.asarray(scores, dtype=np.float64)
    out = np.full(labels.shape[1], 0.5)
    order = np.argsort(np.abs(grid - 0.5), kind="stable")  # candidates nearest 0.5 first
    for g in range(labels.shape[1]):
        y = labels[:, g]
        if not y.any():
            continue
        best, best_f1 = 0.5, -1.0
        for t in grid[order]:
            p = scores[:, g] >= t
            tp = float(np.sum(p & y))
            denom = float(p.sum() + y.sum())
            f1 = 2 * tp / denom if denom else 0.0
            if f1 > best_f1 + 1e-12:
                best, best_f1 = float(t), f1
        out[g] = best
    return out


def constant_baselines(train_labels: np.ndarray, test_labels: np.ndarray) -> dict[str, dict[str, float]]:
    """Metrics of the constant predictors every result is reported beside.

    All of them score every sample with the train-split genre frequencies (so their mAP is the mean
    genre prevalence and P@1 is that of always ranking the most frequent genre first); they differ in
    the fixed label set they predict: the most frequent genre, the 2 or 3 most frequent, or nothing.
    Thresholds do not apply to a constant set, so the ``*_tuned`` values equal the fixed ones.

    Returns:
        ``{"most_frequent": {...}, "top2_frequent": {...}, "top3_frequent": {...}, "predict_nothing": {...}}``.
    """
    train_labels = np.asarray(train_labels)
    test_labels = np.asarray(test_labels)
    freq = train_labels.mean(axis=0) if len(train_labels) else np.zeros(train_labels.shape[1])
    order = np.argsort(-freq, kind="stable")
    n, g = test_labels.shape
    scores = np.broadcast_to(freq, (n, g))
    out: dict[str, dict[str, float]] = {}
    sets: Mapping[str, np.ndarray] = {
        "most_frequent": order[:1], "top2_frequent": order[:2], "top3_frequent": order[:3],
        "predict_nothing": order[:0],
    }
    for name, chosen in sets.items():
        preds = np.zeros((n, g), dtype=np.int64)
        preds[:, chosen] = 1
        out[name] = multilabel_metrics(test_labels, scores, preds=preds)
    return out
