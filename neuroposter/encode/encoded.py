"""Reading an encoded (spike) set: ``load_encoded(path) -> EncodedSet`` (contracts section 4).

Layout of ``WORKSPACE/encoded/<name>/``::

    encoder.json, encoder.npz      the fitted SpikeEncoder (normalisation + thresholds)
    events_<split>/x.npy           feature index of every spike event (CSR, see encode.events)
    events_<split>/offsets.npy     int64 [B*N*T + 1] run starts over (sample, token, step)
    events_<split>/rows.npy        feature-store rows of the split's samples (dataset order)
    events_<split>/labels.npy      uint8 [B, G] multi-hot labels
    genres.json                    the genre vocabulary (label columns)
    encoding_report.json/.png      firing rates, bits per feature, information kept
    manifest.json                  kind "encoded"
"""

from __future__ import annotations

import os
from functools import cached_property
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from neuroposter._io import read_json
from neuroposter.encode.encoders import SpikeEncoder
from neuroposter.encode.events import sample_events, unpack_sample
from neuroposter.errors import DataError, ManifestError
from neuroposter.manifest import input_path, require_manifest

__all__ = ["ENCODED_KIND", "SPLITS", "EncodedSet", "load_encoded", "collate_time_first"]

ENCODED_KIND = "encoded"
SPLITS: tuple[str, ...] = ("train", "val", "test")
_RERUN = "neuroposter encode"


def collate_time_first(batch: Sequence[tuple[Any, Any]]) -> tuple[Any, Any]:
    """Collates ``(spikes [T, N, D], labels [G])`` items into ``(spikes [T, B, N, D], labels [B, G])``.

    Spikes go through ``tonic.collation.PadTensors(batch_first=False)``, which pads shorter trains
    with silent steps to the longest ``T`` in the batch and stacks along a new batch axis 1.
    """
    import torch
    from tonic.collation import PadTensors

    spikes, _ = PadTensors(batch_first=False)([(s, 0) for s, _ in batch])  # [T, B, N, D]
    labels = torch.stack([torch.as_tensor(y, dtype=torch.float32) for _, y in batch])  # [B, G]
    return spikes.float(), labels


class _SplitEvents:
    """The CSR event arrays of one split (memory-mapped)."""

    def __init__(self, folder: Path, n_tokens: int, T: int, dim: int) -> None:
        try:
            self.x = np.load(folder / "x.npy", mmap_mode="r")
            self.offsets = np.load(folder / "offsets.npy", mmap_mode="r")
            self.rows = np.load(folder / "rows.npy")
            self.labels = np.load(folder / "labels.npy")
        except FileNotFoundError as exc:
            raise ManifestError(f"{folder}: incomplete encoded split ({Path(exc.filename).name} missing); "
                                f"run `{_RERUN} --force`") from None
        self.n_tokens, self.T, self.dim = n_tokens, T, dim
        if len(self.offsets) != len(self.rows) * n_tokens * T + 1 or len(self.labels) != len(self.rows):
            raise DataError(f"{folder}: offsets/rows/labels disagree; run `{_RERUN} --force`")

    def __len__(self) -> int:
        return len(self.rows)

    def dense(self, i: int) -> np.ndarray:
        return unpack_sample(self.x, self.offsets, i, self.n_tokens, self.T, self.dim)


def _torch_datasets() -> tuple[type, type]:
    from torch.utils.data import Dataset

    class SpikeDataset(Dataset):
        """Items ``(spikes float32 [T, N, D], labels float32 [G])`` of one split."""

        def __init__(self, events: _SplitEvents, via_tonic: bool = False) -> None:
            self.events = events
            self.via_tonic = via_tonic

        def __len__(self) -> int:
            return len(self.events)

        def __getitem__(self, i: int) -> tuple[Any, Any]:
            import torch

            if not 0 <= i < len(self.events):
                raise IndexError(i)
            ev = self.events
            if self.via_tonic:
                from neuroposter.encode.events import events_to_spikes

                dense = np.stack([events_to_spikes(sample_events(ev.x, ev.offsets, i, n, ev.n_tokens, ev.T),
                                                   ev.dim, ev.T) for n in range(ev.n_tokens)], axis=1)
            else:
                dense = ev.dense(i)  # [T, N, D]
            return (torch.from_numpy(dense.astype(np.float32)),
                    torch.from_numpy(ev.labels[i].astype(np.float32)))

    class FeatureDataset(Dataset):
        """Items ``(normalised features float32 [N, D], labels float32 [G])`` of one split."""

        def __init__(self, source: np.ndarray, rows: np.ndarray, labels: np.ndarray, encoder: SpikeEncoder,
                     pooled: bool) -> None:
            self.source, self.rows, self.labels = source, rows, labels
            self.encoder, self.pooled = encoder, pooled

        def __len__(self) -> int:
            return len(self.rows)

        def __getitem__(self, i: int) -> tuple[Any, Any]:
            import torch

            if not 0 <= i < len(self.rows):
                raise IndexError(i)
            raw = np.asarray(self.source[int(self.rows[i])], dtype=np.float32)
            raw = raw[None] if self.pooled else raw  # [N, D]
            return (torch.from_numpy(self.encoder.normalize(raw)),
                    torch.from_numpy(self.labels[i].astype(np.float32)))

    return SpikeDataset, FeatureDataset


class EncodedSet:
    """An encoded spike set opened read-only.

    Attributes:
        path: the folder.
        manifest: its manifest.
        T: time steps. form: ``"tokens"`` or ``"pooled"``. n_tokens: ``N`` (1 for pooled).
        dim: ``D`` (1664). genres: label names. encoder: the fitted :class:`SpikeEncoder`.
        key: the manifest key.
    """

    def __init__(self, path: Path, manifest: dict[str, Any]) -> None:
        self.path = path
        self.manifest = manifest
        cfg = manifest.get("config", {})
        self.T: int = int(cfg["T"])
        self.form: str = str(cfg["form"])
        self.n_tokens: int = int(manifest.get("n_tokens", 1))
        self.dim: int = int(manifest.get("dim", 1664))
        self.key: str = str(manifest["key"])
        self.encoder = SpikeEncoder.load(path)
        genres = read_json(path / "genres.json")
        self.genres: list[str] = [str(g) for g in genres]
        self._splits: dict[str, _SplitEvents] = {}

    def __repr__(self) -> str:
        sizes = {s: self.size(s) for s in self.splits}
        return (f"EncodedSet({str(self.path)!r}, encoder={self.encoder.name!r}, T={self.T}, form={self.form!r}, "
                f"N={self.n_tokens}, D={self.dim}, splits={sizes})")

    @property
    def splits(self) -> list[str]:
        """The splits present (normally train, val, test)."""
        return [s for s in SPLITS if (self.path / f"events_{s}").is_dir()]

    def _events(self, split: str) -> _SplitEvents:
        if split not in SPLITS:
            raise ValueError(f"unknown split {split!r}; valid: {', '.join(SPLITS)}")
        if split not in self._splits:
            folder = self.path / f"events_{split}"
            if not folder.is_dir():
                raise DataError(f"{self.path} has no {split} split")
            self._splits[split] = _SplitEvents(folder, self.n_tokens, self.T, self.dim)
        return self._splits[split]

    def size(self, split: str) -> int:
        """Number of samples in a split."""
        return len(self._events(split))

    def split_labels(self, split: str) -> np.ndarray:
        """uint8 ``[B, G]`` labels of a split."""
        return self._events(split).labels

    def rows(self, split: str) -> np.ndarray:
        """Feature-store rows of a split's samples."""
        return self._events(split).rows

    @cached_property
    def labels(self) -> np.ndarray:
        """uint8 ``[R, G]`` labels of all encoded samples, in feature-store row order."""
        rows = np.concatenate([self.rows(s) for s in self.splits])
        labels = np.concatenate([self.split_labels(s) for s in self.splits])
        return labels[np.argsort(rows, kind="stable")]

    def spikes(self, split: str, i: int) -> np.ndarray:
        """Dense uint8 spikes ``[T, N, D]`` of sample ``i`` of a split."""
        return self._events(split).dense(i)

    def events(self, split: str, i: int, token: int = 0) -> np.ndarray:
        """tonic events (``t, x, p``; a 1-D sensor of size D) of one token of one sample."""
        ev = self._events(split)
        if not 0 <= token < self.n_tokens:
            raise IndexError(f"token {token} out of range 0..{self.n_tokens - 1}")
        return sample_events(ev.x, ev.offsets, i, token, self.n_tokens, self.T)

    def dataset(self, split: str, *, via_tonic: bool = False) -> Any:
        """A ``torch.utils.data.Dataset`` of ``(spikes float32 [T, N, D], labels float32 [G])``.

        Args:
            split: ``train``, ``val`` or ``test``.
            via_tonic: decode through ``tonic.transforms.ToFrame`` per token (slower, same result)
                instead of the vectorised numpy decoder.
        """
        SpikeDataset, _ = _torch_datasets()
        return SpikeDataset(self._events(split), via_tonic=via_tonic)

    @cached_property
    def features(self) -> Any:
        """The :class:`~neuroposter.features.FeatureStore` the spikes were encoded from."""
        from neuroposter.features import open_store

        inp = (self.manifest.get("inputs") or {}).get("features") or {}
        path = input_path(self.path, self.manifest, "features")
        if path is None:
            raise ManifestError(f"{self.path}/manifest.json records no feature store; run `{_RERUN} --force`")
        store = open_store(path)
        if store.key != inp.get("key"):
            raise ManifestError(f"the feature store {path} changed since {self.path} was encoded; "
                                f"run `{_RERUN} --force`")
        return store

    def features_dataset(self, split: str) -> Any:
        """A Dataset of ``(normalised features float32 [N, D], labels float32 [G])`` (the ANN twin).

        The features are read from the feature store and normalised with the encoder's fitted
        normaliser, i.e. exactly the values that were spike-encoded.
        """
        _, FeatureDataset = _torch_datasets()
        store = self.features
        source = store.pooled if self.form == "pooled" else store.tokens
        ev = self._events(split)
        return FeatureDataset(source, ev.rows, ev.labels, self.encoder, self.form == "pooled")

    @property
    def report(self) -> dict[str, Any]:
        """``encoding_report.json``."""
        return read_json(self.path / "encoding_report.json")


def load_encoded(path: str | os.PathLike[str]) -> EncodedSet:
    """Opens ``WORKSPACE/encoded/<name>``.

    Raises:
        ManifestError: missing or not an encoded set (the message says to run ``neuroposter encode``).
    """
    path = Path(path)
    manifest = require_manifest(path, ENCODED_KIND, rerun=_RERUN)
    return EncodedSet(path, manifest)
