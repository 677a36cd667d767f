"""A training run end to end: model, fit, thresholds, test metrics beside baselines, and the run folder.

``WORKSPACE/runs/<name>/`` (``docs/contracts.md`` section 5) is assembled in a temporary folder and
swapped in whole (:func:`neuroposter._io.atomic_dir`), so it never holds a half-written run. While
training, the per-epoch training state lives in the hidden sibling ``runs/.<name>.partial/`` (used
by ``--resume``) and is removed once the run is complete.
"""

from __future__ import annotations

import logging
import os
import shutil
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable, Mapping

import numpy as np
import torch
from torch import nn

from neuroposter._io import atomic_dir, atomic_path, atomic_write_json, read_json, sha256_json, to_jsonable
from neuroposter.errors import DataError
from neuroposter.manifest import require_manifest, write_manifest
from neuroposter.models import MODELS, build_model, model_class
from neuroposter.train.checkpoint import load_torch, save_torch
from neuroposter.train.data import TaskData
from neuroposter.train.distributed import DistInfo
from neuroposter.train.loop import FitResult, TrainConfig, fit, predict
from neuroposter.train.metrics import constant_baselines, multilabel_metrics, tune_thresholds

__all__ = ["MODEL_TRAIN_DEFAULTS", "RunResult", "LoadedRun", "default_model_kwargs", "resolve_device",
           "partial_run_dir", "train_run", "load_run"]

log = logging.getLogger(__name__)

_IDENTITY = "identity.json"  # in the partial folder: the model and inputs a --resume must match

# Per-model optimisation defaults (CLI flags override them). Sized so the demo's five models train
# in a few minutes on 2 CPU cores; the demo passes its own --epochs.
MODEL_TRAIN_DEFAULTS: dict[str, dict[str, Any]] = {
    "sdt": {"epochs": 40, "batch_size": 32, "lr": 5e-3, "patience": 10},
    "snn-mlp": {"epochs": 40, "batch_size": 32, "lr": 5e-3, "patience": 10},
    "ann-transformer": {"epochs": 40, "batch_size": 32, "lr": 1e-3, "patience": 10},
    "cnn": {"epochs": 60, "batch_size": 64, "lr": 2e-3, "patience": 15},
    "vit": {"epochs": 40, "batch_size": 32, "lr": 1e-3, "patience": 10},
}


@dataclass
class RunResult:
    """What :func:`train_run` produced."""

    run_dir: Path
    metrics: dict[str, Any]
    fit: FitResult
    train_seconds: float


@dataclass
class LoadedRun:
    """A finished run rebuilt from disk (``docs/contracts.md`` section 5)."""

    model: nn.Module          # eval mode, on CPU
    model_name: str           # registry name
    manifest: dict[str, Any]
    metrics: dict[str, Any]
    config: dict[str, Any]    # resolved_config.yaml
    run_dir: Path
    model_json: dict[str, Any]


def resolve_device(device: str) -> torch.device:
    """``"auto"`` -> CUDA when available, else CPU; ``"cpu"`` / ``"cuda"`` / ``"cuda:1"`` as given.

    Raises:
        DataError: CUDA requested but not available.
    """
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dev = torch.device(device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise DataError("--device cuda requested, but torch sees no CUDA device; use --device cpu or auto")
    return dev


def partial_run_dir(run_dir: str | os.PathLike[str]) -> Path:
    """The hidden folder holding an unfinished run's training state."""
    run_dir = Path(run_dir)
    return run_dir.with_name(f".{run_dir.name}.partial")


def default_model_kwargs(model: str, task: TaskData) -> dict[str, Any]:
    """Constructor kwargs fixed by the data (sizes, classes); everything else keeps the class defaults."""
    m = task.meta
    if model == "sdt":
        return {"d_in": m["d_in"], "n_tokens": m["n_tokens"], "n_classes": task.n_classes}
    if model == "snn-mlp":
        return {"d_in": m["d_in"], "n_classes": task.n_classes}
    if model == "ann-transformer":
        return {"d_in": m["d_in"], "n_tokens": m["n_tokens"], "n_classes": task.n_classes}
    if model == "cnn":
        return {"n_classes": task.n_classes, "weights": m.get("weights", "random"), "d_feat": m.get("d_in", 1664)}
    if model == "vit":
        return {"n_classes": task.n_classes, "image_size": m.get("image_size", 96)}
    MODELS.get(model)  # raises the KeyError listing valid names
    return {"n_classes": task.n_classes}


def _build_trainable(model: str, kwargs: dict[str, Any], task: TaskData, store: Any) -> nn.Module:
    """The module :func:`fit` trains (for cnn on pooled features: the head alone)."""
    if model == "cnn":
        from neuroposter.models.cnn import CNNClassifier, make_head

        if task.layout == "features":
            return make_head(kwargs.get("d_feat", 1664), kwargs["n_classes"], kwargs.get("head_hidden", 0),
                             kwargs.get("dropout", 0.2))
        if store is None:
            raise DataError("cnn fine-tuning needs the feature store that names the backbone")
        net = CNNClassifier(**kwargs, backbone=store.build_backbone())
        net.unfreeze_backbone()
        return net
    return build_model(model, **kwargs)


def _final_model(model: str, kwargs: dict[str, Any], trained: nn.Module, task: TaskData, store: Any) -> nn.Module:
    """The run's ``.model``: for cnn trained on pooled features, backbone + the trained head."""
    if model == "cnn" and task.layout == "features":
        from neuroposter.models.cnn import CNNClassifier

        backbone = store.build_backbone() if store is not None else None
        net = CNNClassifier(**kwargs, backbone=backbone)
        net.head.load_state_dict(trained.state_dict())
        return net.eval()
    return trained.eval()


def _plot_curves(path: Path, history: Mapping[str, list[float]], title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(9, 3.4))
    ep = history["epoch"]
    ax1.plot(ep, history["train_loss"], label="train (weighted BCE)")
    ax1.plot(ep, history["val_loss"], label="val (BCE)")
    ax1.set_xlabel("epoch")
    ax1.set_ylabel("loss")
    ax1.legend()
    ax2.plot(ep, history["val_map"], color="C2")
    ax2.set_xlabel("epoch")
    ax2.set_ylabel("validation mAP (macro)")
    fig.suptitle(title)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=100)
    plt.close(fig)


def _write_npz(path: Path, **arrays: np.ndarray) -> None:
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as fh:
            np.savez(fh, **arrays)


def train_run(model: str, task: TaskData, run_dir: str | os.PathLike[str], cfg: TrainConfig, *,
              model_kwargs: Mapping[str, Any] | None = None, device: str | torch.device = "cpu",
              dist: DistInfo | None = None, resume: bool = False, store: Any = None,
              write_config: Callable[[Path], None] | None = None,
              on_epoch_end: Callable[[int, dict[str, list[float]]], None] | None = None) -> RunResult | None:
    """Trains ``model`` on ``task`` and writes the run folder.

    Args:
        model: registry name.
        task: the data.
        run_dir: ``WORKSPACE/runs/<name>``.
        cfg: optimisation settings.
        model_kwargs: constructor kwargs overriding :func:`default_model_kwargs`.
        device: torch device.
        dist: DDP placement (rank 0 writes; other ranks return None).
        resume: continue an interrupted run from its saved training state.
        store: the opened feature store (cnn: supplies the backbone).
        write_config: writes ``resolved_config.yaml`` into the folder it is given (the CLI's writer);
            default: the training config and model kwargs.
        on_epoch_end: forwarded to :func:`fit`.

    Returns:
        A :class:`RunResult` on rank 0, None on other ranks.
    """
    dist = dist or DistInfo()
    run_dir = Path(run_dir)
    device = torch.device(device)
    kwargs = {**default_model_kwargs(model, task), **dict(model_kwargs or {})}
    partial = partial_run_dir(run_dir)
    identity = to_jsonable({"model": model, "model_kwargs": kwargs,
                            "inputs": {k: v.get("key") for k, v in task.inputs_manifest.items()}})
    if resume and (partial / "train_state.pt").is_file():  # every rank checks, so all of them stop together
        # the training state only knows the optimisation settings: the model and its inputs must match too
        old = read_json(partial / _IDENTITY) if (partial / _IDENTITY).is_file() else None
        if old != identity:
            what = "an unknown model or inputs" if not isinstance(old, dict) else ", ".join(
                k for k in ("model", "model_kwargs", "inputs") if old.get(k) != identity[k])
            raise DataError(f"{partial}: the interrupted run differs in {what}; rerun without --resume, "
                            "or with the same model and inputs")
    if dist.is_main:
        if not resume and partial.exists():
            shutil.rmtree(partial)
        partial.mkdir(parents=True, exist_ok=True)
        atomic_write_json(partial / _IDENTITY, identity)
    if dist.distributed:
        import torch.distributed as tdist

        tdist.barrier()
    torch.manual_seed(cfg.seed)
    trainable = _build_trainable(model, kwargs, task, store)
    t0 = time.perf_counter()
    result = fit(trainable, task, cfg, device=device, dist=dist, state_path=partial / "train_state.pt",
                 resume=resume, desc=f"train {run_dir.name}", on_epoch_end=on_epoch_end)
    seconds = time.perf_counter() - t0
    if not dist.is_main:
        return None

    bs = max(cfg.batch_size, 64)
    val = predict(trainable, task.val, task.layout, batch_size=bs, device=device)
    thresholds = tune_thresholds(val.labels, val.scores)
    test = predict(trainable, task.test, task.layout, batch_size=bs, device=device)
    test_metrics = multilabel_metrics(test.labels, test.scores, thresholds)
    metrics: dict[str, Any] = {
        "model": model,
        "test": test_metrics,
        "baselines": constant_baselines(task.train.labels.numpy(), test.labels),
        "firing_rates": test.firing_rates,
        "thresholds": [float(t) for t in thresholds],
        **{k: test_metrics[k] for k in ("micro_f1", "macro_f1", "samples_f1", "map", "hamming", "p_at_1")},
        "val": multilabel_metrics(val.labels, val.scores, thresholds),
        "genres": list(task.genres),
        "split_sizes": {s: len(task.split(s)) for s in ("train", "val", "test")},
        "best_epoch": result.best_epoch,
        "epochs_run": result.epochs_run,
        "stopped_early": result.stopped_early,
        "train_seconds": seconds,
        "device": str(device),
        "world_size": dist.world_size,
    }

    final = _final_model(model, kwargs, trainable.to("cpu"), task, store)
    spec = MODELS.get(model)
    model_json = {"model": model, "class": spec.entry, "kwargs": kwargs, "inputs": spec.inputs,
                  "kind": spec.kind, "genres": list(task.genres), "input_meta": task.meta}
    run_key = sha256_json({"model": model, "kwargs": kwargs, "train": asdict(cfg),
                           "inputs": {k: v.get("key") for k, v in task.inputs_manifest.items()}})
    with atomic_dir(run_dir) as tmp:
        save_torch(final.state_dict(), tmp / "checkpoint.pt")
        atomic_write_json(tmp / "model.json", model_json)
        atomic_write_json(tmp / "metrics.json", metrics)
        _write_npz(tmp / "predictions_test.npz", scores=test.scores.astype(np.float32),
                   labels=test.labels.astype(np.uint8))
        _plot_curves(tmp / "curves.png", result.history, f"{model}: {run_dir.name}")
        if write_config is not None:
            write_config(tmp)
        else:
            import yaml

            from neuroposter._io import atomic_write_text

            atomic_write_text(tmp / "resolved_config.yaml", yaml.safe_dump(
                to_jsonable({"model": model, "model_kwargs": kwargs, **asdict(cfg)}), sort_keys=True))
        write_manifest(tmp, "run", inputs=task.inputs_manifest,
                       config={"model": model, "model_kwargs": kwargs, "train": asdict(cfg), "device": str(device),
                               "world_size": dist.world_size},
                       key=run_key, extra={"model": model, "extra": {"model": model}})
    shutil.rmtree(partial, ignore_errors=True)
    log.info("run %s: test micro-F1 %.3f mAP %.3f", run_dir, metrics["micro_f1"], metrics["map"])
    return RunResult(run_dir, metrics, result, seconds)


def load_run(run_dir: str | os.PathLike[str]) -> LoadedRun:
    """Rebuilds a finished run's model from ``model.json`` + ``checkpoint.pt`` (eval mode, CPU).

    Raises:
        ManifestError: not a finished run folder (says to run ``neuroposter train``).
        DataError: unreadable model description or checkpoint.
    """
    run_dir = Path(run_dir)
    manifest = require_manifest(run_dir, "run", rerun="neuroposter train")
    spec = read_json(run_dir / "model.json")
    name = spec.get("model")
    if name not in MODELS:
        raise DataError(f"{run_dir}/model.json names unknown model {name!r}; known: {', '.join(MODELS.names())}")
    kwargs = dict(spec.get("kwargs", {}))
    cls = model_class(name)
    if name == "cnn":
        model = cls(**kwargs, load_backbone_weights=False)   # weights come from the checkpoint
    elif name == "vit":
        model = cls(**kwargs, load_pretrained=False)
    else:
        model = cls(**kwargs)
    state = load_torch(run_dir / "checkpoint.pt")
    if not isinstance(state, Mapping) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise DataError(f"{run_dir}/checkpoint.pt is not a state dict (got {type(state).__name__}); "
                        "run `neuroposter train` again")
    try:
        model.load_state_dict(state)
    except RuntimeError as exc:
        detail = " ".join(line.strip() for line in str(exc).strip().splitlines()[:2])[:300]
        raise DataError(f"{run_dir}/checkpoint.pt does not fit model.json: {detail}") from None
    model.eval()
    config: dict[str, Any] = {}
    cfg_path = run_dir / "resolved_config.yaml"
    if cfg_path.is_file():
        import yaml

        config = yaml.safe_load(cfg_path.read_text(encoding="utf-8")) or {}
    metrics = read_json(run_dir / "metrics.json") if (run_dir / "metrics.json").is_file() else {}
    return LoadedRun(model=model, model_name=name, manifest=manifest, metrics=metrics, config=config,
                     run_dir=run_dir, model_json=spec)

