"""The on-disk feature store: memory-mapped float16 DenseNet-169 features of one dataset.

Layout of ``WORKSPACE/features/<name>/`` (docs/contracts.md section 3)::

    pooled.npy     float16 [R, 1664]          global-average-pooled features
    tokens.npy     float16 [R, H'*W', 1664]   the spatial map before pooling, row-major over (H', W')
    done.npy       bool [R]                   rows computed (all True in a complete store)
    rows.npy       int64 [R]                  dataset index of each row (arange(N) unless --limit)
    manifest.json  kind "features", key, extra.grid / weights / weights_note / ...

``R`` is the number of stored rows: the dataset size, or fewer when extraction was limited.
While an extraction runs, the store is built in a hidden sibling folder ``.<name>.partial`` and
only swapped in once every row is done, so ``features/<name>`` always holds a complete store.
The lock ``.<name>.lock`` beside it is held for the whole extraction (one writer at a time), and the
manifest lists the size and SHA-256 of every file, so a changed store is refused on every read.
"""

from __future__ import annotations

import os
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np

from neuroposter._io import sha256_json
from neuroposter.errors import DataError, ManifestError
from neuroposter.manifest import MANIFEST_NAME, input_path, require_manifest

__all__ = ["STORE_KIND", "FeatureStore", "open_store", "store_key", "partial_dir"]

STORE_KIND = "features"
STORE_VERSION = 1


def partial_dir(path: str | os.PathLike[str]) -> Path:
    """The hidden folder where an unfinished store for ``path`` is built (and resumed)."""
    path = Path(path)
    return path.with_name(f".{path.name}.partial")


def store_key(dataset_key: str | None, weights_id: str, image_policy: dict[str, Any],
              rows: np.ndarray | None = None, backbone: str = "densenet169") -> str:
    """The content key of a feature store.

    It hashes everything that determines the stored numbers: the dataset key, the backbone, the
    weights id, the image policy, the normalisation and the selected rows (only when limited).
    """
    payload: dict[str, Any] = {
        "version": STORE_VERSION,
        "dataset": dataset_key,
        "backbone": backbone,
        "weights": weights_id,
        "image_policy": image_policy,
        "preprocess": "imagenet-mean-std",
        "dtype": "float16",
    }
    if rows is not None:
        payload["rows"] = np.asarray(rows, dtype=np.int64).tolist()
    return sha256_json(payload)


class FeatureStore:
    """A complete feature store opened read-only (see :func:`open_store`).

    Attributes:
        path: the store folder.
        manifest: its manifest.
        pooled: float16 ``[R, 1664]`` read-only memmap.
        tokens: float16 ``[R, H'*W', 1664]`` read-only memmap.
        rows: int64 ``[R]`` dataset index of each stored row.
        grid: ``(H', W')``.
        weights: the weights id (``"imagenet"``, ``"random"``, ``"file:<sha>"``).
        key: the manifest key.
    """

    def __init__(self, path: Path, manifest: dict[str, Any], dataset: Any | None = None) -> None:
        self.path = path
        self.manifest = manifest
        extra = {**manifest.get("extra", {}), **{k: v for k, v in manifest.items() if k != "extra"}}
        self.pooled: np.ndarray = np.load(path / "pooled.npy", mmap_mode="r")
        self.tokens: np.ndarray = np.load(path / "tokens.npy", mmap_mode="r")
        rows_path = path / "rows.npy"
        self.rows: np.ndarray = (np.load(rows_path) if rows_path.is_file()
                                 else np.arange(self.pooled.shape[0], dtype=np.int64))
        self.grid: tuple[int, int] = tuple(int(v) for v in extra["grid"])  # type: ignore[assignment]
        self.weights: str = str(extra["weights"])
        self.weights_note: str = str(extra.get("weights_note") or "")
        self.weights_path: str | None = extra.get("weights_path")
        self.key: str = str(manifest["key"])
        self._dataset = dataset
        n = self.pooled.shape[0]
        if self.tokens.shape[0] != n or self.rows.shape[0] != n:
            raise DataError(f"{path}: pooled/tokens/rows disagree on the number of rows")
        if self.tokens.shape[1] != self.grid[0] * self.grid[1]:
            raise DataError(f"{path}: tokens.npy has {self.tokens.shape[1]} tokens, grid {self.grid}")

    def __len__(self) -> int:
        return int(self.pooled.shape[0])

    def __repr__(self) -> str:
        return (f"FeatureStore({str(self.path)!r}, rows={len(self)}, grid={self.grid}, "
                f"weights={self.weights!r})")

    @property
    def dim(self) -> int:
        """Feature channels (1664)."""
        return int(self.pooled.shape[1])

    @property
    def n_tokens(self) -> int:
        """Tokens per image (``H' * W'``)."""
        return int(self.tokens.shape[1])

    @property
    def dataset_path(self) -> Path:
        """The dataset folder the store was built from (found relative to the store after a move).

        Raises:
            ManifestError: the manifest records no dataset.
        """
        path = input_path(self.path, self.manifest, "dataset")
        if path is None:
            raise ManifestError(f"{self.path}/manifest.json records no dataset; run `neuroposter features --force`")
        return path

    @property
    def dataset(self) -> Any:
        """The :class:`neuroposter.data.PosterDataset` the store was built from (loaded lazily).

        Raises:
            ManifestError: the dataset changed since extraction (its key differs).
        """
        if self._dataset is None:
            from neuroposter.data import load_dataset

            self._dataset = load_dataset(self.dataset_path)
            expected = self.manifest["inputs"]["dataset"].get("key")
            if expected is not None and getattr(self._dataset, "key", None) != expected:
                raise ManifestError(
                    f"{self.dataset_path} changed since the features at {self.path} were extracted; "
                    "run `neuroposter features --force` again"
                )
        return self._dataset

    def split_rows(self, split: str) -> np.ndarray:
        """Store-row positions of a split (``train``/``val``/``test``), in dataset order."""
        idx = np.asarray(self.dataset.indices(split), dtype=np.int64)
        pos = np.full(int(max(self.rows.max(initial=-1), idx.max(initial=-1))) + 1, -1, dtype=np.int64)
        pos[self.rows] = np.arange(len(self.rows))
        out = pos[idx]
        return out[out >= 0]

    @cached_property
    def labels(self) -> np.ndarray:
        """uint8 ``[R, G]`` labels of the stored rows."""
        return np.asarray(self.dataset.labels)[self.rows]

    def build_backbone(self) -> Any:
        """Rebuilds the exact backbone that produced these features (eval mode)."""
        from neuroposter.features.backbone import build_backbone

        if self.weights.startswith("file:"):
            if not self.weights_path:
                raise ManifestError(f"{self.path}: file weights without a recorded path")
            from neuroposter.features.backbone import resolve_weights

            spec = resolve_weights(self.weights_path)
            if spec.id != self.weights:
                raise ManifestError(f"weights file {self.weights_path} changed since extraction "
                                    f"({spec.id} != {self.weights})")
            return build_backbone(spec)
        return build_backbone(self.weights)


def open_store(path: str | os.PathLike[str], *, dataset: Any | None = None) -> FeatureStore:
    """Opens a complete feature store read-only.

    Args:
        path: ``WORKSPACE/features/<name>``.
        dataset: the dataset object to attach (default: loaded lazily from the manifest's input).

    Raises:
        ManifestError: missing, incomplete or not a feature store; the message says what to run.
    """
    path = Path(path)
    if not path.exists() and partial_dir(path).exists():
        raise ManifestError(f"{path}: feature extraction was interrupted; run `neuroposter features` "
                            "again to resume it")
    # a store that is there but changed is rebuilt with --force (a plain rerun would find it up to date)
    rerun = "neuroposter features --force" if (path / MANIFEST_NAME).is_file() else "neuroposter features"
    manifest = require_manifest(path, STORE_KIND, rerun=rerun)
    if not manifest.get("complete", False):
        raise ManifestError(f"{path}: incomplete feature store; run `neuroposter features` again")
    return FeatureStore(path, manifest, dataset)
