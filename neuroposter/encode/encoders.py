"""Spike encoders: pure functions ``features -> spikes [T, *x.shape]`` (uint8 in {0, 1}).

Every encoder takes normalised features ``x`` in [0, 1] (see :mod:`neuroposter.encode.normalize`;
values outside are clipped, NaN is an error), the number of time steps ``T`` and a ``seed``
(used by the stochastic ``rate`` encoder through ``np.random.default_rng(seed)``; the others are
deterministic and ignore it). All of them give no spikes for ``x == 0`` and a spike count that does
not decrease when ``x`` grows. Shapes: ``x`` is one sample ``[D]`` or ``[N, D]`` (tokens), or a batch
``[B, N, D]``; only ``delta`` looks at the token axis, which is always axis ``-2`` (pass a batch of
pooled vectors as ``[B, 1, D]``).

============ ============================================================ ===================
name         code                                                         bits per feature
============ ============================================================ ===================
threshold    ``s_t = [x > theta]`` for every t (theta fitted per feature)  1
multilevel   thermometer: ``s_t = [x > level_t]``, ascending levels         log2(T + 1)
rate         Bernoulli: ``s_t = [u_t < x]``, ``u_t ~ U(0, 1)``              <= log2(T + 1)
latency      one spike at ``t = floor((1 - x) T)`` (clipped), if x > 0      log2(T + 1)
delta        sigma-delta modulator over tokens x time (error carried on)   log2(T + 1)
============ ============================================================ ===================
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable, Mapping

import numpy as np

from neuroposter._io import atomic_path, atomic_write_json, read_json
from neuroposter._registry import Registry
from neuroposter.encode.normalize import Normalizer
from neuroposter.errors import DataError

__all__ = [
    "ENCODERS",
    "EncoderFn",
    "threshold",
    "multilevel",
    "rate",
    "latency",
    "delta",
    "default_levels",
    "fit_params",
    "spike_code",
    "SpikeEncoder",
]

EncoderFn = Callable[..., np.ndarray]  # (x [*S] in [0,1], T, *, seed, **params) -> uint8 [T, *S]
ENCODERS: Registry[EncoderFn] = Registry("encoder")

ENCODER_FILE = "encoder.json"
ENCODER_ARRAYS = "encoder.npz"
_FORMAT_VERSION = 1


def _check(x: np.ndarray, T: int) -> np.ndarray:
    if not isinstance(T, (int, np.integer)) or isinstance(T, bool) or T < 1:
        raise ValueError(f"T must be a positive integer, got {T!r}")
    x = np.asarray(x, dtype=np.float32)
    if np.isnan(x).any():
        raise ValueError("features contain NaN")
    return np.clip(x, 0.0, 1.0)


@ENCODERS.register("threshold")
def threshold(x: np.ndarray, T: int, *, seed: int = 0, theta: float | np.ndarray = 0.5) -> np.ndarray:
    """1 where a feature exceeds its threshold, repeated over the ``T`` steps (1 bit per feature).

    Args:
        x: normalised features in [0, 1], any shape ``S``.
        T: time steps.
        seed: unused (deterministic).
        theta: threshold(s) >= 0, broadcastable to ``x`` (a scalar or per-feature ``[D]``).

    Returns:
        uint8 ``[T, *S]``.
    """
    x = _check(x, T)
    theta = np.maximum(np.asarray(theta, dtype=np.float32), 0.0)
    s = (x > theta).astype(np.uint8)
    return np.ascontiguousarray(np.broadcast_to(s, (T, *x.shape)))


def default_levels(T: int) -> np.ndarray:
    """Uniform thermometer levels ``t / T`` for ``t = 0..T-1`` (level 0 at 0: "any activity")."""
    return (np.arange(T, dtype=np.float32) / T).astype(np.float32)


@ENCODERS.register("multilevel")
def multilevel(x: np.ndarray, T: int, *, seed: int = 0, levels: np.ndarray | None = None) -> np.ndarray:
    """Thermometer / level-crossing code: step ``t`` fires when ``x`` exceeds level ``t``.

    With ascending levels the spikes of a feature are a prefix of the ``T`` steps, and the count
    (0..T) takes ``T + 1`` values: ``log2(T + 1)`` bits per feature.

    Args:
        x: normalised features in [0, 1], any shape ``S``.
        T: time steps (= number of levels).
        seed: unused (deterministic).
        levels: ``[T]`` or ``[T, *broadcastable to S]`` ascending thresholds >= 0 (default
            :func:`default_levels`).

    Returns:
        uint8 ``[T, *S]``.
    """
    x = _check(x, T)
    lv = default_levels(T) if levels is None else np.asarray(levels, dtype=np.float32)
    if lv.shape[0] != T:
        raise ValueError(f"multilevel needs {T} levels, got {lv.shape[0]}")
    extra = x.ndim - (lv.ndim - 1)
    if extra < 0:
        raise ValueError(f"levels of shape {lv.shape} do not broadcast to features of shape {x.shape}")
    lv = np.maximum(lv, 0.0).reshape((T,) + (1,) * extra + lv.shape[1:])  # [T, 1.., *per-feature]
    return (x[None] > lv).astype(np.uint8)


@ENCODERS.register("rate")
def rate(x: np.ndarray, T: int, *, seed: int = 0) -> np.ndarray:
    """Bernoulli rate code: every step fires with probability ``x``.

    One uniform draw per (step, element) from ``np.random.default_rng(seed)``; the same draws are
    compared with any ``x``, so for a fixed seed a larger ``x`` fires on a superset of steps.

    Returns:
        uint8 ``[T, *x.shape]``.
    """
    x = _check(x, T)
    u = np.random.default_rng(seed).random((T, *x.shape), dtype=np.float32)
    return (u < x[None]).astype(np.uint8)


@ENCODERS.register("latency")
def latency(x: np.ndarray, T: int, *, seed: int = 0) -> np.ndarray:
    """Time-to-first-spike: one spike at ``t = min(floor((1 - x) T), T - 1)`` for ``x > 0``.

    Strong features fire early (``x = 1`` at step 0), weak ones late; zero never fires.

    Returns:
        uint8 ``[T, *x.shape]``.
    """
    x = _check(x, T)
    t_fire = np.minimum(np.floor((1.0 - x) * T), T - 1).astype(np.int64)
    steps = np.arange(T).reshape((T,) + (1,) * x.ndim)
    return ((steps == t_fire[None]) & (x[None] > 0)).astype(np.uint8)


@ENCODERS.register("delta")
def delta(x: np.ndarray, T: int, *, seed: int = 0, theta: float = 0.5) -> np.ndarray:
    """First-order sigma-delta modulation over the token sequence.

    Each feature runs one modulator through the tokens in order (axis ``-2``; a 1-D ``x`` is a
    single token) and, within each token, the ``T`` steps: the accumulator integrates ``x``, a step
    fires when it reaches ``theta`` and a spike subtracts 1. The quantisation error of one token is
    carried into the next, so each token fires about ``x T`` times and the running count never
    differs from the running sum of ``x`` by more than ``max(theta, 1 - theta)``.

    .. math::

        a \\leftarrow a + x_n,\\quad s_{n,t} = [a \\ge \\theta],\\quad a \\leftarrow a - s_{n,t}

    Args:
        x: normalised features in [0, 1], ``[D]``, ``[N, D]`` or ``[B, N, D]``.
        T: time steps per token.
        seed: unused (deterministic).
        theta: firing level in (0, 1]; 0.5 rounds to the nearest count.

    Returns:
        uint8 ``[T, *x.shape]``.
    """
    x = _check(x, T)
    if not 0.0 < float(theta) <= 1.0:
        raise ValueError(f"delta theta must be in (0, 1], got {theta}")
    if x.ndim == 0:
        xs = x.reshape(1, 1)
    elif x.ndim == 1:
        xs = x[None]  # one token
    else:
        xs = np.moveaxis(x, -2, 0)  # [N, ...]
    out = np.zeros((T, *xs.shape), dtype=np.uint8)
    acc = np.zeros(xs.shape[1:], dtype=np.float64)
    for n in range(xs.shape[0]):
        for t in range(T):
            acc += xs[n]
            fire = acc >= theta
            acc -= fire
            out[t, n] = fire
    if x.ndim == 0:
        return out.reshape(T)
    if x.ndim == 1:
        return out[:, 0]
    return np.moveaxis(out, 1, x.ndim - 1)  # [T, N, *rest] -> [T, *x.shape]


def spike_code(spikes: np.ndarray, name: str) -> np.ndarray:
    """The integer code 0..T a spike train carries per element (for decoding and entropy).

    The spike count for every encoder except ``latency``, where it is ``T - t_first`` (0 if silent),
    so that a larger code always means a larger feature.

    Args:
        spikes: ``[T, *S]`` uint8.
        name: the encoder name.

    Returns:
        int64 ``[*S]`` in ``0..T``.
    """
    T = spikes.shape[0]
    if name == "latency":
        fired = spikes.any(axis=0)
        first = spikes.argmax(axis=0)
        return np.where(fired, T - first, 0).astype(np.int64)
    return spikes.sum(axis=0, dtype=np.int64)


def fit_params(name: str, T: int, train_u: np.ndarray, *, per_feature: bool = True,
               quantile: float = 0.5, levels: str = "quantile") -> dict[str, Any]:
    """Fits an encoder's thresholds on normalised *training* vectors.

    Args:
        name: encoder name.
        T: time steps.
        train_u: ``[M, D]`` normalised training vectors.
        per_feature: fit per feature (``[D]`` thresholds) or one global value.
        quantile: ``threshold``: the quantile of each feature's *active* (``> 0``) values used as theta.
        levels: ``multilevel``: ``"quantile"`` (equal-frequency levels over the active values, level 0
            at 0) or ``"uniform"`` (``t / T``).

    Returns:
        The keyword parameters for the encoder function (arrays or floats).
    """
    u = np.asarray(train_u, dtype=np.float32)
    if u.ndim != 2:
        raise ValueError(f"train_u must be [M, D], got {u.shape}")
    active = np.where(u > 0, u, np.nan)
    axis = 0 if per_feature else None

    def q(values: np.ndarray, qs: Any) -> np.ndarray:
        import warnings

        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN features
            out = np.nanquantile(values, qs, axis=axis)
        return np.nan_to_num(np.asarray(out, dtype=np.float32), nan=0.0)

    if name == "threshold":
        return {"theta": q(active, quantile).astype(np.float32)}
    if name == "multilevel":
        if levels == "uniform" or T == 1:
            lv = default_levels(T)
            if per_feature:
                lv = np.repeat(lv[:, None], u.shape[1], axis=1)
            return {"levels": lv.astype(np.float32)}
        if levels != "quantile":
            raise ValueError(f"levels must be 'quantile' or 'uniform', got {levels!r}")
        qs = np.arange(1, T, dtype=np.float64) / T
        inner = q(active, qs)  # [T-1, D] or [T-1]
        zero = np.zeros((1, *inner.shape[1:]), dtype=np.float32)
        lv = np.concatenate([zero, inner], axis=0)
        return {"levels": np.maximum.accumulate(lv, axis=0).astype(np.float32)}
    if name in ENCODERS:
        return {}
    ENCODERS.get(name)  # raises the KeyError that lists the names
    return {}  # pragma: no cover


@dataclass(frozen=True, eq=False)
class SpikeEncoder:
    """An encoder with its fitted normalisation and thresholds.

    Attributes:
        name: registry name (``threshold``, ``multilevel``, ``rate``, ``latency``, ``delta``).
        T: time steps.
        params: keyword parameters of the encoder function (floats or numpy arrays).
        normalizer: the fitted :class:`Normalizer` (None until :meth:`fit`).
        options: fit options (``per_feature``, ``quantile``, ``levels``, ``norm_quantile``).
    """

    name: str
    T: int
    params: Mapping[str, Any] = field(default_factory=dict)
    normalizer: Normalizer | None = None
    options: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        ENCODERS.get(self.name)
        if not isinstance(self.T, int) or isinstance(self.T, bool) or self.T < 1:
            raise ValueError(f"T must be a positive integer, got {self.T!r}")

    @property
    def fn(self) -> EncoderFn:
        """The pure encoder function."""
        return ENCODERS.get(self.name)

    @property
    def fitted(self) -> bool:
        """True once a normaliser has been fitted."""
        return self.normalizer is not None

    @property
    def bits_per_feature(self) -> float:
        """Information capacity of one feature's spike train (bits): 1 or ``log2(T + 1)``."""
        return 1.0 if self.name == "threshold" else math.log2(self.T + 1)

    def fit(self, train_features: np.ndarray, *, per_feature: bool = True, quantile: float = 0.5,
            levels: str = "quantile", norm_quantile: float = 0.99) -> SpikeEncoder:
        """Fits the normalisation and the thresholds on raw training features.

        Args:
            train_features: ``[M, D]`` raw training feature vectors (tokens or pooled vectors).
            per_feature: per-feature thresholds (default) or global ones.
            quantile: ``threshold`` encoder: quantile of the active values used as theta.
            levels: ``multilevel`` encoder: ``"quantile"`` or ``"uniform"`` levels.
            norm_quantile: the normaliser's robust upper quantile.

        Returns:
            A new, fitted :class:`SpikeEncoder`.
        """
        norm = Normalizer.fit(train_features, quantile=norm_quantile)
        u = norm(train_features)
        params = fit_params(self.name, self.T, u, per_feature=per_feature, quantile=quantile, levels=levels)
        options = {"per_feature": bool(per_feature), "quantile": float(quantile), "levels": str(levels),
                   "norm_quantile": float(norm_quantile)}
        return replace(self, params={**dict(self.params), **params}, normalizer=norm, options=options)

    def normalize(self, x: np.ndarray) -> np.ndarray:
        """Raw features ``[..., D]`` -> normalised float32 in [0, 1].

        Raises:
            ValueError: the encoder is not fitted.
        """
        if self.normalizer is None:
            raise ValueError("encoder is not fitted; call .fit(train_features) first")
        return self.normalizer(x)

    def encode(self, x: np.ndarray, seed: int = 0, *, normalized: bool = False) -> np.ndarray:
        """Spikes of ``x``: uint8 ``[T, *x.shape]``.

        Args:
            x: raw features (normalised first) or, with ``normalized=True``, values in [0, 1].
            seed: seed of the stochastic encoders.
            normalized: ``x`` is already normalised.
        """
        u = np.asarray(x, dtype=np.float32) if normalized else self.normalize(x)
        return self.fn(u, self.T, seed=seed, **dict(self.params))

    def config(self) -> dict[str, Any]:
        """JSON-ready description (scalars only; arrays are summarised by shape)."""
        params = {k: (list(np.shape(v)) if np.ndim(v) else float(v)) for k, v in self.params.items()}
        return {"name": self.name, "T": self.T, "params": params, "options": dict(self.options),
                "bits_per_feature": self.bits_per_feature}

    def save(self, directory: str | os.PathLike[str]) -> None:
        """Writes ``encoder.json`` + ``encoder.npz`` (no pickle) into ``directory``."""
        d = Path(directory)
        d.mkdir(parents=True, exist_ok=True)
        arrays: dict[str, np.ndarray] = {}
        scalars: dict[str, Any] = {}
        for k, v in self.params.items():
            if np.ndim(v):
                arrays[f"param.{k}"] = np.asarray(v)
            else:
                scalars[k] = float(v)
        if self.normalizer is not None:
            arrays["normalizer.scale"] = self.normalizer.scale
        with atomic_path(d / ENCODER_ARRAYS) as tmp:
            with open(tmp, "wb") as fh:
                np.savez(fh, **arrays)
        atomic_write_json(d / ENCODER_FILE, {
            "format": _FORMAT_VERSION, "name": self.name, "T": self.T, "scalar_params": scalars,
            "array_params": sorted(k.split(".", 1)[1] for k in arrays if k.startswith("param.")),
            "normalizer": None if self.normalizer is None else {"kind": "log1p-robust",
                                                                "quantile": self.normalizer.quantile},
            "options": dict(self.options), "bits_per_feature": self.bits_per_feature,
        })

    @classmethod
    def load(cls, directory: str | os.PathLike[str]) -> SpikeEncoder:
        """Reads an encoder written by :meth:`save`.

        Raises:
            DataError: missing or inconsistent files.
        """
        d = Path(directory)
        meta = read_json(d / ENCODER_FILE)
        if not isinstance(meta, dict) or meta.get("format") != _FORMAT_VERSION:
            raise DataError(f"{d / ENCODER_FILE}: not a neuroposter encoder (format {_FORMAT_VERSION})")
        try:
            with np.load(d / ENCODER_ARRAYS, allow_pickle=False) as z:
                arrays = {k: z[k] for k in z.files}
        except FileNotFoundError:
            raise DataError(f"{d / ENCODER_ARRAYS}: file not found") from None
        params: dict[str, Any] = dict(meta.get("scalar_params", {}))
        for k in meta.get("array_params", []):
            if f"param.{k}" not in arrays:
                raise DataError(f"{d / ENCODER_ARRAYS}: missing array {k!r}")
            params[k] = arrays[f"param.{k}"]
        norm = None
        if meta.get("normalizer") is not None:
            norm = Normalizer(scale=arrays["normalizer.scale"], quantile=float(meta["normalizer"]["quantile"]))
        return cls(name=str(meta["name"]), T=int(meta["T"]), params=params, normalizer=norm,
                   options=dict(meta.get("options", {})))

    def __repr__(self) -> str:
        return f"SpikeEncoder({json.dumps(self.config())})"
