"""Issue 16's kernels one by one on the demo SDT, in one process: the LIF's torch form vs its compiled kernels, and
the dense vs spike-sparse embed, training and inference, float32 and float64.

Configurations (``neuroposter.models.lif.set_lif_backend``, ``neuroposter.models.sparse.set_sparse_input``):

* ``before``       -- LIF backend ``fused-torch``, embed ``off`` (dense): neuroposter before issue 16;
* ``lif``          -- LIF backend ``fused`` (compiled on CPU), embed dense;
* ``dense-train``  -- LIF ``fused``, embed ``inference`` (dense in training; in inference the whole network as one
  event-driven kernel, ``neuroposter.models.sdt_inference``);
* ``default``      -- LIF ``fused``, embed ``auto`` (the same, and the embed sparse in training where the input's
  density says it pays): the default.

Shapes of ``benchmarks/train_throughput.py`` (T=4, batch 32, 40 tokens of 1664 channels, input density ``--density``).
train = forward + BCE-with-logits + backward + AdamW step; infer = ``eval()`` + ``no_grad`` forward. Every
(configuration, mode) is timed one call at a time, interleaved over ``--rounds`` rounds; the best call is kept (least
disturbed by other load on a shared machine), wall-clock and CPU time. Not a test: the numbers depend on the machine.

    .venv/bin/python benchmarks/sdt_kernels.py [--threads 2 --rounds 5 --density 0.1]
"""

from __future__ import annotations

import argparse
import time

CONFIGS = {"before": ("fused-torch", "off"), "lif": ("fused", "off"), "dense-train": ("fused", "inference"),
           "default": ("fused", "auto")}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--density", type=float, default=0.1)
    p.add_argument("--batch", type=int, default=32)
    a = p.parse_args(argv)
    import torch

    from neuroposter.models import SpikeDrivenTransformer
    from neuroposter.models.lif import set_lif_backend
    from neuroposter.models.sparse import set_sparse_input

    torch.set_num_threads(a.threads)
    best: dict[tuple[str, str, str], tuple[float, float]] = {}
    for dtype in (torch.float32, torch.float64):
        torch.manual_seed(0)
        model = SpikeDrivenTransformer(d_in=1664, n_tokens=40, n_classes=10).to(dtype)
        gen = torch.Generator().manual_seed(0)
        x = (torch.rand(4, a.batch, 40, 1664, generator=gen) < a.density).to(dtype)
        y = (torch.rand(a.batch, 10, generator=gen) < 0.2).to(dtype)
        opt = torch.optim.AdamW([q for q in model.parameters() if q.requires_grad], lr=1e-3)

        def train() -> None:
            model.train()
            loss = torch.nn.functional.binary_cross_entropy_with_logits(model(x).mean(0), y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()

        def infer() -> None:
            model.eval()
            with torch.no_grad():
                model(x)

        for _ in range(a.rounds):
            for name, (lif, sparse) in CONFIGS.items():
                set_lif_backend(model, lif)
                set_sparse_input(model, sparse)
                for mode, fn in (("train", train), ("infer", infer)):
                    fn()                                   # warm-up (and numba's first compile/cache load)
                    t0, c0 = time.perf_counter(), time.process_time()
                    fn()
                    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
                    key = (str(dtype).replace("torch.", ""), name, mode)
                    w0, c0_ = best.get(key, (float("inf"), float("inf")))
                    best[key] = (min(w0, wall), min(c0_, cpu))
    print(f"SDT (width 64, depth 2), T=4 B={a.batch} N=40 D_in=1664, input density {a.density}, {a.threads} "
          f"thread(s); best call of {a.rounds} interleaved rounds; samples/s by wall | CPU time; x = / before")
    for dname in ("float32", "float64"):
        for mode in ("train", "infer"):
            w_ref, c_ref = best[(dname, "before", mode)]
            cells = []
            for name in CONFIGS:
                w, c = best[(dname, name, mode)]
                cells.append(f"{name} {a.batch / w:7.1f} | {a.batch / c:7.1f} ({w_ref / w:.2f}x|{c_ref / c:.2f}x)")
            print(f"  {dname} {mode:5s}  " + "   ".join(cells))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
