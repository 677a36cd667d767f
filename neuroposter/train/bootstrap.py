"""Paired bootstrap over test samples: percentile intervals of a model's test metrics and of the difference
between two models evaluated on the same test set.

The test samples (posters) are resampled with replacement ``B`` times (seeded); every model evaluated on a test
set of the same size with the same ``B`` and ``seed`` sees exactly the same resamples, so differences between two
such models are *paired*: ``diff_b = metric(A on resample b) - metric(B on resample b)``. The interval is the
percentile interval of those ``B`` values (95 % by default: the 2.5th and 97.5th percentiles), the point estimate
is the metric on the full test set.

Metrics (the same definitions as :mod:`neuroposter.train.metrics`, scikit-learn, ``zero_division=0``):

* ``map``: macro average precision over the genres with at least one positive in the (resampled) set
  (:func:`neuroposter.train.metrics.average_precision_macro`);
* ``micro_f1``: micro F1 at the fixed threshold 0.5;
* ``micro_f1_tuned``: micro F1 at the per-genre thresholds tuned on validation (nan without thresholds).

This captures the sampling noise of the test set only: the models are fixed, so seed-to-seed training noise is
NOT part of these intervals.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from neuroposter.train.metrics import average_precision_macro

__all__ = ["BOOTSTRAP_METRICS", "Interval", "BootstrapDistribution", "PairedBootstrap", "resample_indices",
           "resample_weights", "weighted_micro_f1", "weighted_ap_macro", "point_metrics", "bootstrap",
           "same_test_set", "compare", "paired_bootstrap", "percentile_interval"]

BOOTSTRAP_METRICS = ("map", "micro_f1", "micro_f1_tuned")


@dataclass(frozen=True)
class Interval:
    """A point estimate with its bootstrap percentile interval.

    Attributes:
        point: the metric (or difference) on the full test set (nan when undefined).
        low: lower end of the interval (nan when unavailable).
        high: upper end.
        level: confidence level (0.95).
        n_valid: resamples on which the metric was defined.
    """

    point: float
    low: float
    high: float
    level: float = 0.95
    n_valid: int = 0

    @property
    def available(self) -> bool:
        """Point and both ends are finite numbers."""
        return all(math.isfinite(v) for v in (self.point, self.low, self.high))

    @property
    def excludes_zero(self) -> bool:
        """The interval lies entirely above or entirely below 0."""
        return self.available and (self.low > 0 or self.high < 0)


def percentile_interval(samples: np.ndarray, point: float, level: float = 0.95) -> Interval:
    """The percentile interval of ``samples`` (nan entries dropped) around ``point``."""
    samples = np.asarray(samples, dtype=np.float64)
    valid = samples[~np.isnan(samples)]
    if valid.size == 0 or not math.isfinite(point):
        return Interval(float(point), float("nan"), float("nan"), level, int(valid.size))
    tail = 100.0 * (1.0 - level) / 2.0
    low, high = np.percentile(valid, [tail, 100.0 - tail])
    return Interval(float(point), float(low), float(high), level, int(valid.size))


def resample_indices(n: int, B: int = 1000, seed: int = 0) -> np.ndarray:
    """``[B, n]`` indices drawn with replacement; a function of ``(n, B, seed)`` only, so two models on the same
    test set get the same resamples (the pairing)."""
    if n <= 0 or B <= 0:
        raise ValueError(f"need n > 0 test samples and B > 0 resamples (got n={n}, B={B})")
    return np.random.default_rng(seed).integers(0, n, size=(B, n))


def _check(labels: np.ndarray, scores: np.ndarray, thresholds: np.ndarray | None) -> tuple[np.ndarray, np.ndarray,
                                                                                            np.ndarray | None]:
    labels = np.asarray(labels).astype(np.int64)
    scores = np.asarray(scores, dtype=np.float64)
    if labels.ndim != 2 or labels.shape != scores.shape:
        raise ValueError(f"labels {labels.shape} and scores {scores.shape} must be the same [n, G] shape")
    if thresholds is not None:
        thresholds = np.asarray(thresholds, dtype=np.float64).reshape(-1)
        if thresholds.shape != (labels.shape[1],):
            raise ValueError(f"{thresholds.size} thresholds for {labels.shape[1]} genres")
    return labels, scores, thresholds


def _micro_f1(labels: np.ndarray, preds: np.ndarray) -> float:
    from sklearn.metrics import f1_score

    # the same call as neuroposter.train.metrics._f1s (micro average, zero_division=0)
    return float(f1_score(labels, preds, average="micro", zero_division=0))


def _metrics(labels: np.ndarray, scores: np.ndarray, fixed: np.ndarray, tuned: np.ndarray | None) -> dict[str, float]:
    return {"map": average_precision_macro(labels, scores),
            "micro_f1": _micro_f1(labels, fixed),
            "micro_f1_tuned": _micro_f1(labels, tuned) if tuned is not None else float("nan")}


def point_metrics(labels: np.ndarray, scores: np.ndarray, thresholds: np.ndarray | None = None) -> dict[str, float]:
    """The :data:`BOOTSTRAP_METRICS` on the full set (equal to
    :func:`neuroposter.train.metrics.multilabel_metrics`'s ``map``, ``micro_f1``, ``micro_f1_tuned``)."""
    labels, scores, thresholds = _check(labels, scores, thresholds)
    fixed = (scores >= 0.5).astype(np.int64)
    tuned = None if thresholds is None else (scores >= thresholds).astype(np.int64)
    return _metrics(labels, scores, fixed, tuned)


@dataclass(frozen=True)
class BootstrapDistribution:
    """One model's metrics on the full test set and on each of the ``B`` resamples.

    Attributes:
        point: metric -> value on the full test set.
        samples: metric -> ``[B]`` values on the resamples (nan where undefined).
        labels: the ``[n, G]`` test labels (for the same-test-set check).
        n: test samples.
        B: resamples.
        seed: resampling seed.
    """

    point: dict[str, float]
    samples: dict[str, np.ndarray]
    labels: np.ndarray
    n: int
    B: int
    seed: int

    def interval(self, metric: str, level: float = 0.95) -> Interval:
        """The percentile interval of ``metric``."""
        return percentile_interval(self.samples[metric], self.point[metric], level)

    def intervals(self, level: float = 0.95) -> dict[str, Interval]:
        """Every metric's interval."""
        return {m: self.interval(m, level) for m in BOOTSTRAP_METRICS}


def bootstrap(labels: np.ndarray, scores: np.ndarray, thresholds: np.ndarray | None = None, *, B: int = 1000,
              seed: int = 0) -> BootstrapDistribution:
    """Resamples the test samples ``B`` times (seeded) and evaluates the :data:`BOOTSTRAP_METRICS` on each.

    Args:
        labels: ``[n, G]`` 0/1 test labels.
        scores: ``[n, G]`` probabilities (``predictions_test.npz`` stores sigmoid outputs).
        thresholds: ``[G]`` per-genre thresholds tuned on validation (None: ``micro_f1_tuned`` is nan).
        B: number of resamples.
        seed: resampling seed.
    """
    labels, scores, thresholds = _check(labels, scores, thresholds)
    fixed = (scores >= 0.5).astype(np.int64)
    tuned = None if thresholds is None else (scores >= thresholds).astype(np.int64)
    weights = resample_weights(resample_indices(len(labels), B, seed))
    out = {"map": weighted_ap_macro(labels, scores, weights),
           "micro_f1": weighted_micro_f1(labels, fixed, weights),
           "micro_f1_tuned": (weighted_micro_f1(labels, tuned, weights) if tuned is not None
                              else np.full(B, np.nan))}
    return BootstrapDistribution(_metrics(labels, scores, fixed, tuned), out, labels, len(labels), B, seed)


def resample_weights(idx: np.ndarray) -> np.ndarray:
    """``[B, n]`` multiplicities of each test sample in each resample (a resample as sample weights)."""
    B, n = idx.shape
    weights = np.zeros((B, n), dtype=np.float64)
    np.add.at(weights, (np.repeat(np.arange(B), n), idx.ravel()), 1.0)
    return weights


def weighted_micro_f1(labels: np.ndarray, preds: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Micro F1 (``zero_division=0``) of every resample at once; row ``b`` of ``weights`` is resample ``b``.

    Equal to sklearn's ``f1_score(labels[ix], preds[ix], average="micro", zero_division=0)`` on the expanded
    resample: the true/false positive and false negative counts are per-sample sums weighted by multiplicity.
    """
    y, p = np.asarray(labels) > 0, np.asarray(preds) > 0
    tp = weights @ (y & p).sum(axis=1)
    fp = weights @ (~y & p).sum(axis=1)
    fn = weights @ (y & ~p).sum(axis=1)
    den = 2 * tp + fp + fn
    return np.divide(2 * tp, den, out=np.zeros_like(den), where=den > 0)


def weighted_ap_macro(labels: np.ndarray, scores: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Macro average precision of every resample at once (genres without a positive in a resample left out).

    Per genre, samples are ranked once by score; a resample's AP is the multiplicity-weighted mean, over its
    positives, of the precision at the end of each positive's group of tied scores -- sklearn's
    ``average_precision_score`` step sum (recall increments times precision at each distinct threshold) on
    the expanded resample. ``nan`` where no genre has a positive.
    """
    labels, scores = np.asarray(labels) > 0, np.asarray(scores, dtype=np.float64)
    B, n = weights.shape
    total, count = np.zeros(B), np.zeros(B)
    for g in range(labels.shape[1]):
        order = np.argsort(-scores[:, g], kind="mergesort")
        s, y, w = scores[order, g], labels[order, g], weights[:, order]
        ends = np.flatnonzero(np.r_[s[1:] != s[:-1], True])          # last index of each tie group
        group_end = ends[np.searchsorted(ends, np.arange(n))]          # [n] -> end of its group
        cum_w, cum_tp = np.cumsum(w, axis=1), np.cumsum(w * y, axis=1)
        prec = np.divide(cum_tp[:, group_end], cum_w[:, group_end], out=np.zeros((B, n)),
                         where=cum_w[:, group_end] > 0)
        pos = w * y
        n_pos = pos.sum(axis=1)
        ok = n_pos > 0
        total[ok] += (pos * prec).sum(axis=1)[ok] / n_pos[ok]
        count[ok] += 1
    return np.divide(total, count, out=np.full(B, np.nan), where=count > 0)


def same_test_set(labels_a: np.ndarray, labels_b: np.ndarray) -> str | None:
    """None when both label matrices are identical (same test posters in the same order, as far as the labels
    can tell), else why not."""
    a, b = np.asarray(labels_a), np.asarray(labels_b)
    if a.shape != b.shape:
        return f"test labels differ in shape ({a.shape} vs {b.shape}): not the same test set"
    diff = int(np.any(a.astype(np.int64) != b.astype(np.int64), axis=1).sum()) if a.ndim == 2 else int(a.size)
    if diff:
        return (f"test labels differ on {diff} of {len(a)} samples: not the same test posters in the same order, "
                f"no paired difference")
    return None


@dataclass(frozen=True)
class PairedBootstrap:
    """The paired comparison of model A against model B (differences are A - B).

    Attributes:
        available: the test sets match and the resamples are shared, so ``diff`` is defined.
        reason: why not (empty when available).
        n: test samples (of A).
        B: resamples.
        seed: resampling seed.
        level: confidence level.
        a: A's own intervals (always given).
        b: B's own intervals (always given).
        diff: metric -> interval of A - B (empty when unavailable).
    """

    available: bool
    reason: str
    n: int
    B: int
    seed: int
    level: float
    a: dict[str, Interval]
    b: dict[str, Interval]
    diff: dict[str, Interval] = field(default_factory=dict)


def compare(dist_a: BootstrapDistribution, dist_b: BootstrapDistribution, level: float = 0.95) -> PairedBootstrap:
    """Paired difference A - B from two distributions; unavailable (with the reason) unless both were computed
    on identical test labels with the same ``B`` and ``seed``."""
    reason = same_test_set(dist_a.labels, dist_b.labels)
    if reason is None and (dist_a.B, dist_a.seed) != (dist_b.B, dist_b.seed):
        reason = (f"different resamples (B={dist_a.B}, seed={dist_a.seed} vs B={dist_b.B}, seed={dist_b.seed}): "
                  f"not paired")
    diff: dict[str, Interval] = {}
    if reason is None:
        for m in BOOTSTRAP_METRICS:
            diff[m] = percentile_interval(dist_a.samples[m] - dist_b.samples[m],
                                          dist_a.point[m] - dist_b.point[m], level)
    return PairedBootstrap(reason is None, reason or "", dist_a.n, dist_a.B, dist_a.seed, level,
                           dist_a.intervals(level), dist_b.intervals(level), diff)


def paired_bootstrap(labels_a: np.ndarray, scores_a: np.ndarray, labels_b: np.ndarray, scores_b: np.ndarray,
                     thresholds_a: np.ndarray | None = None, thresholds_b: np.ndarray | None = None, *,
                     B: int = 1000, seed: int = 0, level: float = 0.95) -> PairedBootstrap:
    """Paired bootstrap of model A vs model B over the test samples (same resamples for both).

    Returns:
        :class:`PairedBootstrap`; ``available`` is False (and ``diff`` empty) when the test labels differ.
    """
    return compare(bootstrap(labels_a, scores_a, thresholds_a, B=B, seed=seed),
                   bootstrap(labels_b, scores_b, thresholds_b, B=B, seed=seed), level)
