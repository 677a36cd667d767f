"""Metrics, thresholds and constant baselines on hand-checkable inputs."""

from __future__ import annotations

import numpy as np
import pytest

from neuroposter.train.losses import pos_weight_from_labels
from neuroposter.train.metrics import METRIC_KEYS, constant_baselines, multilabel_metrics, tune_thresholds


def test_perfect_and_constant_predictors() -> None:
    y = np.array([[1, 0, 0], [1, 1, 0], [0, 1, 1], [1, 0, 0]])
    perfect = multilabel_metrics(y, y * 0.9 + 0.05)
    assert set(perfect) == set(METRIC_KEYS)
    assert perfect["micro_f1"] == perfect["macro_f1"] == perfect["samples_f1"] == 1.0
    assert perfect["map"] == 1.0 and perfect["hamming"] == 0.0 and perfect["p_at_1"] == 1.0

    base = constant_baselines(y, y)
    assert list(base) == ["most_frequent", "top2_frequent", "top3_frequent", "predict_nothing"]
    nothing = base["predict_nothing"]
    assert nothing["micro_f1"] == 0.0 and nothing["samples_f1"] == 0.0
    assert nothing["hamming"] == pytest.approx(y.mean())            # low by construction: not an accuracy
    mf = base["most_frequent"]                                        # genre 0 (3 of 4)
    assert mf["p_at_1"] == pytest.approx(0.75)
    assert mf["micro_f1"] == pytest.approx(2 * 3 / (4 + 6))          # tp 3, predicted 4, true 6
    # a constant scorer has AP = prevalence for every genre
    assert mf["map"] == pytest.approx(y.mean(axis=0).mean())
    assert mf["micro_f1_tuned"] == mf["micro_f1"]


def test_thresholds_tuned_on_validation_raise_f1() -> None:
    rng = np.random.default_rng(0)
    y = (rng.random((200, 3)) < 0.3).astype(int)
    scores = np.clip(0.15 + 0.2 * y + rng.normal(0, 0.05, y.shape), 0, 1)   # positives around 0.35 < 0.5
    t = tune_thresholds(y, scores)
    assert t.shape == (3,) and np.all((t > 0) & (t < 0.5))
    m = multilabel_metrics(y, scores, t)
    assert m["micro_f1"] == 0.0 and m["micro_f1_tuned"] > 0.8
    # a genre without positives keeps 0.5
    assert tune_thresholds(np.zeros((5, 1)), np.full((5, 1), 0.9))[0] == 0.5


def test_pos_weight_is_neg_over_pos_clipped() -> None:
    y = np.array([[1, 0, 1], [0, 0, 1], [0, 0, 1], [0, 0, 0]])
    w = pos_weight_from_labels(y, max_weight=10.0)
    assert w.tolist() == [3.0, 10.0, 1.0]
