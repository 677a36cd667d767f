"""Paired bootstrap over test samples: exact zero for identical models, a clear winner, seeding, unpaired sets."""

from __future__ import annotations

import numpy as np
import pytest

from neuroposter.train.bootstrap import (
    BOOTSTRAP_METRICS,
    bootstrap,
    compare,
    paired_bootstrap,
    point_metrics,
    resample_indices,
    same_test_set,
)
from neuroposter.train.metrics import multilabel_metrics

B = 200   # enough for these checks, quick on a shared CPU


def _data(n: int = 60, g: int = 5, seed: int = 0, noise: float = 0.3):
    rng = np.random.default_rng(seed)
    y = (rng.random((n, g)) < 0.35).astype(np.uint8)
    y[0] = 1                                              # every genre has a positive
    scores = np.clip(0.5 * y + 0.25 + rng.normal(0, noise, y.shape), 0, 1)
    return y, scores


def test_points_equal_multilabel_metrics() -> None:
    y, s = _data()
    t = np.linspace(0.3, 0.6, y.shape[1])
    full = multilabel_metrics(y, s, t)
    pm = point_metrics(y, s, t)
    for m in BOOTSTRAP_METRICS:
        assert pm[m] == pytest.approx(full[m], abs=1e-12)
    d = bootstrap(y, s, t, B=B, seed=0)
    assert d.point == pm and all(v.shape == (B,) for v in d.samples.values())
    # each resample's value is the metric of that resample
    ix = resample_indices(len(y), B, 0)[7]
    again = multilabel_metrics(y[ix], s[ix], t)
    for m in BOOTSTRAP_METRICS:
        assert d.samples[m][7] == pytest.approx(again[m], abs=1e-12)
    assert np.isnan(bootstrap(y, s, None, B=20).samples["micro_f1_tuned"]).all()


def test_identical_predictions_give_exactly_zero_difference() -> None:
    y, s = _data()
    t = np.full(y.shape[1], 0.45)
    res = paired_bootstrap(y, s, y.copy(), s.copy(), t, t, B=B, seed=3)
    assert res.available and res.reason == ""
    for m in BOOTSTRAP_METRICS:
        iv = res.diff[m]
        assert (iv.point, iv.low, iv.high) == (0.0, 0.0, 0.0)
        assert not iv.excludes_zero
        assert res.a[m] == res.b[m]                      # and each model's own interval is non-degenerate
        assert res.a[m].low < res.a[m].point < res.a[m].high


def test_clearly_better_model_excludes_zero() -> None:
    y, good = _data(n=120, noise=0.15, seed=1)
    rng = np.random.default_rng(5)
    bad = np.clip(0.5 + rng.normal(0, 0.25, y.shape), 0, 1)       # unrelated to the labels
    res = paired_bootstrap(y, good, y, bad, B=B, seed=0)
    for m in ("map", "micro_f1"):
        iv = res.diff[m]
        assert iv.point > 0 and iv.low > 0 and iv.excludes_zero, (m, iv)
        assert iv.low <= iv.point <= iv.high
    # the other way round: the interval lies below zero
    rev = paired_bootstrap(y, bad, y, good, B=B, seed=0)
    assert rev.diff["map"].high < 0 and rev.diff["map"].excludes_zero
    assert rev.diff["map"].low == pytest.approx(-res.diff["map"].high)
    assert np.isnan(res.diff["micro_f1_tuned"].low) and not res.diff["micro_f1_tuned"].available  # no thresholds


def test_seeded_reproducibility() -> None:
    y, s = _data()
    _, s2 = _data(seed=9)
    t = np.full(y.shape[1], 0.4)
    a = paired_bootstrap(y, s, y, s2, t, t, B=B, seed=42)
    b = paired_bootstrap(y, s, y, s2, t, t, B=B, seed=42)
    c = paired_bootstrap(y, s, y, s2, t, t, B=B, seed=43)
    assert a == b                                          # every interval (no nan here) identical
    assert a.diff["map"] != c.diff["map"]
    assert np.array_equal(resample_indices(60, 5, 1), resample_indices(60, 5, 1))


def test_mismatched_test_labels_are_unpaired() -> None:
    y, s = _data()
    y2 = y.copy()
    y2[[3, 4]] = y2[[4, 3]] if not np.array_equal(y[3], y[4]) else 1 - y2[[3, 4]]
    res = paired_bootstrap(y, s, y2, s, B=50, seed=0)
    assert not res.available and res.diff == {}
    assert "not the same test posters" in res.reason
    assert res.a["map"].available and res.b["map"].available      # each model's own interval is still given
    res = paired_bootstrap(y, s, y[:-1], s[:-1], B=50, seed=0)
    assert not res.available and "shape" in res.reason
    assert same_test_set(y, y.copy()) is None
    # same test set but different resamples: not paired either
    r = compare(bootstrap(y, s, B=50, seed=0), bootstrap(y, s, B=50, seed=1))
    assert not r.available and "different resamples" in r.reason


def test_bad_inputs_raise() -> None:
    y, s = _data()
    with pytest.raises(ValueError):
        bootstrap(y, s[:, :-1], B=10)
    with pytest.raises(ValueError):
        bootstrap(y, s, np.full(2, 0.5), B=10)
    with pytest.raises(ValueError):
        resample_indices(0, 10)


def test_vectorised_resample_metrics_equal_sklearn_on_the_expanded_resamples():
    from sklearn.metrics import f1_score

    from neuroposter.train.bootstrap import (resample_indices, resample_weights, weighted_ap_macro,
                                             weighted_micro_f1)
    from neuroposter.train.metrics import average_precision_macro

    rng = np.random.default_rng(3)
    n, G = 37, 6
    labels = (rng.random((n, G)) < 0.3).astype(int)
    labels[:, 5] = 0
    labels[0, 5] = 1                               # a rare genre: absent from many resamples
    scores = np.round(rng.random((n, G)), 1)       # coarse scores: many ties
    preds = (scores >= 0.5).astype(int)
    idx = resample_indices(n, 50, seed=7)
    w = resample_weights(idx)
    ap, f1 = weighted_ap_macro(labels, scores, w), weighted_micro_f1(labels, preds, w)
    for b, ix in enumerate(idx):
        assert ap[b] == pytest.approx(average_precision_macro(labels[ix], scores[ix]), abs=1e-12)
        assert f1[b] == pytest.approx(f1_score(labels[ix], preds[ix], average="micro", zero_division=0), abs=1e-12)
