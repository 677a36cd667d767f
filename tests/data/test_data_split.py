"""Iterative-stratified splits: prevalence per split, disjointness, determinism."""

from __future__ import annotations

import numpy as np
import pytest

from neuroposter.data.split import check_fractions, check_split_size, split_sizes, stratified_split
from neuroposter.errors import DataError
from neuroposter.data.synth import synth_labels


@pytest.fixture(scope="module")
def labels() -> np.ndarray:
    return synth_labels(1000, np.random.default_rng(5)).astype(np.uint8)


def test_each_genre_prevalence_matches_the_whole(labels):
    split = stratified_split(labels, (0.7, 0.15, 0.15), seed=0)
    whole = labels.mean(0)
    for name, frac in (("train", 0.7), ("val", 0.15), ("test", 0.15)):
        part = labels[split == name]
        assert abs(len(part) / len(labels) - frac) < 0.02
        assert np.abs(part.mean(0) - whole).max() < 0.03, name


def test_stratified_beats_random_on_rare_genres():
    rng = np.random.default_rng(0)
    y = (rng.random((400, 6)) < [0.5, 0.3, 0.1, 0.05, 0.03, 0.02]).astype(np.uint8)
    split = stratified_split(y, (0.6, 0.2, 0.2), seed=1)
    for j in range(y.shape[1]):
        if y[:, j].sum() >= 6:  # every genre with a few examples reaches every split
            assert all(y[split == s, j].sum() > 0 for s in ("train", "val", "test"))


def test_split_is_a_partition_and_deterministic(labels):
    a = stratified_split(labels, (0.7, 0.15, 0.15), seed=3)
    b = stratified_split(labels, (0.7, 0.15, 0.15), seed=3)
    c = stratified_split(labels, (0.7, 0.15, 0.15), seed=4)
    assert set(np.unique(a)) == {"train", "val", "test"} and len(a) == len(labels)
    assert (a == b).all() and not (a == c).all()


def test_zero_val_or_test(labels):
    s = stratified_split(labels, (0.8, 0.2, 0.0), seed=0)
    assert set(np.unique(s)) == {"train", "val"}
    s = stratified_split(labels, (1.0, 0.0, 0.0), seed=0)
    assert set(np.unique(s)) == {"train"}


@pytest.mark.parametrize("bad", [(0.5, 0.2, 0.2), (0.7, 0.3), (0, 0.5, 0.5), (0.8, -0.1, 0.3), ("a", 1, 1)])
def test_bad_fractions(bad):
    with pytest.raises(ValueError):
        check_fractions(bad)


@pytest.mark.parametrize("fractions", [(0.7, 0.15, 0.15), (0.9, 0.05, 0.05), (0.98, 0.01, 0.01),
                                       (0.34, 0.33, 0.33), (0.5, 0.5, 0.0), (0.5, 0.0, 0.5), (0.99, 0.0, 0.01)])
@pytest.mark.parametrize("n", [3, 4, 5, 7, 11, 20])
def test_every_non_zero_fraction_gets_an_item(fractions, n):
    y = (np.random.default_rng(n).random((n, 4)) < 0.3).astype(np.uint8)
    for seed in range(3):
        s = stratified_split(y, fractions, seed=seed)
        for name, f in zip(("train", "val", "test"), fractions):
            assert ((s == name).sum() > 0) == (f > 0), (name, f, n, seed)
    sizes = split_sizes(n, fractions)
    assert sum(sizes.values()) == n
    assert all((sizes[k] > 0) == (f > 0) for k, f in zip(("train", "val", "test"), fractions))


def _old_split(y: np.ndarray, fractions, seed: int) -> np.ndarray:
    """The split before minimum sizes were enforced (datasets large enough must not change)."""
    from iterstrat.ml_stratifiers import MultilabelStratifiedShuffleSplit

    def two_way(lab, frac, sd):
        n = lab.shape[0]
        k = int(round(frac * n))
        sp = MultilabelStratifiedShuffleSplit(n_splits=1, test_size=k, train_size=n - k, random_state=sd)
        a, b = next(sp.split(np.zeros((n, 1)), lab))
        return np.sort(a), np.sort(b)

    tr, va, te = fractions
    out = np.full(y.shape[0], "train", dtype=object)
    _, rest = two_way(y, va + te, seed)
    v, t = two_way(y[rest], te / (va + te), seed + 1)
    out[rest[v]], out[rest[t]] = "val", "test"
    return out.astype(str)


@pytest.mark.parametrize("n, fractions, seed", [(1000, (0.7, 0.15, 0.15), 0), (48, (0.7, 0.15, 0.15), 0),
                                                (800, (0.7, 0.15, 0.15), 3), (37, (0.6, 0.2, 0.2), 1)])
def test_usual_splits_are_unchanged(labels, n, fractions, seed):
    y = labels[:n]
    assert (stratified_split(y, fractions, seed=seed) == _old_split(y, fractions, seed)).all()
    assert split_sizes(1000, (0.7, 0.15, 0.15)) == {"train": 700, "val": 150, "test": 150}


@pytest.mark.parametrize("n, fractions, need", [(1, (0.7, 0.15, 0.15), 3), (2, (0.7, 0.15, 0.15), 3),
                                                (2, (0.9, 0.05, 0.05), 3), (1, (0.5, 0.5, 0.0), 2),
                                                (0, (1.0, 0.0, 0.0), 1)])
def test_too_few_items_says_how_many_and_the_minimum(n, fractions, need):
    y = np.ones((n, 2), dtype=np.uint8)
    with pytest.raises(DataError) as exc:
        stratified_split(y, fractions, seed=0)
    msg = str(exc.value)
    noun = "poster" if n == 1 else "posters"
    assert msg.startswith(f"the dataset has {n} usable {noun}; splitting train/val/test ")
    assert msg.endswith(f"needs at least {need} (one per non-empty split)")
    with pytest.raises(DataError):
        check_split_size(n, fractions)
    check_split_size(need, fractions)


def test_minimum_is_enough():
    y = np.array([[1, 0], [0, 1], [1, 1]], dtype=np.uint8)
    assert sorted(stratified_split(y, (0.7, 0.15, 0.15), seed=0).tolist()) == ["test", "train", "val"]
    assert sorted(stratified_split(y[:2], (0.5, 0.0, 0.5), seed=0).tolist()) == ["test", "train"]


@pytest.mark.parametrize("bad", [(float("nan"), 0.5, 0.5), (float("inf"), 0, 0), (1.5, -0.25, -0.25)])
def test_non_finite_or_out_of_range_fractions(bad):
    with pytest.raises(ValueError):
        check_fractions(bad)
