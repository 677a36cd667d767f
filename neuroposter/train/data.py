"""What a model trains on: per-split tensors held in memory, built from workspace artifacts or given directly.

The training loop only sees :class:`TaskData` (three :class:`SplitData` plus the genre names),
so it is independent of where batches come from. Samples are stored batch-first and compact
(spikes as uint8 ``[n, T, N, D]``, features/images as float) and turned into the model's input
layout per batch by :func:`to_model_input` (spikes -> time-first float ``[T, B, N, D]``).

Workspace sources per model (``docs/contracts.md``):

=================  ===============================================================  ==================
model              samples                                                          from
=================  ===============================================================  ==================
sdt                spikes ``[T, N, D]``                                             ``encoded/<name>``
snn-mlp            pooled spikes ``[T, 1, D]`` (a ``form="pooled"`` encoded set)    ``encoded/<name>``
ann-transformer    normalised float feature tokens ``[N, D]``                       ``encoded/<name>``
cnn                pooled DenseNet-169 features ``[1664]`` (head training), or      ``features/<name>``
                   images ``[3, H, W]`` with ``finetune``
vit, sdt-pixels    images ``[3, S, S]`` resized and ImageNet-normalised              ``datasets/<name>``
                   (sdt-pixels: the current of each of its ``T`` steps)
sdt-frontend       images ``[3, H, W]`` (H x W = the token grid times ``2^stages``) of   ``encoded/<name>``
                   the encoded set's posters, same splits and order, with their         (+ its features'
                   spikes ``[T, N, D]`` as distillation targets (``SplitData.aux``)     dataset)
=================  ===============================================================  ==================
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Literal

import numpy as np
import torch
from torch import Tensor

from neuroposter._progress import progress
from neuroposter.errors import DataError
from neuroposter.manifest import input_path

__all__ = ["SPLITS", "SplitData", "TaskData", "to_model_input", "materialise", "input_locations",
           "load_task_data"]

log = logging.getLogger(__name__)

SPLITS = ("train", "val", "test")
InputLayout = Literal["spikes", "features", "images"]


@dataclass
class SplitData:
    """One split in memory: ``inputs [n, ...]`` (batch-first) and float ``labels [n, G]``.

    ``aux`` (optional, batch-first, same samples in the same order): per-sample targets of a model's auxiliary
    loss (``model.auxiliary_loss(aux[idx])``, added to the task loss by the training loop), e.g. the encoded
    DenseNet token spikes the SDT front end is distilled to.
    """

    inputs: Tensor
    labels: Tensor
    aux: Tensor | None = None

    def __post_init__(self) -> None:
        if self.inputs.shape[0] != self.labels.shape[0]:
            raise ValueError(f"{self.inputs.shape[0]} inputs but {self.labels.shape[0]} label rows")
        if self.aux is not None and self.aux.shape[0] != self.inputs.shape[0]:
            raise ValueError(f"{self.inputs.shape[0]} inputs but {self.aux.shape[0]} auxiliary targets")
        self.labels = self.labels.to(torch.float32)

    def __len__(self) -> int:
        return int(self.inputs.shape[0])


@dataclass
class TaskData:
    """Everything a training run consumes.

    Attributes:
        train, val, test: the splits.
        genres: the label names (column order of ``labels``).
        layout: how :func:`to_model_input` turns a batch into model input.
        meta: input facts recorded in ``model.json`` (e.g. ``T``, ``n_tokens``, ``d_in``, ``image_size``).
        inputs_manifest: the artifacts used (``{"encoded": {"path", "key"}, ...}``) for the run manifest.
    """

    train: SplitData
    val: SplitData
    test: SplitData
    genres: list[str]
    layout: InputLayout
    meta: dict[str, Any] = field(default_factory=dict)
    inputs_manifest: dict[str, Any] = field(default_factory=dict)

    @property
    def n_classes(self) -> int:
        """Number of genres."""
        return len(self.genres)

    def split(self, name: str) -> SplitData:
        """The split called ``name`` (train/val/test)."""
        if name not in SPLITS:
            raise KeyError(f"unknown split {name!r}; available: {', '.join(SPLITS)}")
        return getattr(self, name)


def to_model_input(x: Tensor, layout: InputLayout, device: torch.device | str = "cpu",
                   dtype: torch.dtype = torch.float32) -> Tensor:
    """A batch-first stored batch -> the model's input on ``device`` (``dtype``, default float32).

    ``spikes``: ``[B, T, N, D]`` (any dtype) -> contiguous ``[T, B, N, D]``; ``features``/``images``: as is.
    The time-first copy is made on the compact stored dtype (uint8 spikes) before the float conversion.
    """
    x = x.to(device, non_blocking=True)
    if layout == "spikes":
        return x.transpose(0, 1).contiguous().to(dtype)   # [B, T, N, D] -> [T, B, N, D]
    return x.to(dtype)


def materialise(items: Iterable[tuple[Any, Any]], n: int, desc: str,
                transform: Callable[[Any], Tensor] | None = None, dtype: torch.dtype | None = None) -> SplitData:
    """Stacks ``n`` ``(input, labels)`` items (a map-style dataset) into one :class:`SplitData`.

    Args:
        items: an iterable of ``(input, labels)`` pairs.
        n: how many items (for the progress bar and preallocation).
        desc: progress bar label.
        transform: optional function applied to each input.
        dtype: storage dtype of the stacked inputs (default: the first item's).
    """
    xs: Tensor | None = None
    ys: list[Tensor] = []
    for i, (x, y) in enumerate(progress(items, desc=desc, total=n, unit="sample")):
        x = transform(x) if transform is not None else torch.as_tensor(np.asarray(x))
        if xs is None:
            xs = torch.empty((n, *x.shape), dtype=dtype or x.dtype)
        xs[i] = x
        ys.append(torch.as_tensor(np.asarray(y), dtype=torch.float32))
    if xs is None:
        raise DataError(f"{desc}: no samples")
    return SplitData(xs, torch.stack(ys))


def _item_iter(ds: Any) -> Iterable[tuple[Any, Any]]:
    for i in range(len(ds)):
        yield ds[i]


def _artifact(path: str | os.PathLike[str], key: str | None) -> dict[str, Any]:
    """A run-manifest input entry; :func:`neuroposter.manifest.write_manifest` stores the path relative
    to the run (readers resolve it with :func:`neuroposter.manifest.input_path`)."""
    return {"path": os.path.abspath(path), "key": key}


def _encoded_task(model: str, path: Path) -> TaskData:
    try:
        from neuroposter.encode import load_encoded
    except ImportError as exc:
        raise DataError(f"the encode package is not available ({exc}); cannot train {model!r}") from None
    enc = load_encoded(path)
    splits: dict[str, SplitData] = {}
    if model == "ann-transformer":
        for s in SPLITS:
            ds = enc.features_dataset(s)
            splits[s] = materialise(_item_iter(ds), len(ds), f"load {s} features",
                                    transform=lambda x: torch.as_tensor(np.asarray(x), dtype=torch.float32))
        layout: InputLayout = "features"
    else:
        if model == "snn-mlp" and int(enc.n_tokens) != 1:
            raise DataError(f"snn-mlp trains on pooled spikes, but {path} holds {enc.n_tokens} tokens per "
                            "sample; encode the pooled features (`neuroposter encode --form pooled --name pooled`) "
                            "and pass `--encoded pooled`")
        for s in SPLITS:
            ds = enc.dataset(s)
            splits[s] = materialise(_item_iter(ds), len(ds), f"load {s} spikes",
                                    transform=lambda x: torch.as_tensor(np.asarray(x)).to(torch.uint8),
                                    dtype=torch.uint8)
        layout = "spikes"
    inputs = {"encoded": _artifact(path, getattr(enc, "key", None))}
    # the feature store the spikes came from, as the encoded set's (verified) manifest records it; the
    # spike models never read it, so it is not opened (ann-transformer opened it above, with its checks)
    manifest = getattr(enc, "manifest", None) or {}
    feats_path = input_path(path, manifest, "features")
    if feats_path is not None:
        entry = (manifest.get("inputs") or {}).get("features") or {}
        inputs["features"] = _artifact(feats_path, entry.get("key") if isinstance(entry, dict) else None)
    return TaskData(splits["train"], splits["val"], splits["test"], list(enc.genres), layout,
                    meta={"T": int(enc.T), "n_tokens": int(enc.n_tokens), "d_in": int(enc.dim),
                          "form": str(enc.form)},
                    inputs_manifest=inputs)


def _cnn_task(features_path: Path, finetune: bool) -> tuple[TaskData, Any]:
    from neuroposter.features import open_store, preprocess

    store = open_store(features_path)
    ds = store.dataset
    genres = list(ds.genres)
    labels = np.asarray(store.labels, dtype=np.float32)
    splits: dict[str, SplitData] = {}
    for s in SPLITS:
        rows = store.split_rows(s)
        if finetune:
            idx = store.rows[rows]
            splits[s] = materialise(((ds.load_image(int(i)), labels[r]) for i, r in zip(idx, rows)), len(rows),
                                    f"load {s} images", transform=preprocess)
        else:
            splits[s] = SplitData(torch.from_numpy(np.asarray(store.pooled[rows], dtype=np.float32)),
                                  torch.from_numpy(labels[rows]))
    inputs = {"features": _artifact(store.path, store.key),
              "dataset": _artifact(store.dataset_path, getattr(ds, "key", None))}
    meta = {"d_in": store.dim, "weights": store.weights, "finetune": finetune, "grid": list(store.grid)}
    return TaskData(splits["train"], splits["val"], splits["test"], genres, "images" if finetune else "features",
                    meta=meta, inputs_manifest=inputs), store


def _vit_task(dataset_path: Path, image_size: int) -> TaskData:
    try:
        from neuroposter.data import load_dataset
    except ImportError:  # pragma: no cover - package __init__ not exporting it yet
        from neuroposter.data.dataset import load_dataset
    from neuroposter.models.vit import image_to_tensor

    ds = load_dataset(dataset_path)
    labels = np.asarray(ds.labels, dtype=np.float32)
    splits: dict[str, SplitData] = {}
    for s in SPLITS:
        idx = np.asarray(ds.indices(s), dtype=np.int64)
        splits[s] = materialise(((ds.load_image(int(i)), labels[i]) for i in idx), len(idx), f"load {s} images",
                                transform=lambda img: image_to_tensor(img, image_size))
    return TaskData(splits["train"], splits["val"], splits["test"], list(ds.genres), "images",
                    meta={"image_size": image_size},
                    inputs_manifest={"dataset": _artifact(dataset_path, getattr(ds, "key", None))})


def _frontend_task(path: Path, widths_stages: int) -> TaskData:
    """sdt-frontend: the posters of encoded set ``path`` as images sized for the token grid, each split paired with
    the encoded spikes of the same posters (``aux``), through the feature store the set was encoded from."""
    from neuroposter.encode import load_encoded
    from neuroposter.features import open_store
    from neuroposter.models.sdt_frontend import frontend_image_size
    from neuroposter.models.vit import image_to_tensor

    enc = load_encoded(path)
    if str(enc.form) == "pooled" or int(enc.n_tokens) < 2:
        raise DataError(f"{path} holds pooled spikes; sdt-frontend makes the token spikes of an `sdt` run "
                        "(`--encoded` the set that run trained on)")
    manifest = getattr(enc, "manifest", None) or {}
    feats_path = input_path(path, manifest, "features")
    if feats_path is None:
        raise DataError(f"{path} does not record its feature store; run `neuroposter encode --force` again")
    store = open_store(feats_path)
    ds = store.dataset
    grid = tuple(int(v) for v in store.grid)
    if grid[0] * grid[1] != int(enc.n_tokens):
        raise DataError(f"{path}: {enc.n_tokens} tokens per sample but its feature grid is {grid}")
    hw = frontend_image_size(grid, widths_stages)
    splits: dict[str, SplitData] = {}
    for s in SPLITS:
        idx = np.asarray(store.rows, dtype=np.int64)[np.asarray(enc.rows(s), dtype=np.int64)]   # dataset rows
        spikes = materialise(_item_iter(enc.dataset(s)), len(idx), f"load {s} spikes",
                             transform=lambda x: torch.as_tensor(np.asarray(x)).to(torch.uint8), dtype=torch.uint8)
        labels = torch.as_tensor(np.asarray(ds.labels, dtype=np.float32)[idx])
        if not torch.equal(labels, spikes.labels):
            raise DataError(f"{path}: the {s} labels of the encoded set differ from its dataset's for the same "
                            "posters; rebuild the encoded set (`neuroposter encode --force`)")
        images = materialise(((ds.load_image(int(i)), labels[j]) for j, i in enumerate(idx)), len(idx),
                             f"load {s} images", transform=lambda img: image_to_tensor(img, hw))
        splits[s] = SplitData(images.inputs, labels, aux=spikes.inputs)
    inputs = {"encoded": _artifact(path, getattr(enc, "key", None)),
              "dataset": _artifact(store.dataset_path, getattr(ds, "key", None))}
    return TaskData(splits["train"], splits["val"], splits["test"], list(enc.genres), "images",
                    meta={"image_size": list(hw), "grid": list(grid), "T": int(enc.T), "n_tokens": int(enc.n_tokens),
                          "d_in": int(enc.dim), "form": str(enc.form)},
                    inputs_manifest=inputs)


def input_locations(model: str, workspace: Any, *, encoded: str = "default", features: str = "default",
                    dataset: str = "default") -> list[Path]:
    """The artifact folders ``model`` reads (a run folder must never overlap them).

    Raises:
        UsageError: an invalid artifact name.
    """
    from neuroposter.models import MODELS

    spec = MODELS.get(model)
    if spec.inputs in ("spike_tokens", "spike_pooled", "feature_tokens"):
        return [workspace.encoded(encoded)]
    if model == "cnn":
        return [workspace.features(features)]
    if model == "sdt-frontend":   # the posters of the encoded set (its features' dataset) and their spikes
        return [workspace.encoded(encoded), workspace.dataset(dataset)]
    return [workspace.dataset(dataset)]


def load_task_data(model: str, workspace: Any, *, encoded: str = "default", features: str = "default",
                   dataset: str = "default", finetune: bool = False, image_size: int = 96,
                   stages: int = 3) -> tuple[TaskData, Any]:
    """Builds the :class:`TaskData` of ``model`` from a workspace.

    Args:
        model: registry name.
        workspace: a :class:`neuroposter.workspace.Workspace`.
        encoded, features, dataset: artifact names inside the workspace.
        finetune: cnn only: load images to train end to end instead of pooled features.
        image_size: vit, sdt-pixels: square image side.
        stages: sdt-frontend: the front end's 2x2 poolings (its image is the token grid times ``2^stages``).

    Returns:
        ``(task, extra)``: ``extra`` is the opened :class:`FeatureStore` for ``cnn`` (its backbone is
        needed to assemble the image model), None otherwise.

    Raises:
        ManifestError / DataError: a missing or unusable input, with what to run.
    """
    from neuroposter.models import MODELS

    spec = MODELS.get(model)
    if spec.inputs in ("spike_tokens", "spike_pooled", "feature_tokens"):
        return _encoded_task(model, workspace.encoded(encoded)), None
    if model == "cnn":
        return _cnn_task(workspace.features(features), finetune)
    if model == "sdt-frontend":
        return _frontend_task(workspace.encoded(encoded), stages), None
    return _vit_task(workspace.dataset(dataset), image_size), None
