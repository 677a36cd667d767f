"""SDT throughput with the fused LIF backend vs the Norse per-step path, training and inference, float32 and float64.

Backends: ``fused`` (on CPU its compiled numba kernels), ``fused-torch`` (the same in torch operations) and ``norse``.

The two backends compute the same spikes and gradients (tests/models/test_fused_lif.py); this measures only
speed. On the demo shapes (``T=4``, batch 32, 40 tokens of 1664 channels, the default SDT: width 64, depth 2):

* train: one optimiser step (forward, ``BCEWithLogits`` on the mean logits over ``T``, backward, AdamW);
* infer: ``model.eval()`` forward under ``torch.no_grad()``.

Every (backend, dtype, mode) is timed ``--steps`` steps after a warm-up, interleaved over ``--repeats`` rounds
(the best round kept: robust to other load on a shared machine), in one process. Prints samples per wall-clock
second and per CPU second (``time.process_time``, all threads: less sensitive to other processes competing for
the cores) and the fused / norse ratios. Not a test: numbers depend on the machine.

    .venv/bin/python benchmarks/lif_fused.py [--batch 32 --steps 10 --threads 2 --repeats 3]
"""

from __future__ import annotations

import argparse
import time


def _bench(args: argparse.Namespace) -> dict[tuple[str, str, str, str], float]:
    import torch

    from neuroposter.models import SpikeDrivenTransformer
    from neuroposter.models.lif import LIF_BACKENDS, set_lif_backend

    torch.set_num_threads(args.threads)
    gen = torch.Generator().manual_seed(0)
    x32 = (torch.rand(args.T, args.batch, args.N, args.D, generator=gen) < 0.1).float()
    y32 = (torch.rand(args.batch, args.classes, generator=gen) < 0.2).float()
    runners = {}
    for dtype in (torch.float32, torch.float64):
        torch.manual_seed(0)
        model = SpikeDrivenTransformer(d_in=args.D, n_tokens=args.N, n_classes=args.classes).to(dtype)
        opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
        loss_fn = torch.nn.BCEWithLogitsLoss()
        x, y = x32.to(dtype), y32.to(dtype)
        dname = str(dtype).replace("torch.", "")

        def train(model=model, opt=opt, x=x, y=y, loss_fn=loss_fn) -> None:  # noqa: ANN001
            model.train()
            loss = loss_fn(model(x).mean(0), y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()

        def infer(model=model, x=x) -> None:  # noqa: ANN001
            model.eval()
            with torch.no_grad():
                model(x)

        for backend in LIF_BACKENDS:
            for mode, fn in (("train", train), ("infer", infer)):
                runners[(backend, dname, mode)] = (model, backend, fn)

    best: dict[tuple[str, str, str, str], float] = {}
    for key, (model, backend, fn) in runners.items():   # warm-up
        set_lif_backend(model, backend)
        for _ in range(2):
            fn()
    for _ in range(args.repeats):
        for key, (model, backend, fn) in runners.items():
            set_lif_backend(model, backend)
            t0, c0 = time.perf_counter(), time.process_time()
            for _ in range(args.steps):
                fn()
            wall, cpu = time.perf_counter() - t0, time.process_time() - c0
            for clock, sec in (("wall", wall), ("cpu", cpu)):
                best[(*key, clock)] = max(best.get((*key, clock), 0.0), args.steps * args.batch / sec)
    return best


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--steps", type=int, default=10)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--T", type=int, default=4)
    p.add_argument("--N", type=int, default=40)
    p.add_argument("--D", type=int, default=1664)
    p.add_argument("--classes", type=int, default=10)
    p.add_argument("--repeats", type=int, default=3, help="interleaved rounds; the best is kept")
    a = p.parse_args(argv)
    best = _bench(a)
    print(f"SDT (width 64, depth 2), T={a.T} B={a.batch} N={a.N} D_in={a.D}, {a.threads} thread(s), "
          f"{a.steps} steps, best of {a.repeats} interleaved rounds")
    print(f"  {'dtype':<8s} {'mode':<6s} {'clock':<5s} {'fused':>9s} {'fused-torch':>12s} {'norse':>9s} "
          f"{'fused/norse':>12s} {'fused/fused-torch':>18s}   (samples/s)")
    for dname in ("float32", "float64"):
        for mode in ("train", "infer"):
            for clock in ("wall", "cpu"):
                f, n = best[("fused", dname, mode, clock)], best[("norse", dname, mode, clock)]
                ft = best[("fused-torch", dname, mode, clock)]
                print(f"  {dname:<8s} {mode:<6s} {clock:<5s} {f:9.1f} {ft:12.1f} {n:9.1f} {f / n:11.2f}x "
                      f"{f / ft:17.2f}x")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
