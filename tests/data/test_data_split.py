"""Iterative-stratified splits: prevalence per split, disjointness, determinism."""

from __future__ import annotations

import numpy as np
import pytest

from neuroposter.data.split import check_fractions, stratified_split
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
