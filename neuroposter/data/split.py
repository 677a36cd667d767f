"""Deterministic iterative-stratified train/val/test splits of a multi-label dataset.

Uses ``iterstrat.ml_stratifiers.MultilabelStratifiedShuffleSplit`` (Sechidis et al. 2011) twice:
train vs the rest, then the rest into val and test, so every genre keeps about the same
prevalence in all three splits.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from neuroposter.errors import DataError

__all__ = ["SPLITS", "check_fractions", "check_split_size", "split_sizes", "stratified_split"]

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


def _fractions_text(fr: Sequence[float]) -> str:
    return "/".join(f"{f:g}" for f in fr)


def check_split_size(n: int, fractions: Sequence[float], what: str = "usable posters") -> None:
    """Refuses a dataset too small to give every non-zero split fraction at least one item.

    Raises:
        ValueError: bad fractions.
        DataError: fewer items than non-empty splits; the message says how many there are and
            the minimum needed.
    """
    fr = check_fractions(fractions)
    need = sum(1 for f in fr if f > 0)
    if n < need:
        noun = what[:-1] if n == 1 and what.endswith("s") else what
        raise DataError(f"the dataset has {n} {noun}; splitting {'/'.join(SPLITS)} {_fractions_text(fr)} "
                        f"needs at least {need} (one per non-empty split)")


def split_sizes(n: int, fractions: Sequence[float]) -> dict[str, int]:
    """The target size of each split for ``n`` items (what :func:`stratified_split` aims at).

    Every non-zero fraction gets at least one item (the rounding of ``fraction x n`` is moved
    towards train's share when it would leave a split empty).

    Raises:
        ValueError: bad fractions.
        DataError: ``n`` is below the number of non-empty splits.
    """
    train_f, val_f, test_f = check_fractions(fractions)
    check_split_size(n, (train_f, val_f, test_f))
    rest_f = val_f + test_f
    if rest_f == 0:
        return {"train": n, "val": 0, "test": 0}
    n_rest = _rest_size(n, rest_f, (val_f > 0) + (test_f > 0))
    if val_f == 0 or test_f == 0:
        return {"train": n - n_rest, "val": n_rest if test_f == 0 else 0, "test": n_rest if val_f == 0 else 0}
    n_test = _rest_size(n_rest, test_f / rest_f, 1)
    return {"train": n - n_rest, "val": n_rest - n_test, "test": n_test}


def _rest_size(n: int, frac: float, at_least: int) -> int:
    """``round(frac x n)`` kept in ``[at_least, n - 1]`` (both sides non-empty)."""
    return min(max(int(round(frac * n)), at_least), n - 1)


def _two_way(labels: np.ndarray, n_b: int, seed: int, min_b: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """Splits rows into ``a`` (``n - n_b`` rows) and ``b`` (``n_b`` rows), stratified.

    The stratifier does not always return the exact sizes asked for; a side left with fewer than
    its minimum (``a``: 1, ``b``: ``min_b``) gets rows moved over from the other side.
    """
    from iterstrat.ml_stratifiers import MultilabelStratifiedShuffleSplit

    n = labels.shape[0]
    if not 0 < n_b < n:
        raise DataError(f"cannot split {n} items into {n - n_b} and {n_b}: too few items")
    splitter = MultilabelStratifiedShuffleSplit(n_splits=1, test_size=n_b, train_size=n - n_b,
                                                random_state=seed)
    a, b = next(splitter.split(np.zeros((n, 1)), labels))
    a, b = np.sort(a), np.sort(b)
    rng = np.random.default_rng(seed)
    while len(b) < min_b and len(a) > 1:
        k = int(rng.integers(len(a)))
        a, b = np.delete(a, k), np.sort(np.append(b, a[k]))
    while len(a) < 1 and len(b) > min_b:
        k = int(rng.integers(len(b)))
        a, b = np.sort(np.append(a, b[k])), np.delete(b, k)
    return a, b


def stratified_split(labels: np.ndarray, fractions: Sequence[float] = (0.7, 0.15, 0.15),
                     seed: int = 0) -> np.ndarray:
    """Assigns every row of a multi-hot matrix to ``train``, ``val`` or ``test``.

    Args:
        labels: ``[N, G]`` multi-hot matrix (any integer or bool dtype).
        fractions: ``(train, val, test)`` fractions summing to 1; val or test may be 0.
        seed: random seed; the same labels, fractions and seed give the same split.

    Returns:
        An ``[N]`` array of split names (``"train"``, ``"val"``, ``"test"``).

    Every non-zero fraction gets at least one item.

    Raises:
        ValueError: bad fractions.
        DataError: fewer items than non-empty splits (the message says how many are needed).
    """
    train_f, val_f, test_f = check_fractions(fractions)
    labels = np.asarray(labels).astype(np.uint8, copy=False)
    if labels.ndim != 2:
        raise ValueError(f"labels must be [N, G], got shape {labels.shape}")
    n = labels.shape[0]
    check_split_size(n, (train_f, val_f, test_f))
    out = np.full(n, "train", dtype=object)
    rest_f = val_f + test_f
    if rest_f == 0:
        return out.astype(str)
    k_rest = (val_f > 0) + (test_f > 0)
    _, rest = _two_way(labels, _rest_size(n, rest_f, k_rest), seed, min_b=k_rest)
    if val_f == 0 or test_f == 0:
        out[rest] = "val" if test_f == 0 else "test"
        return out.astype(str)
    v, t = _two_way(labels[rest], _rest_size(len(rest), test_f / rest_f, 1), seed + 1)
    out[rest[v]] = "val"
    out[rest[t]] = "test"
    return out.astype(str)
