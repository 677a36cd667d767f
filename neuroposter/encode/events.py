"""Spikes <-> events: the tonic bridge and the sparse on-disk codec.

tonic view: the spikes of one token are events of a 1-D sensor of size ``D`` (as tonic's SHD
dataset does, ``sensor_size=(D, 1, 1)``): a structured array with fields ``t`` (time step), ``x``
(feature) and ``p`` (polarity, always 1), sorted by time. Back to a dense raster with
``tonic.transforms.ToFrame(sensor_size=(D, 1, 1), time_window=1, start_time=0, end_time=T)``, which is
exact including trailing silent steps. Two tonic quirks are handled here: ``ToFrame`` overwrites
``events["p"]`` in place for a single-polarity sensor (so it gets a copy), and for an *empty* event
array it returns a frame of the wrong shape (so empty trains are short-cut to zeros).
``n_time_bins`` is never used: its bins are anchored at the first event and are not exact.

On disk (``events_<split>/``), all events of a split are stored sparsely in CSR form over
(sample, token, step): ``x.npy`` holds the feature index of every event and ``offsets.npy``
(``[B * N * T + 1]``) where each (sample ``b``, token ``n``, step ``t``) run starts, at position
``(b * N + n) * T + t``. Time and token are implied by the position, and every stored event is a
spike (``p = 1``), so one event costs 2 bytes (``uint16`` features for ``D <= 65536``).
"""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = [
    "EVENT_DTYPE",
    "spikes_to_events",
    "events_to_spikes",
    "pack_spikes",
    "unpack_sample",
    "sample_events",
]

EVENT_DTYPE = np.dtype([("t", "<i8"), ("x", "<i4"), ("p", "<i1")])


def spikes_to_events(spikes: np.ndarray) -> np.ndarray:
    """A dense spike raster ``[T, D]`` (one token) -> tonic events (``t, x, p``), time-sorted.

    Raises:
        ValueError: not a 2-D raster.
    """
    spikes = np.asarray(spikes)
    if spikes.ndim != 2:
        raise ValueError(f"expected a [T, D] raster, got shape {spikes.shape}")
    t, x = np.nonzero(spikes)  # row-major: sorted by t, then x
    import tonic

    return tonic.io.make_structured_array(t.astype(np.int64), x.astype(np.int32), np.ones(len(t), np.int8),
                                          dtype=EVENT_DTYPE)


def events_to_spikes(events: np.ndarray, dim: int, T: int) -> np.ndarray:
    """tonic events of one token -> dense uint8 ``[T, dim]`` through ``tonic.transforms.ToFrame``.

    Args:
        events: structured array with ``t``, ``x`` and ``p`` fields, time-sorted, ``0 <= t < T``.
        dim: sensor size ``D``.
        T: number of time steps.
    """
    if len(events) == 0:
        return np.zeros((T, dim), dtype=np.uint8)  # ToFrame returns a wrongly shaped frame here
    from tonic.transforms import ToFrame

    frames = ToFrame(sensor_size=(dim, 1, 1), time_window=1, start_time=0, end_time=T)(events.copy())
    return (frames[:, 0, :] > 0).astype(np.uint8)  # [T, 1, D] counts -> [T, D]


def pack_spikes(spikes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Dense spikes of a batch ``[T, B, N, D]`` -> CSR ``(x, counts)`` over (sample, token, step).

    Returns:
        ``x``: uint16 (or uint32 for D > 65536) feature index of every event, ordered by
        (sample, token, step, feature); ``counts``: int64 ``[B * N * T]`` events per run.
    """
    T, B, N, D = spikes.shape
    arr = np.ascontiguousarray(np.transpose(spikes, (1, 2, 0, 3)))  # [B, N, T, D]
    flat = arr.reshape(B * N * T, D)
    run, x = np.nonzero(flat)
    counts = np.bincount(run, minlength=B * N * T).astype(np.int64)
    return x.astype(np.uint16 if D <= 65536 else np.uint32), counts


def unpack_sample(x: np.ndarray, offsets: np.ndarray, b: int, n_tokens: int, T: int, dim: int) -> np.ndarray:
    """Sample ``b`` of a CSR split -> dense uint8 ``[T, N, D]`` (vectorised numpy decode)."""
    runs = n_tokens * T
    lo, hi = int(offsets[b * runs]), int(offsets[(b + 1) * runs])
    counts = np.diff(np.asarray(offsets[b * runs:(b + 1) * runs + 1]))
    run = np.repeat(np.arange(runs), counts)  # [E] run index (n * T + t)
    out = np.zeros((T, n_tokens, dim), dtype=np.uint8)
    out[run % T, run // T, np.asarray(x[lo:hi], dtype=np.int64)] = 1
    return out


def sample_events(x: np.ndarray, offsets: np.ndarray, b: int, token: int, n_tokens: int, T: int) -> Any:
    """The tonic events (``t, x, p``) of one token of sample ``b`` of a CSR split."""
    import tonic

    base = (b * n_tokens + token) * T
    starts = np.asarray(offsets[base:base + T + 1], dtype=np.int64)
    counts = np.diff(starts)
    t = np.repeat(np.arange(T, dtype=np.int64), counts)
    xs = np.asarray(x[starts[0]:starts[-1]], dtype=np.int32)
    return tonic.io.make_structured_array(t, xs, np.ones(len(t), np.int8), dtype=EVENT_DTYPE)
