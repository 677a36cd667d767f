"""The shared agreement metrics: hand-computed cases and properties (one name, one meaning)."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from neuroposter.targets.verify import (agreement_line, average_precision, compare, float_model_logits,
                                        label_agreement, micro_f1, per_label_agreement, prediction_agreement,
                                        set_agreement, spike_agreement, top1_agreement)


def test_hand_computed_prediction_metrics():
    a = np.array([[2.0, -1.0, 0.5], [1.0, 3.0, -2.0]])   # sample 0: top1 0, {0, 2}; sample 1: top1 1, {0, 1}
    b = np.array([[2.0, -1.0, -0.5], [0.5, 3.0, -2.0]])  # sample 0: top1 0, {0};    sample 1: top1 1, {0, 1}
    assert prediction_agreement(a, b) == 0.5       # only sample 1 has the same set and top-1
    assert set_agreement(a, b) == 0.5              # sample 0's genre set differs ({0, 2} vs {0})
    assert label_agreement(a, b) == 5 / 6          # one of six decisions differs
    assert top1_agreement(a, b) == 1.0
    assert per_label_agreement(a, b).tolist() == [1.0, 1.0, 0.5]
    out = compare(a, b, labels=np.array([[1, 0, 1], [0, 1, 0]]))
    assert out["max_abs_logit_diff"] == 1.0
    # deployed: tp 3 (0/0, 0/2, 1/1), fp 1 (1/0), fn 0 -> 6/7; reference: tp 2, fp 1, fn 1 -> 4/6
    assert out["micro_f1"]["deployed"] == pytest.approx(6 / 7)
    assert out["micro_f1"]["reference"] == pytest.approx(4 / 6)
    assert out["micro_f1"]["diff"] == pytest.approx(6 / 7 - 4 / 6)
    assert out["samples"] == 2
    assert out["per_label_agreement"] == {"0": 1.0, "1": 1.0, "2": 0.5}
    assert compare(a, b, genres=["Drama", "Comedy", "Horror"])["per_label_agreement"]["Horror"] == 0.5
    # mAP: each genre has one positive, which both rank first (genre 0: 2.0 > 1.0 and 2.0 > 0.5; genre 1:
    # 3.0 > -1.0; genre 2: 0.5 > -2.0 and -0.5 > -2.0) -> every AP 1
    assert out["map"] == {"deployed": 1.0, "reference": 1.0, "diff": 0.0}
    assert "intervals" not in out                  # no resamples asked for


def test_set_and_top1_agreement_differ_where_they_should():
    # same genre set, other top-1 (both positive, order swapped); and same top-1, other set
    a = np.array([[2.0, 1.0, -1.0], [3.0, -1.0, -1.0]])
    b = np.array([[1.0, 2.0, -1.0], [3.0, 0.5, -1.0]])
    assert set_agreement(a, b) == 0.5 and top1_agreement(a, b) == 0.5 and prediction_agreement(a, b) == 0.0


def test_average_precision_hand_computed():
    scores = np.array([[0.9, 0.1], [0.8, 0.7], [0.1, 0.2]])
    labels = np.array([[1, 0], [0, 1], [1, 0]])
    # genre 0: ranking 0 (pos), 1 (neg), 2 (pos): precisions at the positives 1/1 and 2/3 -> AP 5/6;
    # genre 1: sample 1 ranked first and positive -> AP 1
    assert average_precision(scores, labels) == pytest.approx((5 / 6 + 1.0) / 2)
    assert np.isnan(average_precision(scores, np.zeros_like(labels)))   # no positive anywhere: undefined
    out = compare(scores, scores, labels=np.zeros_like(labels))
    assert out["map"] == {"deployed": None, "reference": None, "diff": None}


def _pair(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    a = rng.normal(size=(n, 4))
    b = a + 0.5 * rng.normal(size=(n, 4))          # a deployed network that disagrees now and then
    return a, b, (rng.random((n, 4)) < 0.4).astype(np.uint8)


def test_bootstrap_intervals_contain_the_point_and_shrink_with_n():
    widths = []
    for n in (40, 640):
        a, b, y = _pair(n)
        out = compare(a, b, labels=y, resamples=400, seed=0)
        iv = out["intervals"]
        assert out["bootstrap"] == {"resamples": 400, "seed": 0, "level": 0.95,
                                    "over": "samples, with replacement (the networks held fixed)"}
        for k in ("top1_agreement", "set_agreement", "prediction_agreement", "label_agreement"):
            assert iv[k][0] <= out[k] <= iv[k][1], k
        for g, v in out["per_label_agreement"].items():
            assert iv["per_label_agreement"][g][0] <= v <= iv["per_label_agreement"][g][1]
        for k in ("deployed", "reference", "diff"):
            assert iv["micro_f1"][k][0] <= out["micro_f1"][k] <= iv["micro_f1"][k][1]
            assert iv["map"][k][0] < iv["map"][k][1]
        widths.append(iv["set_agreement"][1] - iv["set_agreement"][0])
        assert compare(a, b, labels=y, resamples=400, seed=0)["intervals"] == iv      # seeded
    assert widths[1] < widths[0] / 2               # ~1/sqrt(n): 16x the samples, a quarter of the width


def test_bootstrap_of_identical_networks_is_a_point():
    a, _, y = _pair(30)
    out = compare(a, a.copy(), labels=y, resamples=200)
    assert out["intervals"]["set_agreement"] == [1.0, 1.0] and out["intervals"]["micro_f1"]["diff"] == [0.0, 0.0]
    assert out["intervals"]["map"]["diff"] == [0.0, 0.0]
    line = agreement_line(out, "deployed vs trained")
    assert "identical genre set 1.000 [1.000, 1.000]" in line and "95 % bootstrap intervals" in line


def test_bootstrap_matches_explicit_resampling():
    """The vectorised intervals equal the percentiles of the metrics recomputed on explicit resamples."""
    from neuroposter.train.bootstrap import resample_indices

    a, b, y = _pair(25, seed=3)
    out = compare(a, b, labels=y, resamples=300, seed=7)
    idx = resample_indices(25, 300, 7)
    sets = [set_agreement(a[i], b[i]) for i in idx]
    f1 = [micro_f1(a[i] > 0, y[i]) - micro_f1(b[i] > 0, y[i]) for i in idx]
    assert out["intervals"]["set_agreement"] == pytest.approx(np.percentile(sets, [2.5, 97.5]).tolist())
    assert out["intervals"]["micro_f1"]["diff"] == pytest.approx(np.percentile(f1, [2.5, 97.5]).tolist())


def test_float_model_logits_in_chunks_equals_one_forward():
    import torch

    torch.manual_seed(0)
    lin = torch.nn.Linear(6, 3)
    model = lambda x: lin(x.flatten(2))                                   # [T, B, N, D] -> [T, B, 3]
    x = (np.random.default_rng(0).random((2, 150, 2, 3)) < 0.5).astype(np.uint8)
    got = float_model_logits(model, x)
    with torch.no_grad():
        want = lin(torch.as_tensor(x, dtype=torch.float32).flatten(2)).numpy()
    assert got.shape == (2, 150, 3) and got.dtype == np.float64
    np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-6)


def test_spike_agreement_pooled_and_per_layer():
    a = {"l1": np.array([[1, 0, 1, 1]]), "l2": np.array([1, 1]), "only_a": np.zeros(3)}
    b = {"l1": np.array([1, 0, 0, 1]), "l2": np.array([[1.0], [1.0]])}   # shapes differ, sizes match
    out = spike_agreement(a, b)
    assert out["spike_agreement_per_layer"] == {"l1": 0.75, "l2": 1.0}
    assert out["spike_agreement"] == 5 / 6          # pooled over elements, not a mean of layers
    assert out["spike_agreement_min"] == 0.75
    empty = spike_agreement({}, {})
    assert empty == {"spike_agreement": 1.0, "spike_agreement_min": None, "spike_agreement_per_layer": {}}


def test_micro_f1_empty_is_zero():
    assert micro_f1(np.zeros((2, 3), bool), np.zeros((2, 3))) == 0.0


logits = arrays(np.float64, st.tuples(st.integers(1, 6), st.integers(1, 5)),
                elements=st.floats(-4, 4, allow_nan=False).map(lambda v: round(v, 1)))


@settings(max_examples=60, deadline=None)
@given(logits, st.data())
def test_metric_properties(a, data):
    b = data.draw(arrays(np.float64, a.shape, elements=st.floats(-4, 4, allow_nan=False).map(lambda v: round(v, 1))))
    for f in (prediction_agreement, set_agreement, label_agreement, top1_agreement):
        assert f(a, a) == 1.0
        assert f(a, b) == f(b, a)
        assert 0.0 <= f(a, b) <= 1.0
    # the strict per-sample agreement never exceeds the top-1 or the genre-set agreement, and a sample that agrees
    # agrees on every label
    assert prediction_agreement(a, b) <= min(top1_agreement(a, b), set_agreement(a, b))
    assert set_agreement(a, b) <= label_agreement(a, b) + 1e-12
    assert np.mean(per_label_agreement(a, b)) == pytest.approx(label_agreement(a, b))
