"""Property tests (Hypothesis) for every registered spike encoder and the tonic bridge."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import array_shapes, arrays

from neuroposter.encode import (
    ENCODERS,
    events_to_spikes,
    pack_spikes,
    sample_events,
    spike_code,
    spikes_to_events,
    unpack_sample,
)

NAMES = ENCODERS.names()
FAST = settings(max_examples=30, deadline=None)

unit = st.floats(0.0, 1.0, width=32, allow_nan=False)
features = arrays(np.float32, array_shapes(min_dims=1, max_dims=3, min_side=1, max_side=6), elements=unit)
steps = st.integers(1, 8)
seeds = st.integers(0, 2**32 - 1)


def test_registry_lists_all_encoders():
    assert set(NAMES) == {"threshold", "multilevel", "rate", "latency", "delta"}
    with pytest.raises(KeyError, match="available: threshold"):
        ENCODERS.get("poisson")


@pytest.mark.parametrize("name", NAMES)
@FAST
@given(x=features, T=steps, seed=seeds)
def test_shape_dtype_binary_and_seeded(name, x, T, seed):
    fn = ENCODERS.get(name)
    s = fn(x, T, seed=seed)
    assert s.shape == (T, *x.shape) and s.dtype == np.uint8
    assert set(np.unique(s)) <= {0, 1}
    np.testing.assert_array_equal(s, fn(x.copy(), T, seed=seed))


@pytest.mark.parametrize("name", NAMES)
@FAST
@given(shape=array_shapes(min_dims=1, max_dims=3, max_side=6), T=steps, seed=seeds)
def test_zero_input_gives_no_spikes(name, shape, T, seed):
    assert ENCODERS.get(name)(np.zeros(shape, np.float32), T, seed=seed).sum() == 0


@pytest.mark.parametrize("name", NAMES)
@FAST
@given(x=features, T=steps, seed=seeds, a=st.floats(0.0, 1.0), b=st.floats(0.0, 1.0))
def test_spike_count_is_monotone_in_intensity(name, x, T, seed, a, b):
    lo, hi = sorted((a, b))
    fn = ENCODERS.get(name)
    n_lo = fn((x * lo).astype(np.float32), T, seed=seed).sum()
    n_hi = fn((x * hi).astype(np.float32), T, seed=seed).sum()
    assert n_lo <= n_hi


@pytest.mark.parametrize("name", NAMES)
@FAST
@given(x=features, T=steps)
def test_inputs_outside_unit_interval_are_clipped(name, x, T):
    fn = ENCODERS.get(name)
    wild = (x * 4.0 - 1.5).astype(np.float32)
    np.testing.assert_array_equal(fn(wild, T, seed=3), fn(np.clip(wild, 0, 1), T, seed=3))


@pytest.mark.parametrize("name", NAMES)
def test_nan_and_bad_T_are_rejected(name):
    fn = ENCODERS.get(name)
    with pytest.raises(ValueError, match="NaN"):
        fn(np.array([0.1, np.nan], np.float32), 4)
    with pytest.raises(ValueError, match="T must be"):
        fn(np.zeros(3, np.float32), 0)


@pytest.mark.parametrize("name", NAMES)
@FAST
@given(x=arrays(np.float32, st.tuples(st.integers(1, 20)), elements=unit), T=steps, seed=seeds)
def test_events_dense_round_trip_through_tonic(name, x, T, seed):
    spikes = ENCODERS.get(name)(x, T, seed=seed)  # [T, D]
    ev = spikes_to_events(spikes)
    assert set(ev.dtype.names) == {"t", "x", "p"} and np.all(np.diff(ev["t"]) >= 0)
    assert len(ev) == int(spikes.sum())
    back = events_to_spikes(ev, x.shape[0], T)
    np.testing.assert_array_equal(back, spikes)
    assert np.all(ev["p"] == 1)  # the bridge passed ToFrame a copy


@FAST
@given(s=arrays(np.uint8, st.tuples(st.integers(1, 5), st.integers(1, 4), st.integers(1, 3), st.integers(1, 9)),
                elements=st.integers(0, 1)))
def test_csr_pack_unpack_and_per_token_tonic_events_are_exact(s):
    T, B, N, D = s.shape
    x, counts = pack_spikes(s)
    offsets = np.concatenate([[0], np.cumsum(counts)])
    for b in range(B):
        np.testing.assert_array_equal(unpack_sample(x, offsets, b, N, T, D), s[:, b])
        for n in range(N):
            np.testing.assert_array_equal(events_to_spikes(sample_events(x, offsets, b, n, N, T), D, T), s[:, b, n])


def test_rate_is_bernoulli_with_probability_x():
    x = np.full(4000, 0.3, np.float32)
    assert abs(ENCODERS.get("rate")(x, 10, seed=0).mean() - 0.3) < 0.01


def test_multilevel_is_a_thermometer_code():
    x = np.array([0.0, 0.1, 0.3, 0.6, 0.9, 1.0], np.float32)
    s = ENCODERS.get("multilevel")(x, 4)  # levels 0, .25, .5, .75
    np.testing.assert_array_equal(s.sum(0), [0, 1, 2, 3, 4, 4])
    assert np.all(np.diff(s.astype(int), axis=0) <= 0)  # spikes are a prefix of the steps


def test_latency_fires_once_earlier_for_stronger_inputs():
    x = np.array([0.0, 0.05, 0.5, 1.0], np.float32)
    s = ENCODERS.get("latency")(x, 4)
    np.testing.assert_array_equal(s.sum(0), [0, 1, 1, 1])
    np.testing.assert_array_equal(s.argmax(0)[1:], [3, 2, 0])
    np.testing.assert_array_equal(spike_code(s, "latency"), [0, 1, 2, 4])


def test_delta_tracks_the_running_sum_over_tokens():
    rng = np.random.default_rng(0)
    x = rng.random((12, 5)).astype(np.float32)  # [N, D]
    s = ENCODERS.get("delta")(x, 3)
    counts = s.sum(0).cumsum(0)  # running count over tokens
    assert np.all(np.abs(counts - (3 * x).cumsum(0)) <= 0.5 + 1e-6)
    # a batch [B, N, D] equals encoding each sample on its own
    xb = rng.random((2, 4, 3)).astype(np.float32)
    sb = ENCODERS.get("delta")(xb, 2)
    for i in range(2):
        np.testing.assert_array_equal(sb[:, i], ENCODERS.get("delta")(xb[i], 2))
