"""A training run end to end: model, fit, thresholds, test metrics beside baselines, and the run folder.

``WORKSPACE/runs/<name>/`` (``docs/contracts.md`` section 5) is written through
:func:`neuroposter.artifact.write_artifact`: assembled in a temporary folder, every file hashed into
the manifest, and swapped in whole, so it never holds a half-written run; an existing run is replaced
only with ``force``, and nothing that is not a run (a workspace, a folder of runs, a raw poster folder,
an input of the run) ever is. While training, the per-epoch training state lives in the hidden
sibling ``runs/.<name>.partial/`` (used by ``--resume``) and is removed once the run is complete.

The run's lock (:func:`claim_run`) is held from the destination check to the end, covering the
``.partial`` folder, so a second ``train`` of the same name fails at once instead of racing the first.
Under DistributedDataParallel only rank 0 checks, locks and writes; the other ranks learn its verdict
through a broadcast, so a refusal stops every rank instead of leaving them waiting.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import shutil
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Mapping

import numpy as np
import torch
from torch import nn

from neuroposter import errors as _errors
from neuroposter._io import atomic_path, atomic_write_json, read_json, sha256_json, to_jsonable
from neuroposter.artifact import artifact_lock, check_destination, check_free_space, write_artifact
from neuroposter.errors import DataError, ManifestError, NeuroposterError
from neuroposter.manifest import read_manifest, require_manifest, write_manifest
from neuroposter.models import MODELS, build_model, model_class
from neuroposter.train.checkpoint import load_torch, save_torch, tensor_bytes
from neuroposter.train.data import TaskData
from neuroposter.train.distributed import DistInfo
from neuroposter.train.loop import FitResult, TrainConfig, fit, predict
from neuroposter.train.metrics import constant_baselines, multilabel_metrics, tune_thresholds

__all__ = ["MODEL_TRAIN_DEFAULTS", "IMAGE_SIZE_DEFAULTS", "QAT_DEFAULTS", "QATPlan", "RunResult", "LoadedRun", "default_model_kwargs",
           "resolve_device", "partial_run_dir", "claim_run", "train_run", "load_run"]

log = logging.getLogger(__name__)

_IDENTITY = "identity.json"  # in the partial folder: the model and inputs a --resume must match
_AGREE_BYTES = 4096           # rank 0's verdict, broadcast to the other ranks (:func:`_agree`)

# Per-model optimisation defaults (CLI flags override them). Sized so the demo's five models train
# in a few minutes on 2 CPU cores; the demo passes its own --epochs and --patience.
# The spiking models train in float64 (see ``neuroposter.train.loop.PRECISIONS``: in float32 their thresholds turn
# the machine's last-bit rounding into different spikes, and the runs differ between machines and thread counts);
# their checkpoints are float32 like every other run's.
MODEL_TRAIN_DEFAULTS: dict[str, dict[str, Any]] = {
    "sdt": {"epochs": 40, "batch_size": 32, "lr": 5e-3, "patience": 10, "precision": "float64"},
    "sdt-pixels": {"epochs": 40, "batch_size": 32, "lr": 5e-3, "patience": 10, "precision": "float64"},
    "sdt-frontend": {"epochs": 20, "batch_size": 32, "lr": 5e-3, "patience": 6, "precision": "float64"},
    "snn-mlp": {"epochs": 40, "batch_size": 32, "lr": 5e-3, "patience": 10, "precision": "float64"},
    "chip-cnn": {"epochs": 40, "batch_size": 32, "lr": 5e-3, "patience": 10, "precision": "float64"},
    "ann-transformer": {"epochs": 40, "batch_size": 32, "lr": 1e-3, "patience": 10},
    "cnn": {"epochs": 60, "batch_size": 64, "lr": 2e-3, "patience": 15},
    "vit": {"epochs": 40, "batch_size": 32, "lr": 1e-3, "patience": 10},
}

# Square image side of the models that read posters themselves (``--image-size`` overrides it).
IMAGE_SIZE_DEFAULTS: dict[str, int] = {"vit": 96, "sdt-pixels": 32, "chip-cnn": 16}


# Quantisation-aware phase defaults: a short fine-tune at a tenth of the float learning rate, no warm-up.
QAT_DEFAULTS: dict[str, Any] = {"epochs": 10, "lr_factor": 0.1, "warmup": 0}


@dataclass(frozen=True)
class QATPlan:
    """Quantisation-aware training of a run (``neuroposter train --target``).

    Attributes:
        arithmetic: the target's weight arithmetic (:class:`neuroposter.ir.qat.Arithmetic`).
        cfg: optimisation settings of the quantisation-aware phase.
        init_state: weights to start from (a float run's checkpoint): then there is no float phase.
        init_from: what ``init_state`` is (``{"run", "key"}``; recorded in the manifest).
    """

    arithmetic: Any
    cfg: TrainConfig
    init_state: Mapping[str, torch.Tensor] | None = None
    init_from: Mapping[str, Any] | None = None

    def record(self) -> dict[str, Any]:
        """What the run's manifest and ``model.json`` record of it."""
        return {"arithmetic": self.arithmetic.to_dict(), "train": asdict(self.cfg),
                "init_from": dict(self.init_from) if self.init_from else None}


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


def _agree(dist: DistInfo, action: Callable[[], None]) -> None:
    """Runs ``action`` on rank 0 and makes every rank raise what it raised (or none of them).

    Without this a refusal on rank 0 would leave the other ranks waiting in their next collective.
    """
    error: BaseException | None = None
    if dist.is_main:
        try:
            action()
        except Exception as exc:  # noqa: BLE001 - re-raised below, on every rank
            error = exc
    if dist.distributed:
        import torch.distributed as tdist

        # a plain tensor broadcast (broadcast_object_list makes a later destroy_process_group hang now
        # and then under gloo, torch 2.3): byte 0 = failed?, then "<error class>\0<message>" in UTF-8
        on = torch.device("cuda", torch.cuda.current_device()) if tdist.get_backend() == "nccl" else "cpu"
        buf = torch.zeros(_AGREE_BYTES, dtype=torch.uint8)
        if error is not None:
            data = f"{type(error).__name__}\0{error}".encode("utf-8")[: _AGREE_BYTES - 1]
            buf[0] = 1
            buf[1:1 + len(data)] = torch.tensor(list(data), dtype=torch.uint8)
        buf = buf.to(on)
        tdist.broadcast(buf, src=0)
        buf = buf.cpu()
        if error is None and int(buf[0]) == 1:
            text = bytes(buf[1:].tolist()).rstrip(b"\0").decode("utf-8", errors="replace")
            name, _, message = text.partition("\0")
            cls = getattr(_errors, name, None)
            if not (isinstance(cls, type) and issubclass(cls, NeuroposterError)):
                cls, message = DataError, f"{name}: {message}"
            raise cls(f"{message} (rank 0)")
    if error is not None:
        raise error


@contextlib.contextmanager
def claim_run(run_dir: str | os.PathLike[str], *, force: bool = False,
              protect: Iterable[str | os.PathLike[str]] = (), dist: DistInfo | None = None) -> Iterator[None]:
    """Checks that ``run_dir`` may be written and holds its lock (rank 0) for the block.

    The lock (``.<name>.lock`` beside the run) covers the run and its ``.<name>.partial`` training
    state; it is re-entrant within the process, so :func:`train_run` inside the block takes it again.

    Args:
        run_dir: the run folder.
        force: an existing run may be replaced.
        protect: the inputs of the run (the destination must not overlap them).
        dist: DDP placement; only rank 0 checks and locks, every rank raises its refusal.

    Raises:
        UsageError: a refused destination (not a run, an input, an existing run without ``force``).
        ArtifactBusyError: another process is writing this run.
    """
    dist = dist or DistInfo()
    run_dir = Path(run_dir)
    protect = [p for p in protect if p is not None]
    with contextlib.ExitStack() as stack:
        def claim() -> None:
            check_destination(run_dir, "run", force=force, protect=protect)
            stack.enter_context(artifact_lock(run_dir))
            check_destination(run_dir, "run", force=force, protect=protect)  # again, under the lock

        _agree(dist, claim)
        yield


def _input_locations(task: TaskData) -> list[Path]:
    """The artifact folders the task was read from (existing paths only; tests pass ``"memory"``)."""
    out = []
    for entry in task.inputs_manifest.values():
        path = entry.get("path") if isinstance(entry, Mapping) else None
        if path and os.path.isdir(path):
            out.append(Path(path))
    return out


def default_model_kwargs(model: str, task: TaskData) -> dict[str, Any]:
    """Constructor kwargs fixed by the data (sizes, classes); everything else keeps the class defaults."""
    m = task.meta
    if model == "sdt":
        return {"d_in": m["d_in"], "n_tokens": m["n_tokens"], "n_classes": task.n_classes}
    if model in ("snn-mlp", "chip-snn"):
        return {"d_in": m["d_in"], "n_classes": task.n_classes}
    if model == "ann-transformer":
        return {"d_in": m["d_in"], "n_tokens": m["n_tokens"], "n_classes": task.n_classes}
    if model == "cnn":
        return {"n_classes": task.n_classes, "weights": m.get("weights", "random"), "d_feat": m.get("d_in", 1664)}
    if model == "sdt-frontend":   # the sdt head's input: the encoded set's T, tokens, width and grid
        return {"n_classes": task.n_classes, "image_size": list(m["image_size"]), "grid": list(m["grid"]),
                "T": m["T"], "d_in": m["d_in"], "n_tokens": m["n_tokens"]}
    if model in IMAGE_SIZE_DEFAULTS:
        return {"n_classes": task.n_classes, "image_size": m.get("image_size", IMAGE_SIZE_DEFAULTS[model])}
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
              on_epoch_end: Callable[[int, dict[str, list[float]]], None] | None = None,
              force: bool = False, protect: Iterable[str | os.PathLike[str]] = (),
              qat: QATPlan | None = None, head_state: Mapping[str, torch.Tensor] | None = None) -> RunResult | None:
    """Trains ``model`` on ``task`` and writes the run folder.

    The destination is checked and locked before anything else (:func:`claim_run`), so a refusal
    comes before any training and a second writer of the same run fails at once.

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
        force: replace an existing run of the same name (never anything that is not a run).
        protect: further inputs the run folder must not overlap (the task's own inputs always are).
        qat: train with a target's arithmetic in the forward pass (:mod:`neuroposter.ir.qat`): after the
            float phase (``cfg``; none when ``qat.init_state`` is given) a quantisation-aware phase
            (``qat.cfg``) with BatchNorm folded and frozen. The run's model keeps that arithmetic.
        head_state: sdt-frontend: the ``sdt`` run's checkpoint, loaded into its frozen head before training
            (``model_kwargs`` name that run: ``head_run``, ``head_key``).

    Returns:
        A :class:`RunResult` on rank 0, None on other ranks.

    Raises:
        UsageError: a refused destination. ArtifactBusyError: another process writes this run.
        ResourceError: the disk is full (the training state stays for ``--resume``).
        DataError: ``resume`` with an interrupted run of another model, inputs or settings.
    """
    dist = dist or DistInfo()
    run_dir = Path(run_dir)
    protect = [*protect, *_input_locations(task)]
    with claim_run(run_dir, force=force, protect=protect, dist=dist):
        return _train_claimed(model, task, run_dir, cfg, model_kwargs=model_kwargs, device=device, dist=dist,
                              resume=resume, store=store, write_config=write_config, on_epoch_end=on_epoch_end,
                              force=force, protect=protect, qat=qat, head_state=head_state)


def _train_claimed(model: str, task: TaskData, run_dir: Path, cfg: TrainConfig, *,
                   model_kwargs: Mapping[str, Any] | None, device: str | torch.device, dist: DistInfo,
                   resume: bool, store: Any, write_config: Callable[[Path], None] | None,
                   on_epoch_end: Callable[[int, dict[str, list[float]]], None] | None,
                   force: bool, protect: list[Path], qat: QATPlan | None = None,
                   head_state: Mapping[str, torch.Tensor] | None = None) -> RunResult | None:
    """:func:`train_run` with the run's lock held (on rank 0)."""
    device = torch.device(device)
    kwargs = {**default_model_kwargs(model, task), **dict(model_kwargs or {})}
    partial = partial_run_dir(run_dir)
    qat = _with_input_range(qat, task)
    identity = to_jsonable({"model": model, "model_kwargs": kwargs,
                            "inputs": {k: v.get("key") for k, v in task.inputs_manifest.items()},
                            **({"qat": qat.record()} if qat else {})})
    if resume and (partial / "train_state.pt").is_file():  # every rank checks, so all of them stop together
        # the training state only knows the optimisation settings: the model and its inputs must match too
        old = read_json(partial / _IDENTITY) if (partial / _IDENTITY).is_file() else None
        if old != identity:
            what = "an unknown model or inputs" if not isinstance(old, dict) else ", ".join(
                k for k in ("model", "model_kwargs", "inputs", "qat") if old.get(k) != identity.get(k))
            raise DataError(f"{partial}: the interrupted run differs in {what}; rerun without --resume, "
                            "or with the same model and inputs")
    torch.manual_seed(cfg.seed)
    trainable = _build_trainable(model, kwargs, task, store)
    if model == "sdt-frontend":
        if head_state is None:
            raise DataError("sdt-frontend trains a front end for a trained sdt head: pass that run's checkpoint "
                            "(`neuroposter train --model sdt-frontend --init-from <sdt run>`)")
        try:
            trainable.load_head(head_state)
        except ValueError as exc:
            raise DataError(f"sdt-frontend: {exc}") from None
    # the per-epoch state (model, best model, two AdamW moments; written beside the previous one) and
    # the checkpoint: refuse a disk that cannot hold them before training rather than after
    param_bytes = tensor_bytes(trainable.state_dict())

    def prepare() -> None:
        check_free_space(partial, 9 * param_bytes + (1 << 20), "the training state and the checkpoint")
        if not resume and partial.exists():
            shutil.rmtree(partial)
        partial.mkdir(parents=True, exist_ok=True)
        atomic_write_json(partial / _IDENTITY, identity)

    _agree(dist, prepare)   # rank 0 prepares; a failure there stops every rank
    t0 = time.perf_counter()
    if qat is None:
        result = fit(trainable, task, cfg, device=device, dist=dist, state_path=partial / "train_state.pt",
                     resume=resume, desc=f"train {run_dir.name}", on_epoch_end=on_epoch_end)
        float_result = None
    else:
        float_result, result = _fit_qat(trainable, task, cfg, qat, device=device, dist=dist, partial=partial,
                                        resume=resume, name=run_dir.name, on_epoch_end=on_epoch_end)
    seconds = time.perf_counter() - t0

    # rank 0 evaluates and writes; the other ranks wait for it and share its failure, so that every
    # process ends together and with the same outcome (exit status under torchrun)
    out: list[RunResult] = []

    def finish() -> None:
        bs = max(cfg.batch_size, 64)
        # the stored weights are float32 (the checkpoint's dtype): evaluate those, in the training precision
        trainable.float().to(getattr(torch, cfg.precision))
        qat_state = getattr(trainable, "_qat_state", None)
        if qat_state is not None:
            qat_state.version = None      # rebuild the integer plan from the rounded weights
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
        if model == "sdt-frontend":
            metrics["frontend"] = {"head_run": kwargs.get("head_run"), "head_key": kwargs.get("head_key"),
                                   "distill_weight": float(trainable.distill_weight),
                                   "image_size": list(trainable.image_size), "widths": list(trainable.widths),
                                   "head": "frozen (the sdt run's weights, BatchNorm in eval mode)"}
        if qat is not None:
            metrics["qat"] = {"arithmetic": qat.arithmetic.to_dict(), "description": qat.arithmetic.describe(),
                              "init_from": dict(qat.init_from) if qat.init_from else None,
                              "float_phase": None if float_result is None else {
                                  "best_epoch": float_result.best_epoch, "epochs_run": float_result.epochs_run,
                                  "best_val_map": float_result.best_val_map}}

        final = _final_model(model, kwargs, trainable.to("cpu").float(), task, store)
        spec = MODELS.get(model)
        model_json = {"model": model, "class": spec.entry, "kwargs": kwargs, "inputs": spec.inputs,
                      "kind": spec.kind, "genres": list(task.genres), "input_meta": task.meta}
        if qat is not None:
            model_json["deploy"] = qat.arithmetic.to_dict()
        run_key = sha256_json({"model": model, "kwargs": kwargs, "train": asdict(cfg),
                               "inputs": {k: v.get("key") for k, v in task.inputs_manifest.items()},
                               **({"qat": qat.record()} if qat else {})})
        state = final.state_dict()
        needs = tensor_bytes(state) + 2 * int(test.scores.size) * 4 + (2 << 20)   # + predictions, curves, json
        with write_artifact(run_dir, "run", force=force, protect=protect, needs_bytes=needs) as tmp:
            save_torch(state, tmp / "checkpoint.pt", shown=run_dir / "checkpoint.pt",
                       hint=f"free some space and run again with --resume (the training state is kept in "
                            f"{partial})")
            atomic_write_json(tmp / "model.json", model_json)
            atomic_write_json(tmp / "metrics.json", metrics)
            # NeuroBench-named counts and energies of the trained network on test inputs (hashed by the manifest)
            from neuroposter.profiling.api import RUN_SAMPLES, write_run_results
            from neuroposter.train.data import to_model_input

            write_run_results(tmp, final, _time_first(final, to_model_input(task.test.inputs[:RUN_SAMPLES],
                                                                            task.layout))
                              if spec.kind == "snn" else None, kind=spec.kind, name=run_dir.name, metrics=metrics)
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
                           config={"model": model, "model_kwargs": kwargs, "train": asdict(cfg),
                                   "device": str(device), "world_size": dist.world_size,
                                   **({"qat": qat.record()} if qat else {})},
                           key=run_key, extra={"model": model, "extra": {"model": model}})
        shutil.rmtree(partial, ignore_errors=True)
        log.info("run %s: test micro-F1 %.3f mAP %.3f", run_dir, metrics["micro_f1"], metrics["map"])
        out.append(RunResult(run_dir, metrics, result, seconds))

    _agree(dist, finish)
    return out[0] if dist.is_main else None


def _time_first(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """A spiking model's input time-first: images ``[B, 3, S, S]`` of a pixel model (direct encoding) become the
    ``[T, B, 3, S, S]`` currents its steps receive; spike inputs are time-first already."""
    if x.dim() == 4 and hasattr(model, "stem"):
        return x.unsqueeze(0).expand(int(model.T), *x.shape)
    return x


def _with_input_range(qat: QATPlan | None, task: TaskData) -> QATPlan | None:
    """``qat`` with the analog input's range for a model fed images (the pixel SDT, direct encoding): the training
    split's largest ``|x|`` (``Arithmetic.input_amax``). The run records it (``model.json`` ``"deploy"``), the lowering
    writes it into the graph and the Loihi target's graded input takes its scale from it: training and export
    quantise the image alike. Spiking inputs: ``qat`` unchanged."""
    if qat is None or task.layout != "images" or qat.arithmetic.input_amax is not None:
        return qat
    x = task.train.inputs
    amax = float(x.abs().max()) if x.numel() else 0.0
    if not math.isfinite(amax) or amax <= 0:
        raise DataError(f"the training images' largest |x| is {amax}: no input range for the graded input; "
                        "check the image dataset")
    return replace(qat, arithmetic=replace(qat.arithmetic, input_amax=amax))


def _fit_qat(model: nn.Module, task: TaskData, cfg: TrainConfig, qat: QATPlan, *, device: torch.device,
             dist: DistInfo, partial: Path, resume: bool, name: str,
             on_epoch_end: Callable[[int, dict[str, list[float]]], None] | None) -> tuple[FitResult | None, FitResult]:
    """The float phase (unless ``qat.init_state``), then the quantisation-aware phase; returns both results.

    The float phase's best weights are kept in ``float_phase.pt`` beside the training states, so a
    ``--resume`` during the quantisation-aware phase does not train the float phase again.
    """
    from neuroposter.ir.qat import enable

    float_result = None
    if qat.init_state is not None:
        model.load_state_dict(qat.init_state)
    else:
        saved = partial / "float_phase.pt"
        if resume and saved.is_file():
            st = load_torch(saved)
            model.load_state_dict(st["model"])
            float_result = FitResult(best_state=st["model"], **st["result"])
        else:
            float_result = fit(model, task, cfg, device=device, dist=dist, state_path=partial / "train_state.pt",
                               resume=resume, desc=f"train {name} (float)", on_epoch_end=on_epoch_end)
            if dist.is_main:
                save_torch({"model": float_result.best_state, "result": {
                    k: getattr(float_result, k) for k in ("best_epoch", "best_val_map", "epochs_run", "stopped_early",
                                                          "history", "resumed_from")}}, saved,
                           hint="free some space and run again with --resume")
    from neuroposter.targets import training_quantiser

    enable(model, qat.arithmetic, training_quantiser(qat.arithmetic))
    result = fit(model, task, qat.cfg, device=device, dist=dist, state_path=partial / "train_state_qat.pt",
                 resume=resume, desc=f"train {name} ({qat.arithmetic.target} arithmetic)", on_epoch_end=on_epoch_end)
    if float_result is not None:   # one curve: the float epochs, then the quantisation-aware ones
        n = len(float_result.history.get("epoch", []))
        result.history = {k: list(float_result.history.get(k, [])) + ([e + n for e in v] if k == "epoch" else list(v))
                          for k, v in result.history.items()}
    return float_result, result


def _rerun_command(run_dir: Path) -> str:
    """The command that rebuilds the run at ``run_dir`` (quoted in refusals)."""
    try:
        model = read_manifest(run_dir).get("model")
    except ManifestError:
        return "neuroposter train"
    name = run_dir.name if run_dir.parent.name == "runs" else str(run_dir)
    return f"neuroposter train --model {model} --name {name} --force" if model else "neuroposter train"


def load_run(run_dir: str | os.PathLike[str]) -> LoadedRun:
    """Rebuilds a finished run's model from ``model.json`` + ``checkpoint.pt`` (eval mode, CPU).

    Raises:
        ManifestError: not a finished run folder, or one of its files (e.g. ``checkpoint.pt``) changed
            since it was written: the message names the file and says to run ``neuroposter train``.
        DataError: unreadable model description or checkpoint.
    """
    run_dir = Path(run_dir)
    manifest = require_manifest(run_dir, "run", rerun=_rerun_command(run_dir))
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
    if spec.get("deploy"):
        from neuroposter.ir.qat import Arithmetic, QATError, enable

        from neuroposter.targets import training_quantiser

        try:
            arith = Arithmetic.from_dict(spec["deploy"])
            enable(model, arith, training_quantiser(arith))
        except QATError as exc:
            raise DataError(f"{run_dir}/model.json: {exc}") from None
    config: dict[str, Any] = {}
    cfg_path = run_dir / "resolved_config.yaml"
    if cfg_path.is_file():
        import yaml

        config = yaml.safe_load(cfg_path.read_text(encoding="utf-8")) or {}
    metrics = read_json(run_dir / "metrics.json") if (run_dir / "metrics.json").is_file() else {}
    return LoadedRun(model=model, model_name=name, manifest=manifest, metrics=metrics, config=config,
                     run_dir=run_dir, model_json=spec)

