"""Two CPU processes (gloo, DistributedDataParallel) train to the single-process result.

Both runs use the same global batch (16 = 2 x 8 under DDP) and the same seeded permutation
(``DistributedSampler(seed, epoch)``: rank r takes every other sample, so the union of the two
ranks' step-k batches is the single process's step-k batch). ``GlobalBatchNorm1d`` normalises over
the global batch, DDP averages gradients of the per-rank mean losses (= the gradient of the global
mean loss), so the two trainings are the same computation up to float reduction order.
"""

from __future__ import annotations

import os
import socket
from pathlib import Path

import pytest
import torch
import torch.multiprocessing as mp
from conftest import make_spike_task

from neuroposter.models import SpikeDrivenTransformer
from neuroposter.train import DistInfo, TrainConfig, fit
from neuroposter.train.distributed import init_distributed, shutdown_distributed

CFG = TrainConfig(epochs=2, batch_size=16, lr=2e-3, patience=10)
KW = dict(d_in=32, n_tokens=6, n_classes=4, d_model=16, depth=1, heads=2, mlp_hidden=16)


def _train(info: DistInfo) -> dict[str, torch.Tensor]:
    task = make_spike_task(n=128)   # 64 train samples: 4 global steps of 16 per epoch
    torch.manual_seed(CFG.seed)
    model = SpikeDrivenTransformer(**KW)
    res = fit(model, task, CFG, dist=info)
    return res.best_state


def _worker(rank: int, port: int, out: str) -> None:
    torch.set_num_threads(1)
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    info = DistInfo(world_size=2, rank=rank, local_rank=rank)
    init_distributed(info, torch.device("cpu"))
    try:
        state = _train(info)
        torch.save(state, Path(out) / f"rank{rank}.pt")
    finally:
        shutdown_distributed()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.mark.slow
def test_two_process_ddp_matches_single_process(tmp_path: Path) -> None:
    torch.set_num_threads(1)
    single = _train(DistInfo())
    mp.spawn(_worker, args=(_free_port(), str(tmp_path)), nprocs=2, join=True)
    r0 = torch.load(tmp_path / "rank0.pt", weights_only=True)
    r1 = torch.load(tmp_path / "rank1.pt", weights_only=True)
    for k in single:
        assert torch.equal(r0[k], r1[k]), f"ranks disagree on {k}"
        if single[k].is_floating_point():
            torch.testing.assert_close(r0[k], single[k], rtol=1e-4, atol=1e-5, msg=f"{k} differs")
        else:
            assert torch.equal(r0[k], single[k]), k
