"""Deterministic iterative-stratified train/val/test splits of a multi-label dataset.

Uses ``iterstrat.ml_stratifiers.MultilabelStratifiedShuffleSplit`` (Sechidis et al. 2011) twice:
train vs the rest, then the rest into val and test, so every genre keeps about the same
prevalence in all three splits.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from neuroposter.errors import DataError

__all__ = ["SPLITS", "check_fractions", "stratified_split"]

SPLITS: tuple[str, ...] = ("train", "val", "test")


def check_fractions(fractions: Sequence[float]) -> tuple[float, float, float]:
    """Validates ``(train, val, test)`` fractions: three numbers >= 0, train > 0, sum 1.

    Raises:
        ValueError: the fractions are unusable; the message says why.
    """
    try:
        fr = tuple(float(f) for f in fractions)
    except (TypeError, ValueError):
        raise ValueError(f"split fractions must be three numbers, got {fractions!r}") from None
    if len(fr) != 3:
        raise ValueError(f"split needs three fractions (train val test), got {len(fr)}")
    if any(not np.isfinite(f) or f < 0 for f in fr) or fr[0] <= 0:
        raise ValueError(f"split fractions must be >= 0 with train > 0, got {list(fr)}")
    if abs(sum(fr) - 1.0) > 1e-6:
        raise ValueError(f"split fractions must sum to 1, got {list(fr)} (sum {sum(fr):g})")
    return fr  # type: ignore[return-value]


def _two_way(labels: np.ndarray, test_frac: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    from iterstrat.ml_stratifiers import MultilabelStratifiedShuffleSplit

    n = labels.shape[0]
    n_test = int(round(test_frac * n))
    if n_test == 0 or n_test == n:
        raise DataError(f"cannot split {n} items with fraction {test_frac:g}: too few items")
    splitter = MultilabelStratifiedShuffleSplit(n_splits=1, test_size=n_test, train_size=n - n_test,
                                                random_state=seed)
    a, b = next(splitter.split(np.zeros((n, 1)), labels))
    return np.sort(a), np.sort(b)


def stratified_split(labels: np.ndarray, fractions: Sequence[float] = (0.7, 0.15, 0.15),
                     seed: int = 0) -> np.ndarray:
    """Assigns every row of a multi-hot matrix to ``train``, ``val`` or ``test``.

    Args:
        labels: ``[N, G]`` multi-hot matrix (any integer or bool dtype).
        fractions: ``(train, val, test)`` fractions summing to 1; val or test may be 0.
        seed: random seed; the same labels, fractions and seed give the same split.

    Returns:
        An ``[N]`` array of split names (``"train"``, ``"val"``, ``"test"``).

    Raises:
        ValueError: bad fractions.
        DataError: too few items for the requested split.
    """
    train_f, val_f, test_f = check_fractions(fractions)
    labels = np.asarray(labels).astype(np.uint8, copy=False)
    if labels.ndim != 2:
        raise ValueError(f"labels must be [N, G], got shape {labels.shape}")
    n = labels.shape[0]
    out = np.full(n, "train", dtype=object)
    rest_f = val_f + test_f
    if rest_f == 0:
        return out.astype(str)
    _, rest = _two_way(labels, rest_f, seed)
    if val_f == 0 or test_f == 0:
        out[rest] = "val" if test_f == 0 else "test"
        return out.astype(str)
    v, t = _two_way(labels[rest], test_f / rest_f, seed + 1)
    out[rest[v]] = "val"
    out[rest[t]] = "test"
    return out.astype(str)
