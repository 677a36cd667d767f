"""The shared agreement metrics: hand-computed cases and properties (one name, one meaning)."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from neuroposter.targets.verify import (compare, label_agreement, micro_f1, prediction_agreement, spike_agreement,
                                        top1_agreement)


def test_hand_computed_prediction_metrics():
    a = np.array([[2.0, -1.0, 0.5], [1.0, 3.0, -2.0]])   # sample 0: top1 0, {0, 2}; sample 1: top1 1, {0, 1}
    b = np.array([[2.0, -1.0, -0.5], [0.5, 3.0, -2.0]])  # sample 0: top1 0, {0};    sample 1: top1 1, {0, 1}
    assert prediction_agreement(a, b) == 0.5       # only sample 1 has the same set and top-1
    assert label_agreement(a, b) == 5 / 6          # one of six decisions differs
    assert top1_agreement(a, b) == 1.0
    out = compare(a, b, labels=np.array([[1, 0, 1], [0, 1, 0]]))
    assert out["max_abs_logit_diff"] == 1.0
    # deployed: tp 3 (0/0, 0/2, 1/1), fp 1 (1/0), fn 0 -> 6/7; reference: tp 2, fp 1, fn 1 -> 4/6
    assert out["micro_f1"]["deployed"] == pytest.approx(6 / 7)
    assert out["micro_f1"]["reference"] == pytest.approx(4 / 6)
    assert out["micro_f1"]["diff"] == pytest.approx(6 / 7 - 4 / 6)
    assert out["samples"] == 2


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
    for f in (prediction_agreement, label_agreement, top1_agreement):
        assert f(a, a) == 1.0
        assert f(a, b) == f(b, a)
        assert 0.0 <= f(a, b) <= 1.0
    # the strict per-sample agreement never exceeds the top-1 agreement, and a sample that agrees agrees on
    # every label
    assert prediction_agreement(a, b) <= top1_agreement(a, b)
    assert prediction_agreement(a, b) <= label_agreement(a, b) + 1e-12
