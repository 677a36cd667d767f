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
import importlib.util
from pathlib import Path as _Path

# this folder's conftest by path: a bare `from conftest import` picks whichever conftest pytest imported last
_spec = importlib.util.spec_from_file_location("_train_conftest", _Path(__file__).with_name("conftest.py"))
_conftest = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_conftest)
make_spike_task = _conftest.make_spike_task

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


def _run_worker(rank: int, port: int, out: str, run_dir: str, force: bool) -> None:
    """One rank of ``train_run`` under DDP; writes what it ended with to ``out/rank<r>.txt``."""
    from neuroposter.train import train_run

    torch.set_num_threads(1)
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    info = DistInfo(world_size=2, rank=rank, local_rank=rank)
    init_distributed(info, torch.device("cpu"))
    try:
        res = train_run("sdt", make_spike_task(n=128), run_dir, CFG, dist=info, force=force,
                        model_kwargs={k: KW[k] for k in ("d_model", "depth", "heads", "mlp_hidden")})
        outcome = "ok" if (res is not None) == (rank == 0) else f"unexpected result {res!r}"
    except Exception as exc:  # noqa: BLE001 - recorded for the test
        outcome = f"{type(exc).__name__}: {exc}"
    finally:
        shutdown_distributed()
    (Path(out) / f"rank{rank}.txt").write_text(outcome)


def _spawn_with_deadline(args: tuple, seconds: float) -> None:
    import time

    ctx = mp.spawn(_run_worker, args=args, nprocs=2, join=False)
    deadline = time.monotonic() + seconds
    while not ctx.join(timeout=1.0):
        if time.monotonic() > deadline:
            for p in ctx.processes:
                p.kill()
            pytest.fail("a rank hung (a refusal on rank 0 must stop every rank)")


@pytest.mark.slow
def test_ddp_train_run_writes_on_rank0_and_a_refusal_stops_every_rank(tmp_path: Path) -> None:
    from neuroposter.train import load_run

    run = tmp_path / "runs" / "r"
    _spawn_with_deadline((_free_port(), str(tmp_path), str(run), False), 300)
    assert [(tmp_path / f"rank{r}.txt").read_text() for r in (0, 1)] == ["ok", "ok"]
    assert load_run(run).manifest["config"]["world_size"] == 2
    before = (run / "checkpoint.pt").read_bytes()
    # the run exists and --force is not given: rank 0 refuses, rank 1 must not wait for it forever
    _spawn_with_deadline((_free_port(), str(tmp_path), str(run), False), 120)
    outcomes = [(tmp_path / f"rank{r}.txt").read_text() for r in (0, 1)]
    assert all(o.startswith("UsageError:") and "pass --force" in o for o in outcomes), outcomes
    assert (run / "checkpoint.pt").read_bytes() == before
