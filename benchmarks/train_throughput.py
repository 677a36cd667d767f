"""Training throughput of the SDT: time-folded stateless layers vs a per-timestep loop, same model.

The project's SDT runs every Linear/BatchNorm once on the folded ``[T*B*N, d]`` batch and loops only
the LIF neurons over ``T``. The baseline here runs the *same modules* the way a step-by-step SNN
simulator does: for each of the ``T`` steps, every layer on ``[B, N, d]`` and one LIF step with the
carried membrane (so BatchNorm sees per-step statistics; the point is speed, not equality).

Both modes do the same arithmetic (same GEMM FLOPs, same neuron steps); folding only removes
``T - 1`` of every ``T`` stateless-layer calls, so the ratio measures per-call overhead on the
machine at hand and can be close to 1 where large GEMMs dominate (single-threaded CPU).

A third mode, ``folded-f64``, is the project's training path for spiking models: the folded SDT in float64
(``neuroposter.train.loop.PRECISIONS``: in float32 the thresholds turn thread- and kernel-dependent rounding into
different spikes, so runs differ between machines). Its ratio to ``folded`` is what that reproducibility costs.

Each mode runs in its own subprocess so that peak memory (``ru_maxrss``, the whole process) is
measured per mode. Prints samples/s, peak RSS, the per-phase split of a step (forward / backward / optimiser)
and the ratios. Not a test: numbers depend on the machine.

    .venv/bin/python benchmarks/train_throughput.py [--batch 32 --steps 20 --threads 1]
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time


def _per_step_forward(model, x):  # noqa: ANN001, ANN202 - benchmark helper
    """The SDT forward, one time step at a time through every layer (``x [T, B, N, D]``)."""
    import torch
    from norse.torch.functional.lif_box import LIFBoxFeedForwardState

    from neuroposter.models.lif import LIF

    states: dict[int, LIFBoxFeedForwardState] = {}

    def sn(lif: LIF, cur: torch.Tensor) -> torch.Tensor:
        st = states.get(id(lif))
        if st is None:
            st = LIFBoxFeedForwardState(v=torch.zeros_like(cur))
        z, states[id(lif)] = lif.cell(cur, st)
        return z

    def bn(mod: torch.nn.BatchNorm1d, h: torch.Tensor) -> torch.Tensor:
        return mod(h.reshape(-1, h.shape[-1])).reshape(h.shape)

    outs = []
    for t in range(x.shape[0]):
        u = bn(model.embed_bn, model.embed(x[t])) + model.pos_bias          # [B, N, d]
        for blk in model.blocks:
            a, m = blk.attn, blk.mlp
            s = sn(a.sn_in, u)
            q = sn(a.q_sn, bn(a.q_bn, a.q(s)))
            k = sn(a.k_sn, bn(a.k_bn, a.k(s)))
            v = sn(a.v_sn, bn(a.v_bn, a.v(s)))
            kv = sn(a.kv_sn, (k * v).sum(dim=1, keepdim=True))              # [B, 1, d]
            u = u + bn(a.proj_bn, a.proj(q * kv))
            s = sn(m.sn_in, u)
            u = u + bn(m.fc2_bn, m.fc2(sn(m.sn_hidden, bn(m.fc1_bn, m.fc1(s)))))
        outs.append(model.head(sn(model.head_sn, u).mean(dim=1)))          # [B, C]
    return torch.stack(outs)                                                 # [T, B, C]


_MODES = ("folded", "per-step", "folded-f64")


def _measure(mode: str, batch: int, steps: int, threads: int, T: int, N: int, D: int, C: int,
             device: str = "cpu") -> dict[str, float]:
    import torch

    from neuroposter.models import SpikeDrivenTransformer

    torch.set_num_threads(threads)
    torch.manual_seed(0)
    dtype = torch.float64 if mode == "folded-f64" else torch.float32
    dev = torch.device(device)
    model = SpikeDrivenTransformer(d_in=D, n_tokens=N, n_classes=C).train().to(dtype).to(dev)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    loss_fn = torch.nn.BCEWithLogitsLoss()
    x = (torch.rand(T, batch, N, D) < 0.1).to(dtype).to(dev)
    y = (torch.rand(batch, C) < 0.2).to(dtype).to(dev)
    sync = torch.cuda.synchronize if dev.type == "cuda" else (lambda: None)   # time the GPU's work, not its launch
    forward = (lambda inp: _per_step_forward(model, inp)) if mode == "per-step" else model
    phases = {"forward": 0.0, "backward": 0.0, "optimiser": 0.0}

    def step() -> None:
        t0 = time.perf_counter()
        loss = loss_fn(forward(x).mean(0), y)
        sync()
        t1 = time.perf_counter()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        sync()
        t2 = time.perf_counter()
        opt.step()
        sync()
        t3 = time.perf_counter()
        phases["forward"] += t1 - t0
        phases["backward"] += t2 - t1
        phases["optimiser"] += t3 - t2

    for _ in range(2):  # warm-up
        step()
    phases.update({k: 0.0 for k in phases})
    t0 = time.perf_counter()
    for _ in range(steps):
        step()
    dt = time.perf_counter() - t0
    return {"samples_per_s": steps * batch / dt,
            "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
            **{f"{k}_share": v / dt for k, v in phases.items()}}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--T", type=int, default=4)
    p.add_argument("--N", type=int, default=40)
    p.add_argument("--D", type=int, default=1664)
    p.add_argument("--classes", type=int, default=10)
    p.add_argument("--repeats", type=int, default=3, help="interleaved repeats per mode; the best is kept")
    p.add_argument("--device", choices=("cpu", "cuda"), default="cpu",
                   help="where to train (default cpu; cuda: the first GPU, every phase synchronised)")
    p.add_argument("--mode", choices=list(_MODES), default=None, help=argparse.SUPPRESS)
    a = p.parse_args(argv)
    if a.device == "cuda":
        import torch

        if not torch.cuda.is_available():
            p.error("--device cuda: torch sees no CUDA device here; run it on a machine with a GPU")
    if a.mode:
        print(json.dumps(_measure(a.mode, a.batch, a.steps, a.threads, a.T, a.N, a.D, a.classes, a.device)))
        return 0
    res: dict[str, dict[str, float]] = {}
    for _ in range(a.repeats):  # interleaved, best of N: robust to other load on shared machines
        for mode in _MODES:
            cmd = [sys.executable, __file__, "--mode", mode, *(argv if argv is not None else sys.argv[1:])]
            out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout.strip().splitlines()[-1]
            r = json.loads(out)
            if mode not in res or r["samples_per_s"] > res[mode]["samples_per_s"]:
                res[mode] = r
    f, s, d = res["folded"], res["per-step"], res["folded-f64"]
    print(f"SDT training on {a.device}, T={a.T} B={a.batch} N={a.N} D_in={a.D}, {a.threads} thread(s), {a.steps} steps, "
          f"best of {a.repeats}")
    for mode, r in res.items():
        print(f"  {mode:<10s} {r['samples_per_s']:8.1f} samples/s   peak RSS {r['peak_rss_mib']:7.1f} MiB   "
              f"forward {r['forward_share']:.0%} backward {r['backward_share']:.0%} optimiser {r['optimiser_share']:.0%}")
    print(f"  speed-up folded / per-step: {f['samples_per_s'] / s['samples_per_s']:.2f}x; "
          f"peak RSS ratio folded / per-step: {f['peak_rss_mib'] / s['peak_rss_mib']:.2f}")
    print(f"  float64 / float32 step time (folded; the spiking models' reproducible training): "
          f"{f['samples_per_s'] / d['samples_per_s']:.2f}x")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
