"""Reference NIR simulator vs stepping the Norse model, on the same inputs.

Builds the default-size SDT (d=64, depth 2, N=40 tokens of 1664 channels, T=4; random init with
BatchNorm perturbations so every layer spikes), lowers it to NIR and times

* the Norse model's forward (its LIF layers step over T), float32 and float64;
* ``neuroposter.ir.simulate`` in ``same_step`` mode (float64 and float32) and ``per_hop`` with the
  re-timing delays (float64, T + L steps);

and prints samples/s and the simulator/Norse ratio, plus a spike-agreement sanity check.

Usage: ``python benchmarks/simulator_vs_norse.py [--batch 32] [--repeats 3] [--threads 1]``
"""

from __future__ import annotations

import argparse
import copy
import time

import numpy as np
import torch

from neuroposter.ir import lower_model, retime, simulate
from neuroposter.ir.lower import to_graph_input
from neuroposter.models.sdt import SpikeDrivenTransformer
from neuroposter.testing.active_init import demo_sized_sdt


def _model(seed: int = 0) -> SpikeDrivenTransformer:
    return demo_sized_sdt(seed)


def _best(fn, repeats: int) -> float:
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--T", type=int, default=4)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)

    model = _model()
    graph = lower_model(model, T=args.T)
    rt = retime(graph)
    g = torch.Generator().manual_seed(2)
    spikes = (torch.rand(args.T, args.batch, 40, 1664, generator=g) < 0.1).float()
    x = to_graph_input(spikes, graph)
    m64 = copy.deepcopy(model).double()

    def norse32() -> None:
        with torch.no_grad():
            model(spikes)

    def norse64() -> None:
        with torch.no_grad():
            m64(spikes.double())

    rows = [
        ("norse forward float32", _best(norse32, args.repeats)),
        ("norse forward float64", _best(norse64, args.repeats)),
        ("simulate same_step float64", _best(lambda: simulate(graph, x, record=False), args.repeats)),
        ("simulate same_step float32", _best(lambda: simulate(graph, x, record=False, dtype="float32"), args.repeats)),
        ("simulate same_step float64 + records", _best(lambda: simulate(graph, x), args.repeats)),
        (f"simulate per_hop float64 (T+L={args.T + rt.latency})",
         _best(lambda: simulate(graph, x, mode="per_hop", delays=rt.delays, record=False), args.repeats)),
    ]
    base = rows[0][1]
    print(f"SDT d=64 depth=2 N=40 D_in=1664 T={args.T}, batch {args.batch}, {args.threads} thread(s); "
          f"per-hop latency L={rt.latency}")
    print(f"{'':40s} {'seconds':>9s} {'samples/s':>10s} {'time / norse32':>15s}")
    for name, sec in rows:
        print(f"{name:40s} {sec:9.3f} {args.batch / sec:10.1f} {sec / base:15.2f}")
    with torch.no_grad():
        ref = m64(spikes.double()).numpy()
    res = simulate(graph, x)
    print(f"check: max |logit diff| (float64) = {np.abs(res.output - ref).max():.2e}")


if __name__ == "__main__":
    main()
