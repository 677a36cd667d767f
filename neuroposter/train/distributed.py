"""Data-parallel training: process-group set-up from ``torchrun`` variables, and BatchNorm over the global batch.

``torchrun --nproc_per_node=N -m neuroposter train ...`` sets ``WORLD_SIZE``/``RANK``/``LOCAL_RANK``;
:func:`init_distributed` then joins the group (gloo on CPU, NCCL on GPU). Each rank sees
``batch_size / N`` samples per step (a ``DistributedSampler`` shard of the same seeded permutation),
``DistributedDataParallel`` averages gradients, and rank 0 writes the outputs.

BatchNorm: ``torch.nn.SyncBatchNorm`` refuses CPU tensors, and per-rank statistics would make a
2-process run differ from the 1-process run with the same global batch. :class:`GlobalBatchNorm1d`
computes the batch mean and variance over all ranks with the differentiable
``torch.distributed.nn.functional.all_reduce`` (two passes: mean, then centred squares), so the
forward, the gradients (autograd sums the statistics' gradients across ranks) and the running
statistics equal those of one process seeing the whole global batch, up to float reduction order.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
from torch import Tensor, nn

__all__ = ["DistInfo", "dist_info_from_env", "init_distributed", "shutdown_distributed",
           "GlobalBatchNorm1d", "convert_global_batchnorm"]


@dataclass(frozen=True)
class DistInfo:
    """Where this process sits in a (possibly single-process) run."""

    world_size: int = 1
    rank: int = 0
    local_rank: int = 0

    @property
    def distributed(self) -> bool:
        """True with more than one process."""
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        """True on rank 0 (the one that writes outputs)."""
        return self.rank == 0


def dist_info_from_env() -> DistInfo:
    """Reads ``WORLD_SIZE``, ``RANK``, ``LOCAL_RANK`` (set by ``torchrun``); single process otherwise."""
    return DistInfo(int(os.environ.get("WORLD_SIZE", "1")), int(os.environ.get("RANK", "0")),
                    int(os.environ.get("LOCAL_RANK", "0")))


def init_distributed(info: DistInfo, device: torch.device) -> None:
    """Joins the process group (NCCL for CUDA devices, gloo otherwise) when ``info.distributed``."""
    import torch.distributed as dist

    if not info.distributed or dist.is_initialized():
        return
    backend = "nccl" if device.type == "cuda" else "gloo"
    dist.init_process_group(backend=backend, rank=info.rank, world_size=info.world_size)


def shutdown_distributed(barrier_timeout_s: float = 60.0) -> None:
    """Leaves the process group if one is active.

    Under gloo every rank first meets the others in a ``monitored_barrier`` (which gives up after
    ``barrier_timeout_s``, e.g. when another rank died): a rank tearing the group down while its peer
    is still using it makes ``destroy_process_group`` hang now and then (pytorch/pytorch#75097; seen
    here with torch 2.3 after a rank-0 refusal).
    """
    import datetime

    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        if dist.get_backend() == "gloo":
            try:
                dist.monitored_barrier(timeout=datetime.timedelta(seconds=barrier_timeout_s))
            except RuntimeError:   # a rank that is gone: leave anyway
                pass
        dist.destroy_process_group()


class GlobalBatchNorm1d(nn.BatchNorm1d):
    """``BatchNorm1d`` whose training statistics span every rank's batch (CPU and GPU).

    Same parameters, buffers and state-dict keys as ``BatchNorm1d``; in eval mode, or without an
    active multi-process group, it *is* ``BatchNorm1d``. Input ``[M, C]`` (rows = samples).
    """

    def forward(self, x: Tensor) -> Tensor:
        import torch.distributed as dist

        if not (self.training and dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1):
            return super().forward(x)
        if x.dim() != 2:
            raise ValueError(f"GlobalBatchNorm1d expects [M, C], got {tuple(x.shape)}")
        from torch.distributed.nn.functional import all_reduce

        count = all_reduce(torch.tensor([float(x.shape[0])], device=x.device, dtype=x.dtype))  # [1]
        mean = all_reduce(x.sum(dim=0)) / count                                                 # [C]
        var = all_reduce((x - mean).pow(2).sum(dim=0)) / count                                  # biased, [C]
        if self.track_running_stats and self.running_mean is not None and self.running_var is not None:
            with torch.no_grad():
                n = float(count.item())
                m = self.momentum if self.momentum is not None else 0.1
                self.running_mean.mul_(1 - m).add_(mean.detach(), alpha=m)
                self.running_var.mul_(1 - m).add_(var.detach() * (n / max(n - 1.0, 1.0)), alpha=m)
                if self.num_batches_tracked is not None:
                    self.num_batches_tracked.add_(1)
        y = (x - mean) * torch.rsqrt(var + self.eps)
        return y * self.weight + self.bias if self.affine else y


def convert_global_batchnorm(module: nn.Module) -> nn.Module:
    """Turns every ``BatchNorm1d`` inside ``module`` into :class:`GlobalBatchNorm1d`, in place.

    Only the class changes (parameters, buffers and names stay), so checkpoints remain plain
    ``BatchNorm1d`` state dicts.
    """
    for m in module.modules():
        if type(m) is nn.BatchNorm1d:
            m.__class__ = GlobalBatchNorm1d
    return module

