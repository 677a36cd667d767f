"""Gather-and-add (``neuroposter.models.sparse``) vs the dense GEMM for binary inputs, by input density: where the
sparse path pays, i.e. the measurement behind ``SPARSE_MAX_DENSITY``.

Shapes: the demo SDT's ``embed`` (``[T*B*N, D_in] = [5120, 1664]`` times ``[1664, 64]``) and the spiking MLP's
``fc1`` (``[T*B, 1664]`` times ``[1664, 256]``, T=4, batch 32). For each dtype and density: the forward (``x W^T``,
torch ``F.linear`` vs :func:`~neuroposter.models.sparse.sparse_matmul_rows`) and the weight gradient (``G^T X`` vs
the scatter), best of ``--repeats`` timings of ``--steps`` calls each, wall-clock and CPU time (all threads; less
sensitive to other processes on a shared machine), and the dense / sparse time ratio (> 1: sparse faster): for the
forward (inference, ``SPARSE_MAX_DENSITY``), the weight gradient, and both together (a training step of a first
layer, whose input needs no gradient: ``SPARSE_MAX_DENSITY_TRAIN``). Not a test: the numbers depend on the machine.

    .venv/bin/python benchmarks/sparse_linear.py [--threads 2 --repeats 5 --steps 5]
"""

from __future__ import annotations

import argparse
import time

import torch
import torch.nn.functional as F

from neuroposter.models.sparse import _weight_grad, sparse_matmul_rows

SHAPES = {"sdt-embed": (5120, 1664, 64), "mlp-fc1": (128, 1664, 256)}
DENSITIES = (0.02, 0.05, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6)


def _time(fn, steps: int, repeats: int) -> tuple[float, float]:  # noqa: ANN001
    fn()
    best_w = best_c = float("inf")
    for _ in range(repeats):
        t0, c0 = time.perf_counter(), time.process_time()
        for _ in range(steps):
            fn()
        best_w = min(best_w, (time.perf_counter() - t0) / steps)
        best_c = min(best_c, (time.process_time() - c0) / steps)
    return best_w, best_c


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--steps", type=int, default=5)
    p.add_argument("--shapes", default=",".join(SHAPES), help=f"subset of {', '.join(SHAPES)}")
    a = p.parse_args(argv)
    torch.set_num_threads(a.threads)
    gen = torch.Generator().manual_seed(0)
    print(f"{a.threads} thread(s); ms per call, best of {a.repeats} x {a.steps}; ratio = dense / sparse time")
    print(f"{'shape':<10} {'dtype':<8} {'density':>7} | {'fwd dense':>9} {'sparse':>7} {'wall x':>6} {'cpu x':>6} | "
          f"{'dW dense':>8} {'sparse':>7} {'wall x':>6} {'cpu x':>6} | {'train x':>7}")
    for name in a.shapes.split(","):
        M, K, O = SHAPES[name]
        for dtype in (torch.float32, torch.float64):
            w = torch.randn(O, K, generator=gen, dtype=dtype) * 0.05
            wt = w.t().contiguous()
            g = torch.randn(M, O, generator=gen, dtype=dtype)
            for d in DENSITIES:
                x = (torch.rand(M, K, generator=gen) < d).to(dtype)
                fd = _time(lambda: F.linear(x, w), a.steps, a.repeats)
                fs = _time(lambda: sparse_matmul_rows(x, wt), a.steps, a.repeats)
                gd = _time(lambda: g.t() @ x, a.steps, a.repeats)
                gs = _time(lambda: _weight_grad(x, g), a.steps, a.repeats)
                print(f"{name:<10} {str(dtype)[6:]:<8} {d:7.2f} | {fd[0] * 1e3:9.3f} {fs[0] * 1e3:7.3f} "
                      f"{fd[0] / fs[0]:6.2f} {fd[1] / fs[1]:6.2f} | {gd[0] * 1e3:8.3f} {gs[0] * 1e3:7.3f} "
                      f"{gd[0] / gs[0]:6.2f} {gd[1] / gs[1]:6.2f} | {(fd[0] + gd[0]) / (fs[0] + gs[0]):7.2f}", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
