"""``neuroposter profile``: load, run and profile a NIR graph written by any tool (argument parsing only).

The work is :mod:`neuroposter.profiling.foreign`.
"""

from __future__ import annotations

import argparse

from neuroposter.cli._common import SAMPLES_MAX, SEED_MAX, add_common, add_json_flag, float_in_range, int_in_range

__all__ = ["add_parser", "run"]

# Bernoulli input defaults: spike probability per element and step, steps per inference, samples.
_RATE, _STEPS, _SAMPLES = 0.1, 10, 16
_STEPS_MAX = 100_000
# Largest --dt accepted: NIR time steps are seconds by convention (snnTorch 1e-4, Norse 1e-3, neuroposter 1).
_DT_MAX = 1e3


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    """Registers ``neuroposter profile``."""
    p = subparsers.add_parser(
        "profile", help="load, run and profile a NIR graph written by any tool (snnTorch, Norse, neuroposter)",
        description="Reads a NIR graph (e.g. written by snnTorch's export_to_nir or Norse's to_nir), runs it in the "
        "reference simulator (same step, float64) on the given inputs or on seeded Bernoulli spikes, and prints its "
        "size, spikes per layer, op counts (synaptic ACs, MACs, neuron updates) and energy per inference on each "
        "hardware profile (device view: the op counts x the chip's published per-op energies). --out writes the "
        "profile artifact (graph.nir, op_counts.json, energy.csv, summary.json, manifest.json).")
    p.add_argument("graph", metavar="GRAPH.nir", help="the NIR file")
    p.add_argument("--producer", default=None, metavar="TOOL",
                   help="the tool that wrote the graph: snntorch, norse or neuroposter; gives the time step when "
                        "the graph records none (snnTorch 1e-4, Norse 1e-3, neuroposter 1)")
    p.add_argument("--dt", type=float_in_range(0.0, _DT_MAX, low_open=True), default=None,
                   help="the graph's time step (overrides the graph's metadata and --producer)")
    p.add_argument("--inputs", default=None, metavar="X.npy",
                   help="inputs [T, B, *input_shape] (.npy); default: seeded Bernoulli spikes")
    p.add_argument("--rate", type=float_in_range(0.0, 1.0), default=None,
                   help=f"Bernoulli spike probability per input element and step (default: {_RATE})")
    p.add_argument("--steps", type=int_in_range(1, _STEPS_MAX), default=None, metavar="T",
                   help=f"time steps per inference of the Bernoulli inputs (default: {_STEPS})")
    p.add_argument("--samples", type=int_in_range(1, SAMPLES_MAX), default=None, metavar="B",
                   help=f"samples of Bernoulli inputs, averaged over (default: {_SAMPLES})")
    p.add_argument("--seed", type=int_in_range(0, SEED_MAX), default=0, help="seed of the Bernoulli inputs (0)")
    p.add_argument("--profiles", default=None, metavar="NAME[,NAME...]",
                   help="hardware profiles, comma-separated (names or YAML paths; default: every neuromorphic "
                        "profile that publishes per-op energy)")
    p.add_argument("--out", default=None, metavar="DIR", help="write the profile artifact to DIR")
    p.add_argument("--force", action="store_true", help="replace an existing profile artifact at --out")
    add_json_flag(p)
    add_common(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Profiles the graph, prints the result, and writes the artifact with ``--out``."""
    from neuroposter.cli._common import emit
    from neuroposter.errors import UsageError
    from neuroposter.profiling import foreign

    profiles = None
    if args.profiles is not None:
        profiles = [n.strip() for n in str(args.profiles).split(",") if n.strip()]
        if not profiles:
            raise UsageError(f"--profiles: expected profile names separated by commas, got {args.profiles!r}")
    if args.inputs is not None:
        given = [f"--{k}" for k in ("rate", "steps", "samples") if getattr(args, k) is not None]
        if given:
            raise UsageError(f"--inputs gives the inputs; {', '.join(given)} apply to Bernoulli inputs only")
    if args.out is not None:   # refuse a destination before any work
        from neuroposter.artifact import check_destination

        check_destination(args.out, foreign.PROFILE_KIND, force=args.force,
                          protect=[p for p in (args.graph, args.inputs) if p], option="--out")
    graph = foreign.load_graph(args.graph, producer=args.producer, dt=args.dt)
    shape = foreign.input_shape(graph)
    if args.inputs is not None:
        x, spec = foreign.read_inputs(args.inputs, shape)
    else:
        x, spec = foreign.bernoulli_inputs(shape, rate=_RATE if args.rate is None else args.rate,
                                           steps=args.steps or _STEPS, samples=args.samples or _SAMPLES,
                                           seed=args.seed)
    result = foreign.profile_graph(graph, x, spec, source=args.graph, profiles=profiles)
    lines = foreign.format_profile(result)
    payload = dict(foreign.summary_of(result))
    if args.out is not None:
        cfg = {"producer": args.producer, "dt": result.dt, "inputs": spec.to_dict(), "profiles": profiles,
               "view": foreign.VIEW}
        out = foreign.write_profile(result, args.out, force=args.force, config=cfg)
        lines.append(f"profile written to {out}/ (graph.nir, op_counts.json, energy.csv, summary.json, manifest.json)")
        payload["out"] = str(out)
    emit(args, lines, payload)
    return 0
