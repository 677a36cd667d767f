"""The normalisation that maps DenseNet features (non-negative, heavy-tailed) into [0, 1].

.. math::

    z = \\log(1 + \\max(x, 0)), \\qquad
    u_d = \\operatorname{clip}\\left(\\frac{z_d}{s_d}, 0, 1\\right), \\qquad
    s_d = Q_{q}\\big(z_d \\text{ over the training vectors}\\big)

The features are ReLU outputs: exactly zero for a large share of positions and with a long upper
tail. ``log1p`` compresses the tail; each feature ``d`` is then divided by its own robust scale
``s_d`` (the ``q``-quantile, default 0.99, of its ``log1p`` values on the *training* split only) and
clipped, so the top 1 % of values saturate at 1 instead of squeezing everything else towards 0.
The lower end is fixed at 0 (not a fitted minimum): a zero feature stays exactly 0, which keeps the
ReLU sparsity and makes "no input -> no spikes" hold end to end. A feature whose ``q``-quantile is 0
(almost always silent) uses its training maximum instead, and a feature that is never active on
the training split gets ``s_d = 1``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["Normalizer"]


@dataclass(frozen=True, eq=False)
class Normalizer:
    """Per-feature ``log1p`` + robust scaling to [0, 1], fitted on training features.

    Attributes:
        scale: float32 ``[D]`` robust scale ``s_d`` of ``log1p(x_d)``.
        quantile: the quantile ``q`` the scale was fitted at.
    """

    scale: np.ndarray
    quantile: float = 0.99

    def __post_init__(self) -> None:
        scale = np.asarray(self.scale, dtype=np.float32)
        if scale.ndim != 1 or not np.all(np.isfinite(scale)) or np.any(scale <= 0):
            raise ValueError("Normalizer.scale must be a 1-D array of positive finite values")
        object.__setattr__(self, "scale", scale)

    @property
    def dim(self) -> int:
        """Number of features ``D``."""
        return int(self.scale.shape[0])

    @classmethod
    def fit(cls, train: np.ndarray, *, quantile: float = 0.99) -> Normalizer:
        """Fits the per-feature scale on training vectors.

        Args:
            train: ``[M, D]`` raw (non-negative) training feature vectors (any float dtype).
            quantile: the robust upper quantile, in (0, 1].

        Raises:
            ValueError: bad shape or quantile.
        """
        if not 0.0 < quantile <= 1.0:
            raise ValueError(f"quantile must be in (0, 1], got {quantile}")
        train = np.asarray(train)
        if train.ndim != 2 or train.shape[0] == 0:
            raise ValueError(f"train must be [M, D] with M >= 1, got shape {train.shape}")
        z = np.log1p(np.maximum(train.astype(np.float32), 0.0))
        scale = np.quantile(z, quantile, axis=0).astype(np.float32)
        zmax = z.max(axis=0)
        scale = np.where(scale > 0, scale, zmax)
        scale = np.where(scale > 0, scale, 1.0).astype(np.float32)
        return cls(scale=scale, quantile=float(quantile))

    def __call__(self, x: np.ndarray) -> np.ndarray:
        """Normalises ``[..., D]`` raw features to float32 in [0, 1]."""
        x = np.asarray(x)
        if x.shape[-1] != self.dim:
            raise ValueError(f"features have {x.shape[-1]} channels, the normaliser was fitted on {self.dim}")
        z = np.log1p(np.maximum(x.astype(np.float32), 0.0))
        return np.clip(z / self.scale, 0.0, 1.0).astype(np.float32)

    def inverse(self, u: np.ndarray) -> np.ndarray:
        """Maps normalised values back to raw feature units (saturated values return the scale)."""
        return np.expm1(np.asarray(u, dtype=np.float32) * self.scale).astype(np.float32)
