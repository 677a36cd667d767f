"""The train-fitted normalisation and thresholds; saving and loading encoders."""

from __future__ import annotations

import json

import numpy as np
import pytest

from neuroposter.encode import ENCODERS, Normalizer, SpikeEncoder, fit_params


@pytest.fixture
def heavy_tailed(rng):
    x = rng.lognormal(0.0, 1.5, size=(500, 8)) * (rng.random((500, 8)) < 0.5)
    x[:, 7] = 0.0  # a dead feature
    return x.astype(np.float32)


def test_normalizer_maps_zero_to_zero_and_into_unit_interval(heavy_tailed):
    norm = Normalizer.fit(heavy_tailed)
    u = norm(heavy_tailed)
    assert u.dtype == np.float32 and u.min() >= 0 and u.max() <= 1
    assert np.all(u[heavy_tailed == 0] == 0)
    assert norm.scale[7] == 1.0  # dead feature: unit scale
    # robust: about 1 % of the active training values saturate, not half of them
    assert 0.0 < (u[:, :7] == 1).mean() < 0.02
    # unseen larger values clip to 1
    assert norm(heavy_tailed.max(0, keepdims=True) * 100)[0, :7].tolist() == [1.0] * 7
    with pytest.raises(ValueError, match="channels"):
        norm(np.zeros((2, 3)))


@pytest.mark.parametrize("per_feature", [True, False])
def test_multilevel_levels_are_ascending_and_start_at_zero(heavy_tailed, per_feature):
    u = Normalizer.fit(heavy_tailed)(heavy_tailed)
    lv = fit_params("multilevel", 4, u, per_feature=per_feature)["levels"]
    assert lv.shape == ((4, 8) if per_feature else (4,))
    assert np.all(lv[0] == 0) and np.all(np.diff(lv, axis=0) >= 0)
    # equal-frequency over active values: the codes 1..T are used about equally often
    s = ENCODERS.get("multilevel")(u, 4, levels=lv)
    counts = np.bincount(s.sum(0, dtype=np.int64)[:, 0], minlength=5)[1:]
    assert counts.min() > 0.5 * counts.max()


def test_threshold_is_fitted_per_feature(heavy_tailed):
    u = Normalizer.fit(heavy_tailed)(heavy_tailed)
    theta = fit_params("threshold", 1, u, quantile=0.5)["theta"]
    assert theta.shape == (8,) and theta[7] == 0
    active = u[:, 0][u[:, 0] > 0]
    assert abs((active > theta[0]).mean() - 0.5) < 0.05


@pytest.mark.parametrize("name", ENCODERS.names())
def test_encoder_fit_save_load_roundtrip(tmp_path, heavy_tailed, name):
    enc = SpikeEncoder(name, 4).fit(heavy_tailed[:300])
    assert enc.fitted
    enc.save(tmp_path)
    meta = json.loads((tmp_path / "encoder.json").read_text())
    assert meta["name"] == name and meta["T"] == 4
    with np.load(tmp_path / "encoder.npz", allow_pickle=False) as z:  # no pickle anywhere
        assert "normalizer.scale" in z.files
    again = SpikeEncoder.load(tmp_path)
    test = heavy_tailed[300:]
    np.testing.assert_array_equal(again.encode(test, seed=5), enc.encode(test, seed=5))
    assert again.bits_per_feature == enc.bits_per_feature


def test_unfitted_and_unknown_encoders():
    with pytest.raises(ValueError, match="not fitted"):
        SpikeEncoder("rate", 4).encode(np.zeros(3))
    with pytest.raises(KeyError, match="available"):
        SpikeEncoder("nope", 4)
    with pytest.raises(ValueError, match="T must be"):
        SpikeEncoder("rate", 0)
    assert SpikeEncoder("threshold", 8).bits_per_feature == 1.0
    assert SpikeEncoder("multilevel", 3).bits_per_feature == 2.0
