"""The one way a target loads the evaluation inputs of a run: real samples of the data it was trained on.

A run's manifest names its inputs (the encoded set, the feature store or the dataset), relative to
the run folder. :func:`evaluation_inputs` reads the split a target verifies on from the input the
run's model consumes (its :class:`~neuroposter.models.ModelSpec` ``inputs``):

================  ===========================================================================
model input       evaluation samples
================  ===========================================================================
spike tokens /    the encoded set's spikes ``[T, B, N, D]`` (uint8)
pooled spikes
feature tokens    the encoded set's normalised float features ``[B, N, D]`` (the ANN twin)
images            posters ``[B, 3, H, W]``: the feature store's dataset under the store's image
                  policy (a run trained on stored features, e.g. ``cnn``) or the dataset at the
                  model's ``image_size`` (``vit``); for a spiking model (``sdt-pixels``, direct
                  encoding) the posters repeated over its ``T`` steps, float32 ``[T, B, 3, S, S]``
================  ===========================================================================

A run fine-tuned for an integer target with an analog input (the pixel SDT for Loihi 2) was trained to see its
image quantised (graded spikes); :func:`trained_input_quantization` gives that format as a graph input contract.

``seed=None`` takes the first ``samples`` of the split; an integer seed takes a seeded random subset
(sorted). A missing or rebuilt input is a one-line :class:`~neuroposter.errors.ManifestError` saying
what to re-run -- never a silent fallback to other or random inputs.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from neuroposter.errors import DataError, ManifestError

__all__ = ["EvalInputs", "evaluation_inputs", "run_input", "open_run_input", "check_input_key", "select",
           "trained_input_quantization"]

# What re-creates each input a run's manifest can name.
_RERUN = {"encoded": "neuroposter encode", "features": "neuroposter features", "dataset": "neuroposter data import"}
_WHAT = {"encoded": "encoded set", "features": "feature store", "dataset": "dataset"}


@dataclass
class EvalInputs:
    """Evaluation samples of a run.

    Attributes:
        x: the model's input: uint8 spikes ``[T, B, N, D]`` (numpy) for spiking runs (a pixel SNN: float32 image
            currents ``[T, B, 3, S, S]``), a float32 torch tensor ``[B, ...]`` for the others.
        labels: multi-hot ``[B, G]``.
        indices: the samples' positions in the split.
        name: which input of the run they come from (``"encoded"``, ``"features"``, ``"dataset"``).
        path: that input's folder.
        key: its content key.
        split: the split.
        T: time steps (spiking inputs), else None.
        description: one line for summaries ("test posters of ...").
        genres: the label columns' names (empty when the input does not name them).
    """

    x: Any
    labels: np.ndarray
    indices: np.ndarray
    name: str
    path: Path
    key: Any
    split: str
    T: int | None = None
    description: str = ""
    genres: tuple[str, ...] = ()

    @property
    def samples(self) -> int:
        """Number of samples."""
        return int(len(self.indices))

    def record(self) -> dict[str, Any]:
        """The manifest's record of the input (``{"path", "key"}``)."""
        return {"path": str(self.path), "key": self.key}

    def info(self) -> dict[str, Any]:
        """The summary's record: path, key, split, T and the sample indices."""
        out: dict[str, Any] = {"path": str(self.path), "key": self.key, "split": self.split}
        if self.T is not None:
            out["T"] = int(self.T)
        out["indices"] = [int(i) for i in self.indices]
        return out


def run_input(run_dir: str | os.PathLike[str], run_manifest: Mapping[str, Any], name: str) -> Path:
    """Where input ``name`` (``"encoded"``, ``"features"``, ``"dataset"``) of a run is now.

    Resolved from the run's manifest (relative to the run folder, so a moved workspace works).

    Raises:
        ManifestError: the manifest names no such input, or it is not there; the message names it
            and what to re-run.
    """
    from neuroposter.manifest import input_path

    run_dir = Path(run_dir)
    what = _WHAT.get(name, name)
    path = input_path(run_dir, run_manifest, name)
    if path is None:
        raise ManifestError(f"{run_dir}: its manifest names no {what} (inputs.{name}); "
                            f"run `neuroposter train` again")
    if not path.exists():
        raise ManifestError(f"the {what} {path} that run {run_dir} was trained on is missing; "
                            f"re-create it with `{_RERUN.get(name, 'neuroposter')}` (the same options as before) "
                            f"or train the run again")
    return path


def check_input_key(path: str | os.PathLike[str], actual: Any, run_dir: str | os.PathLike[str],
                    run_manifest: Mapping[str, Any], name: str) -> None:
    """Refuses an input whose content key differs from the one the run recorded (it was rebuilt)."""
    entry = (run_manifest.get("inputs") or {}).get(name)
    expected = entry.get("key") if isinstance(entry, Mapping) else None
    if expected and actual and str(expected) != str(actual):
        what = _WHAT.get(name, name)
        raise ManifestError(f"the {what} {path} changed since run {run_dir} was trained on it (key {actual} != "
                            f"{expected}); train the run again (`neuroposter train`)")


def select(n: int, samples: int, seed: int | None) -> np.ndarray:
    """Positions of ``min(samples, n)`` samples out of ``n``: the first ones (``seed=None``) or a seeded
    random subset, sorted."""
    k = min(int(samples), int(n))
    if seed is None:
        return np.arange(k)
    return np.sort(np.random.default_rng(int(seed)).permutation(int(n))[:k])


def open_run_input(run_dir: Path, manifest: Mapping[str, Any], name: str) -> tuple[Path, Any]:
    """Opens input ``name`` of a run (``encoded``, ``features``, ``dataset``) and checks its key against the run's
    record."""
    path = run_input(run_dir, manifest, name)
    if name == "encoded":
        from neuroposter.encode import load_encoded

        obj = load_encoded(path)
    elif name == "features":
        from neuroposter.features import open_store

        obj = open_store(path)
    else:
        from neuroposter.data import load_dataset

        obj = load_dataset(path)
    check_input_key(path, getattr(obj, "key", None), run_dir, manifest, name)
    return path, obj


def evaluation_inputs(loaded: Any, run_dir: str | os.PathLike[str], *, samples: int, split: str = "test",
                      seed: int | None = None) -> EvalInputs:
    """Evaluation samples of a run, from the input its model consumes (see the module docstring).

    Args:
        loaded: the run (``neuroposter.train.load_run``): its ``model_name``, ``model`` and ``manifest``.
        run_dir: the run folder (its manifest's input paths are relative to it).
        samples: how many (at most the size of the split).
        split: ``"test"`` (default), ``"val"`` or ``"train"``.
        seed: None for the first samples, else a seeded random subset.

    Raises:
        ManifestError: the input is missing or changed. DataError: the split is empty, or the model
            consumes an input no loader exists for.
    """
    import torch

    from neuroposter.models import MODELS

    run_dir = Path(run_dir)
    spec = MODELS.get(loaded.model_name)
    manifest = loaded.manifest
    if spec.inputs in ("spike_tokens", "spike_pooled", "feature_tokens"):
        path, enc = open_run_input(run_dir, manifest, "encoded")
        n = enc.size(split)
        if n == 0:
            raise DataError(f"{path} has no {split} samples")
        idx = select(n, samples, seed)
        labels = np.asarray(enc.split_labels(split))[idx]
        genres = tuple(str(g) for g in getattr(enc, "genres", ()) or ())
        if spec.inputs == "feature_tokens":
            ds = enc.features_dataset(split)
            x = torch.stack([torch.as_tensor(np.asarray(ds[int(i)][0]), dtype=torch.float32) for i in idx])
            return EvalInputs(x, labels, idx, "encoded", path, enc.key, split, None,
                              f"{split} feature tokens of {path}", genres)
        x = np.stack([enc.spikes(split, int(i)) for i in idx], axis=1).astype(np.uint8)   # [T, B, N, D]
        return EvalInputs(x, labels, idx, "encoded", path, enc.key, split, int(enc.T), f"{split} spikes of {path}",
                          genres)
    if spec.inputs == "images":
        if "features" in (manifest.get("inputs") or {}):
            from neuroposter.features import preprocess

            path, store = open_run_input(run_dir, manifest, "features")
            ds, name, key, to_tensor = store.dataset, "features", store.key, preprocess
        else:
            from neuroposter.models.vit import image_to_tensor

            path, ds = open_run_input(run_dir, manifest, "dataset")
            size = loaded.model.image_size   # a square side, or (H, W) (sdt-frontend)
            name, key, to_tensor = "dataset", ds.key, lambda img: image_to_tensor(img, size)
        split_idx = np.asarray(ds.indices(split))
        if split_idx.size == 0:
            raise DataError(f"the dataset of {path} has no {split} posters")
        pos = select(split_idx.size, samples, seed)
        rows = split_idx[pos]
        x = torch.stack([to_tensor(ds.load_image(int(i))) for i in rows])
        labels = np.asarray(ds.labels)[rows]
        genres = tuple(str(g) for g in getattr(ds, "genres", ()) or ())
        if spec.kind == "snn":   # a pixel SNN (direct encoding): the image is the current of each of its T steps
            T = int(loaded.model.T)
            xt = np.ascontiguousarray(np.broadcast_to(x.numpy()[None], (T, *x.shape)))   # [T, B, 3, S, S]
            return EvalInputs(xt, labels, rows, name, path, key, split, T,
                              f"{split} posters of {path} (direct encoding, T={T})", genres)
        return EvalInputs(x, labels, rows, name, path, key, split, None, f"{split} posters of {path}", genres)
    raise DataError(f"no evaluation inputs for a {loaded.model_name!r} run (model input {spec.inputs!r})")


def trained_input_quantization(model: Any) -> dict[str, Any] | None:
    """The input quantisation a quantisation-aware model computes with, as a graph input contract
    (:func:`neuroposter.ir.quantize.graded_input_contract`), or None when it sees its input as it is (a float
    model, spikes, or a target whose deployed network takes a float input).

    Read from the model's own deployed integer graph (:func:`neuroposter.targets.training_quantiser` of its
    arithmetic, the builder ``neuroposter.train.load_run`` enables it with): the graded-spike format of its Input
    (:func:`neuroposter.targets.loihi.fixed_point.graded_input`), i.e. the scale and bits the model's first
    connection quantises the image with in training.

    Raises:
        DataError: the integer graph cannot be built.
    """
    from neuroposter.ir.qat import QATError, arithmetic_of
    from neuroposter.ir.quantize import graded_input_contract

    arith = arithmetic_of(model)
    if arith is None or arith.input_amax is None:
        return None
    from neuroposter.targets import training_quantiser

    builder = training_quantiser(arith)
    if builder is None:
        return None
    try:
        flat_int = builder(model)
    except QATError as exc:
        raise DataError(f"the input quantisation of the {arith.target} arithmetic: {exc}") from None
    from neuroposter.targets.loihi.fixed_point import graded_input

    g = graded_input(flat_int)
    if g is None:
        return None
    return graded_input_contract(
        bits=int(g["message_bits"]), scale=float(g["scale"]), amax=float(g["amax"]),
        source=f"the {arith.describe()} arithmetic the run was trained with (model.json deploy): its first "
               "connection sees the image as these graded values")
