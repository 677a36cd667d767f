"""Re-run a Loihi 2 bundle from its files alone: ``python -m neuroposter.targets.loihi.run BUNDLE_DIR``.

Reads ``BUNDLE_DIR/graph_int.nir`` (the integer graph) and ``BUNDLE_DIR/inputs.npz`` (the stored
sample inputs and reference read-out), rebuilds the Lava process network
(:func:`neuroposter.targets.loihi.builder.plan_network` + :func:`~.builder.run_lava`), runs every
stored sample back to back in Lava's CPU simulation and compares the integer read-out with the
stored reference (``reference_output``, the reference simulator's per_hop/int result). Exit code 0
when they are identical (fixed point) or the predictions agree (floating point), 1 otherwise.
Nothing else of the project is needed at run time (no run folder, no encoded set).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any, Sequence

import numpy as np

__all__ = ["rerun", "main"]


def rerun(bundle: str | Path, *, select_tag: str = "fixed_pt", samples: int | None = None,
          progress: bool = True) -> dict[str, Any]:
    """Rebuilds and runs the bundle's Lava network on its stored inputs.

    Args:
        bundle: the bundle folder (``export/loihi/<run>``).
        select_tag: ``"fixed_pt"`` or ``"floating_pt"``.
        samples: run only the first ``samples`` stored samples (None: all).
        progress: show a progress bar.

    Returns:
        ``{"ok", "output_exact", "prediction_agreement", "samples", "latency", "run_s"}``.
    """
    from neuroposter.ir.graph_io import read_graph
    from neuroposter.profiling.profiles import load_profile
    from neuroposter.targets.verify import prediction_agreement
    from neuroposter.targets.loihi.builder import plan_network, run_lava

    from neuroposter.errors import DataError

    bundle = Path(bundle)
    if not bundle.is_dir():
        raise DataError(f"{bundle}: not a folder; pass a bundle written by `neuroposter export --target loihi`")
    missing = [f for f in ("graph_int.nir", "inputs.npz") if not (bundle / f).is_file()]
    if missing:
        raise DataError(f"{bundle}: not a complete Loihi bundle (missing {', '.join(missing)}); "
                        "re-run `neuroposter export --target loihi`")
    if samples is not None and (isinstance(samples, bool) or int(samples) < 1):
        raise DataError(f"samples must be >= 1, got {samples}")
    if (bundle / "manifest.json").is_file():   # every file as the export wrote it (a failed bundle is refused)
        from neuroposter.manifest import require_manifest

        require_manifest(bundle, "export", rerun="neuroposter export --target loihi --force")
    graph_int = read_graph(bundle / "graph_int.nir")
    try:
        with np.load(bundle / "inputs.npz") as data:
            x = data["x"]
            ref = data["reference_output"].astype(np.int64)
    except (OSError, ValueError, KeyError, EOFError) as exc:
        raise DataError(f"{bundle / 'inputs.npz'}: not readable as the bundle's stored inputs "
                        f"({type(exc).__name__}: {exc})") from None
    if samples is not None:
        x, ref = x[:, :samples], ref[:, :samples]
    plan = plan_network(graph_int, max_delay=load_profile("loihi2").limits.max_delay)
    res = run_lava(plan, x, select_tag=select_tag, record=False,
                   progress_desc=f"lava {select_tag}" if progress else None)
    out_name = next(iter(plan.outputs))
    o = plan.outputs[out_name]
    ref_cur = ref.reshape(ref.shape[:2] + (-1,))
    lava_cur = res.output[out_name].reshape(ref_cur.shape)
    exact = bool(np.array_equal(lava_cur, ref_cur))
    pa = prediction_agreement(lava_cur.mean(axis=0) / o["scale"], ref_cur.mean(axis=0) / o["scale"])
    ok = exact if select_tag == "fixed_pt" else pa >= 0.99
    return {"ok": ok, "output_exact": exact, "prediction_agreement": pa, "samples": int(x.shape[1]),
            "latency": plan.latency, "run_s": res.run_s, "select_tag": select_tag}


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


def main(argv: Sequence[str] | None = None) -> int:
    """Command-line entry point; prints one summary line and returns the exit code."""
    ap = argparse.ArgumentParser(prog="python -m neuroposter.targets.loihi.run",
                                 description="Rebuild and run a Loihi 2 bundle's Lava network on its stored inputs.")
    ap.add_argument("bundle", help="bundle folder written by `neuroposter export --target loihi`")
    g = ap.add_mutually_exclusive_group()
    g.add_argument("--fixed-pt", dest="select_tag", action="store_const", const="fixed_pt", default="fixed_pt",
                   help="bit-accurate Loihi 2 models (default)")
    g.add_argument("--floating-pt", dest="select_tag", action="store_const", const="floating_pt",
                   help="floating-point models (debugging)")
    ap.add_argument("--samples", type=_positive_int, default=None, help="run only the first N (>= 1) stored samples")
    args = ap.parse_args(argv)
    from neuroposter.errors import NeuroposterError
    from neuroposter.targets.base import UnsupportedNodeError

    try:
        res = rerun(args.bundle, select_tag=args.select_tag, samples=args.samples)
    except (NeuroposterError, UnsupportedNodeError) as exc:  # a bad or incomplete bundle: one line, no traceback
        sys.stderr.write(f"{ap.prog}: error: {exc}\n")
        return 2
    sys.stdout.write(f"loihi bundle {args.bundle}: {res['samples']} samples, {res['select_tag']}, latency {res['latency']}, "
          f"read-out identical to the reference: {res['output_exact']}, prediction agreement "
          f"{res['prediction_agreement']:.3f} ({res['run_s']:.1f} s) -> {'OK' if res['ok'] else 'MISMATCH'}\n")
    return 0 if res["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
