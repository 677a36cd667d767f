"""Benchmark: reference simulator vs Lava (Loihi 2 CPU simulation) on the same network and inputs.

Usage::

    python benchmarks/lava_vs_reference.py                       # demo-size SDT (random weights)
    python benchmarks/lava_vs_reference.py --run workspace/runs/sdt   # a trained run + its encoded set
    python benchmarks/lava_vs_reference.py --samples 16 --export     # also time a default `export --target loihi`

Reports (JSON on stdout): the reference simulator's time (``per_hop``, ``int``), the numpy emulator's,
the Lava ``fixed_pt`` run's (build, run) with one worker process and with two (``run_lava(workers=)``:
the samples split over two Lava runtimes), the 1-worker / 2-worker time ratio (above 1: two workers
are faster), the Lava (default workers) / reference ratio, whether all of them agree bit for bit, and optionally the wall time of a default
``export --target loihi``. The demo SDT is d=64, depth 2,
N=40 tokens, D_in=1664, T=4. Without ``--run`` the weights are random (scaled so that neurons fire)
and the inputs Bernoulli(0.1) spikes.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np

from neuroposter.profiling.profiles import load_profile

LOIHI2 = load_profile("loihi2")


def _demo_model(seed: int):
    import torch

    from neuroposter.models.sdt import SDTConfig, SpikeDrivenTransformer

    torch.manual_seed(seed)
    model = SpikeDrivenTransformer(SDTConfig())
    with torch.no_grad():       # make an untrained network fire: larger input weights, positive BN shift
        for name, p in model.named_parameters():
            if name.endswith("weight") and p.dim() == 2:
                p.mul_(3.0)
            if "bn" in name and name.endswith("bias"):
                p.add_(0.3)
    return model.eval()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--run", default=None, help="a trained run folder (default: demo-size random SDT)")
    ap.add_argument("--samples", type=int, default=16)
    ap.add_argument("--export", action="store_true", help="also time a default export --target loihi")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)

    from neuroposter.ir.lower import lower_model, to_graph_input
    from neuroposter.targets.loihi.fixed_point import quantize_loihi
    from neuroposter.ir.retime import retime
    from neuroposter.ir.simulate import simulate
    from neuroposter.targets.loihi.target import reference_readout_int
    from neuroposter.targets.loihi.builder import default_workers, plan_network, run_lava
    from neuroposter.testing.emulate import emulate

    if args.run:
        from neuroposter.targets.inputs import evaluation_inputs
        from neuroposter.train import load_run

        loaded = load_run(args.run)
        inputs = evaluation_inputs(loaded, args.run, samples=args.samples, seed=args.seed)
        xs, model, T = inputs.x, loaded.model, int(inputs.T)
    else:
        model, T = _demo_model(args.seed), 4
        xs = (np.random.default_rng(args.seed).random((T, args.samples, 40, 1664)) < 0.1).astype(np.uint8)
    graph = lower_model(model, T=T)
    x = to_graph_input(xs, graph)
    gi, _ = quantize_loihi(graph, LOIHI2)
    plan = plan_network(gi, max_delay=LOIHI2.limits.max_delay)
    out: dict = {"network": plan.summary(), "samples": int(x.shape[1]), "T": int(x.shape[0])}

    t0 = time.perf_counter()
    ref = simulate(gi, x, mode="per_hop", arithmetic="int", delays=retime(gi).delays)
    out["reference_per_hop_int_s"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    em = emulate(plan, x)
    out["emulator_s"] = time.perf_counter() - t0
    runs = {}
    for workers in (1, 2):
        t0 = time.perf_counter()
        runs[workers] = run_lava(plan, x, select_tag="fixed_pt", record=True, workers=workers)
        out[f"lava_{workers}_worker_total_s"] = time.perf_counter() - t0
        out[f"lava_{workers}_worker_build_s"] = runs[workers].build_s
        out[f"lava_{workers}_worker_run_s"] = runs[workers].run_s
    lava = runs[1]
    out["ratio_lava_1_over_2_workers"] = out["lava_1_worker_total_s"] / out["lava_2_worker_total_s"]
    out["default_workers"] = default_workers(int(x.shape[1]))
    out["ratio_lava_over_reference"] = (out[f"lava_{min(out['default_workers'], 2)}_worker_total_s"]
                                        / out["reference_per_hop_int_s"])
    name = next(iter(plan.outputs))
    ref_int = reference_readout_int(plan, ref)
    out["lava_equals_reference"] = bool(np.array_equal(lava.output[name].reshape(ref_int.shape), ref_int))
    out["lava_2_workers_equal_1"] = bool(
        all(np.array_equal(runs[2].output[k], lava.output[k]) for k in lava.output)
        and all(np.array_equal(runs[2].spikes[k], lava.spikes[k]) for k in lava.spikes))
    out["emulator_equals_reference"] = bool(np.array_equal(em.output[name].reshape(ref_int.shape), ref_int))
    out["firing_rates"] = {k: float(v.mean()) for k, v in em.spikes.items()}

    if args.export:
        import tempfile

        import neuroposter.targets.inputs as inputs_mod
        import neuroposter.targets.loihi as loihi
        import neuroposter.train as train
        from neuroposter.targets.base import ExportRequest

        with tempfile.TemporaryDirectory() as tmp:
            if not args.run:   # the same flow as `neuroposter export --target loihi` with a stub run/encoded set
                labels = np.zeros((x.shape[1], 10), np.uint8)
                run = SimpleNamespace(model=model, model_name="sdt", manifest={"key": "bench"}, metrics={}, config={})
                train.load_run = lambda run_dir: run  # type: ignore[assignment]
                inputs_mod.evaluation_inputs = lambda loaded, run_dir, *, samples, split="test", seed=None: (
                    inputs_mod.EvalInputs(xs[:, :samples], labels[:samples], np.arange(samples), "encoded",
                                          Path("bench"), "bench", split, T))  # type: ignore[assignment]
            t0 = time.perf_counter()
            res = loihi.export(ExportRequest("loihi", Path(args.run or "bench"), Path(tmp) / "b", Path(tmp),
                                             {"samples": args.samples, "trained_samples": args.samples}))
            out["export_s"] = time.perf_counter() - t0
            out["export_ok"] = res.ok
            out["export_timings"] = res.summary.get("timings")
    sys.stdout.write(json.dumps(out, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
