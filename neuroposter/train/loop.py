"""The training loop: AdamW, linear warm-up + cosine schedule, early stopping on validation mAP.

Model-agnostic: a model maps the input from :func:`~neuroposter.train.data.to_model_input` to logits
``[B, C]`` (ANNs) or ``[T, B, C]`` (SNNs, averaged over ``T``: :func:`logits_of`). Reproducible: the
sample order of epoch ``e`` is the seeded permutation of ``DistributedSampler(seed, epoch=e)`` and the
torch RNG (dropout) is reseeded from ``(seed, epoch, rank)`` at every epoch start, so an interrupted
run resumed from its per-epoch training state (:func:`fit` with ``resume=True``) ends with exactly
the weights of an uninterrupted one. With ``WORLD_SIZE > 1`` the model is wrapped in
``DistributedDataParallel`` and ``batch_size`` is the *global* batch (each rank takes its share).
"""

from __future__ import annotations

import logging
import math
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from torch import Tensor, nn
from torch.utils.data import DistributedSampler

from neuroposter._progress import progress
from neuroposter.errors import DataError
from neuroposter.models.lif import LIF
from neuroposter.train.checkpoint import load_torch, rng_state, save_torch, set_rng_state
from neuroposter.train.data import InputLayout, SplitData, TaskData, to_model_input
from neuroposter.train.distributed import DistInfo, convert_global_batchnorm
from neuroposter.train.losses import multilabel_loss, pos_weight_from_labels
from neuroposter.train.metrics import average_precision_macro

__all__ = ["PRECISIONS", "model_dtype", "TrainConfig", "FitResult", "Prediction", "fit", "predict", "logits_of", "warmup_cosine"]

log = logging.getLogger(__name__)

STATE_VERSION = 1

# Training precisions. Spiking models train in float64 (``MODEL_TRAIN_DEFAULTS``): a threshold ``v > v_th`` turns
# a last-bit difference of a float32 sum (whose order depends on the BLAS kernel, the CPU's instruction set and the
# thread count) into a different spike, and training amplifies that into different weights and metrics on every
# machine. In float64 those differences are ~1e-16 instead of ~1e-7 and no spike flips in practice (measured:
# ``benchmarks/train_throughput.py --reproducibility``).
PRECISIONS = ("float32", "float64")


def model_dtype(model: nn.Module) -> torch.dtype:
    """The floating dtype of ``model``'s first floating parameter (float32 for a model without any)."""
    for p in model.parameters():
        if p.is_floating_point():
            return p.dtype
    return torch.float32


@dataclass(frozen=True)
class TrainConfig:
    """Optimisation settings of one run."""

    epochs: int = 30              # maximum epochs
    batch_size: int = 32          # global batch (split across ranks under DDP)
    lr: float = 2e-3              # AdamW peak learning rate
    weight_decay: float = 0.01    # AdamW decay on weight matrices (not on biases, norms, positional biases)
    warmup: int = 1               # linear warm-up epochs before the cosine decay
    patience: int = 8             # early stopping: epochs without a better validation mAP
    seed: int = 0                 # model init, sample order and dropout
    max_pos_weight: float = 10.0  # clip of the per-genre BCE pos_weight = neg / pos
    grad_clip: float = 1.0        # max global gradient norm (0: off)
    precision: str = "float32"    # dtype of the parameters and activations while training (PRECISIONS)

    def __post_init__(self) -> None:
        if self.precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, got {self.precision!r}")
        if self.epochs < 1 or self.batch_size < 1:
            raise ValueError(f"epochs and batch_size must be >= 1 (got {self.epochs}, {self.batch_size})")
        if self.lr <= 0:
            raise ValueError(f"lr must be > 0, got {self.lr}")


@dataclass
class FitResult:
    """What :func:`fit` returns (the model it was given now holds ``best_state``)."""

    best_state: dict[str, Tensor]
    best_epoch: int
    best_val_map: float
    epochs_run: int
    stopped_early: bool
    history: dict[str, list[float]] = field(default_factory=dict)
    resumed_from: int = 0


@dataclass
class Prediction:
    """Predictions on one split: probabilities, labels and firing rates."""

    scores: np.ndarray                 # [n, G] sigmoid probabilities
    labels: np.ndarray                 # [n, G] 0/1
    firing_rates: dict[str, float]     # per LIF layer, over the whole split (SNNs; empty otherwise)


def logits_of(model: nn.Module, x: Tensor) -> Tensor:
    """Model output as ``[B, C]`` logits (SNN outputs ``[T, B, C]`` are averaged over ``T``)."""
    out = model(x)
    return out.mean(dim=0) if out.dim() == 3 else out


def warmup_cosine(warmup_steps: int, total_steps: int) -> Callable[[int], float]:
    """LR multiplier: linear ramp to 1 over ``warmup_steps``, then cosine decay to 0 at ``total_steps``."""

    def f(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / warmup_steps
        span = max(total_steps - warmup_steps, 1)
        return 0.5 * (1.0 + math.cos(math.pi * min(step - warmup_steps, span) / span))

    return f


def _param_groups(model: nn.Module, weight_decay: float) -> list[dict[str, Any]]:
    decay, no_decay = [], []
    for p in model.parameters():
        if p.requires_grad:
            (decay if p.dim() >= 2 else no_decay).append(p)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def _lif_modules(model: nn.Module) -> dict[str, LIF]:
    return {n: m for n, m in model.named_modules() if isinstance(m, LIF)}


@torch.no_grad()
def predict(model: nn.Module, split: SplitData, layout: InputLayout, *, batch_size: int = 64,
            device: torch.device | str = "cpu") -> Prediction:
    """Runs ``model`` (eval mode) over a whole split; records SNN firing rates over all of it."""
    was_training = model.training
    model.eval()
    lifs = _lif_modules(model)
    spikes = {n: 0.0 for n in lifs}
    numel = {n: 0 for n in lifs}
    scores = []
    dtype = model_dtype(model)
    for s in range(0, len(split), batch_size):
        x = to_model_input(split.inputs[s:s + batch_size], layout, device, dtype=dtype)
        scores.append(torch.sigmoid(logits_of(model, x)).float().cpu())
        for n, m in lifs.items():
            c, k = m.spike_count
            spikes[n] += c
            numel[n] += k
    model.train(was_training)
    rates = {n: spikes[n] / numel[n] for n in lifs if numel[n]}
    return Prediction(torch.cat(scores).numpy(), split.labels.numpy().astype(np.uint8), rates)


def _epoch_seed(seed: int, epoch: int, rank: int) -> int:
    return (seed * 1_000_003 + epoch * 7_919 + rank * 104_729) % (2**63 - 1)


def _clone_state(model: nn.Module) -> dict[str, Tensor]:
    return {k: v.detach().to("cpu", copy=True) for k, v in model.state_dict().items()}


def fit(model: nn.Module, task: TaskData, cfg: TrainConfig, *, device: torch.device | str = "cpu",
        dist: DistInfo | None = None, state_path: str | os.PathLike[str] | None = None, resume: bool = False,
        desc: str = "train", on_epoch_end: Callable[[int, dict[str, list[float]]], None] | None = None) -> FitResult:
    """Trains ``model`` on ``task.train``, early-stopping on ``task.val`` mAP; leaves the best weights loaded.

    Args:
        model: the network (moved to ``device``).
        task: the data.
        cfg: optimisation settings.
        device: where to train.
        dist: the process's place in a DDP run (default: single process).
        state_path: where the per-epoch training state goes (written atomically, rank 0); None: not saved.
        resume: continue from ``state_path`` if it exists.
        desc: progress-bar label.
        on_epoch_end: called after each epoch's state is saved with ``(epochs_done, history)``.

    Returns:
        A :class:`FitResult`.

    Raises:
        DataError: a training state that belongs to other settings.
    """
    dist = dist or DistInfo()
    device = torch.device(device)
    if cfg.batch_size % dist.world_size:
        raise ValueError(f"batch size {cfg.batch_size} is not divisible by {dist.world_size} processes")
    dtype = getattr(torch, cfg.precision)
    model.to(device=device, dtype=dtype)
    train_model: nn.Module = model
    if dist.distributed:
        from torch.nn.parallel import DistributedDataParallel as DDP

        convert_global_batchnorm(model)
        train_model = DDP(model, device_ids=[device.index] if device.type == "cuda" else None,
                          broadcast_buffers=False)
    local_bs = cfg.batch_size // dist.world_size
    steps_per_epoch = math.ceil(math.ceil(len(task.train) / dist.world_size) / local_bs)
    total_steps = steps_per_epoch * cfg.epochs
    optimizer = torch.optim.AdamW(_param_groups(model, cfg.weight_decay), lr=cfg.lr)
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, warmup_cosine(min(cfg.warmup * steps_per_epoch, total_steps), total_steps))
    criterion = multilabel_loss(pos_weight_from_labels(task.train.labels, cfg.max_pos_weight).to(device, dtype))

    history: dict[str, list[float]] = {"epoch": [], "train_loss": [], "val_loss": [], "val_map": [], "lr": []}
    start, best_epoch, bad = 0, -1, 0
    best_score = -math.inf
    best_state = _clone_state(model)
    cfg_dict = asdict(cfg)
    if resume and state_path is not None and Path(state_path).is_file():
        st = load_torch(state_path)
        if not isinstance(st, dict) or not {"model", "optimizer", "scheduler", "rng", "epoch"} <= set(st):
            raise DataError(f"{state_path}: not a training state of this project; rerun without --resume")
        if st.get("version") != STATE_VERSION or st.get("config") != cfg_dict:
            raise DataError(f"{state_path}: the interrupted run used other settings ({st.get('config')}); "
                            "rerun without --resume, or with the same settings")
        model.load_state_dict(st["model"])
        optimizer.load_state_dict(st["optimizer"])
        scheduler.load_state_dict(st["scheduler"])
        set_rng_state(st["rng"])
        start, best_epoch, bad = int(st["epoch"]), int(st["best_epoch"]), int(st["bad_epochs"])
        best_score, best_state = float(st["best_score"]), st["best_state"]
        history = {k: list(v) for k, v in st["history"].items()}
        log.info("resuming %s after epoch %d", desc, start)
    resumed_from = start

    sampler = DistributedSampler(task.train, num_replicas=dist.world_size, rank=dist.rank, shuffle=True,
                                 seed=cfg.seed, drop_last=False)
    epochs = range(start, cfg.epochs)
    bar = progress(epochs, desc=desc, total=len(epochs), unit="epoch") if dist.is_main else epochs
    stopped = bad >= cfg.patience
    epoch = start
    for epoch in bar:
        if stopped:
            break
        torch.manual_seed(_epoch_seed(cfg.seed, epoch, dist.rank))
        sampler.set_epoch(epoch)
        order = list(sampler)
        train_model.train()
        loss_sum = torch.zeros(2, dtype=torch.float64, device=device)   # [sum of loss * n, n]
        for s in range(0, len(order), local_bs):
            idx = order[s:s + local_bs]
            x = to_model_input(task.train.inputs[idx], task.layout, device, dtype=dtype)
            y = task.train.labels[idx].to(device, dtype)
            loss = criterion(logits_of(train_model, x), y)
            if task.train.aux is not None:   # a model's own extra term (e.g. sdt-frontend's distillation)
                loss = loss + model.auxiliary_loss(task.train.aux[idx])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if cfg.grad_clip > 0:
                nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
            optimizer.step()
            scheduler.step()
            loss_sum += torch.tensor([float(loss.detach()) * len(idx), len(idx)], dtype=torch.float64, device=device)
        if dist.distributed:
            import torch.distributed as tdist

            tdist.all_reduce(loss_sum)
        val = predict(model, task.val, task.layout, batch_size=max(local_bs, 64), device=device)
        val_loss = float(nn.functional.binary_cross_entropy(
            torch.from_numpy(val.scores).clamp(1e-7, 1 - 1e-7), torch.from_numpy(val.labels).float()))
        val_map = average_precision_macro(val.labels, val.scores)
        score = val_map if not math.isnan(val_map) else -val_loss
        history["epoch"].append(epoch + 1)
        history["train_loss"].append(float(loss_sum[0] / loss_sum[1]))
        history["val_loss"].append(val_loss)
        history["val_map"].append(val_map)
        history["lr"].append(float(scheduler.get_last_lr()[0]))
        if score > best_score + 1e-9:
            best_score, best_epoch, bad = score, epoch + 1, 0
            best_state = _clone_state(model)
        else:
            bad += 1
        stopped = bad >= cfg.patience
        if dist.is_main:
            if hasattr(bar, "set_postfix"):
                bar.set_postfix(loss=f"{history['train_loss'][-1]:.4f}", val_map=f"{val_map:.4f}")
            if state_path is not None:
                save_torch({"version": STATE_VERSION, "config": cfg_dict, "epoch": epoch + 1,
                            "model": _clone_state(model), "optimizer": optimizer.state_dict(),
                            "scheduler": scheduler.state_dict(), "rng": rng_state(),
                            "best_state": best_state, "best_score": best_score, "best_epoch": best_epoch,
                            "bad_epochs": bad, "history": history}, state_path,
                           hint="free some space and run again with --resume")
        if on_epoch_end is not None:
            on_epoch_end(epoch + 1, history)
    model.load_state_dict(best_state)
    return FitResult(best_state=best_state, best_epoch=best_epoch, best_val_map=best_score,
                     epochs_run=len(history["epoch"]), stopped_early=stopped and len(history["epoch"]) < cfg.epochs,
                     history=history, resumed_from=resumed_from)

