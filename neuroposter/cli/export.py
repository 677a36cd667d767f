"""``neuroposter export``: deploy a trained run to a target and verify it (argument parsing only)."""

from __future__ import annotations

import argparse
from typing import Any

from neuroposter.cli._common import (
    EXIT_CODES_EPILOG, EXIT_FAILED, EXIT_REFUSED, EXIT_USAGE, add_common, add_json_flag, float_in_range,
    samples_or_all,
)
from neuroposter.models import names
from neuroposter.targets import TARGETS

__all__ = ["add_parser", "run"]


def _kv(text: str) -> tuple[str, Any]:
    if "=" not in text:
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    key, value = text.split("=", 1)
    import yaml

    try:
        parsed = yaml.safe_load(value)
    except yaml.YAMLError:
        parsed = value
    return key.strip().replace("-", "_"), parsed


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    """Registers ``neuroposter export``."""
    p = subparsers.add_parser(
        "export", help="deploy a trained run: NIR graph, Loihi 2 (Lava), simulated chips, ONNX",
        description="Exports a training run to a target and verifies the deployment on real test inputs. "
        "Writes the bundle export/<target>/<run>/ (or --out): the artifacts, manifest.json and summary.json. "
        "An existing bundle is replaced only with --force. loihi, the simulated chips and onnx compare the deployed "
        "network with the trained model on the whole test split (--trained-samples) and fail below "
        "--min-trained-agreement; loihi also compares Lava with the integer reference on --samples of them "
        "(--min-agreement). Exit code 1 when the verification fails (the new bundle is then kept as <name>.failed "
        "and the previous one is left as it was); exit code 3 when a chip refuses the network (the verdict bundle is "
        "written at its name and its summary.json names every violated limit).", epilog=EXIT_CODES_EPILOG)
    p.add_argument("--target", choices=TARGETS.names(), default="nir", help="deployment target (default: nir)")
    p.add_argument("--run", default=None,
                   help="run name in WORKSPACE/runs/ (default: sdt; for onnx the --model name)")
    p.add_argument("--model", choices=names(kind="ann"), default=None,
                   help="onnx: which ANN baseline run to export when --run is not given (default: cnn)")
    p.add_argument("--out", metavar="DIR", default=None,
                   help="bundle folder (default: EXPORT_ROOT/<target>/<run>/)")
    p.add_argument("--force", action="store_true",
                   help="replace an existing bundle at the destination (never anything that is not a bundle)")
    p.add_argument("--export-root", metavar="DIR", default="export",
                   help="folder holding all bundles when --out is not given (default: ./export)")
    p.add_argument("--samples", type=samples_or_all, default=None, metavar="N|all",
                   help="samples of the simulator check, 1..100000 or `all`: loihi -- run in Lava and compared bit "
                        "for bit with the integer reference (default 64, a seeded subset); chips -- per-layer spike "
                        "comparisons (default 16); nir -- compared with Norse (default 32); onnx: not used")
    p.add_argument("--trained-samples", type=samples_or_all, default=None, metavar="N|all",
                   help="loihi, chips, onnx: samples of the split on which the deployed network is compared with "
                        "the trained model (default: all, the whole split)")
    p.add_argument("--min-trained-agreement", type=float_in_range(0, 1), default=None, metavar="FRACTION",
                   help="loihi, chips, onnx: minimum fraction of samples on which the deployed network keeps the "
                        "trained model's genre set (identical set of predicted genres; default 0.95)")
    p.add_argument("--min-agreement", type=float_in_range(0, 1), default=None, metavar="FRACTION",
                   help="loihi: minimum prediction agreement of Lava with the integer reference; nir: minimum "
                        "spike/prediction agreement with Norse (default 0.99)")
    p.add_argument("--floating-pt", action="store_true",
                   help="loihi: run Lava's floating-point models instead of the bit-accurate fixed-point ones "
                        "(debugging)")
    p.add_argument("--opt", type=_kv, action="append", default=[], metavar="KEY=VALUE",
                   help="target-specific option passed through (repeatable), e.g. --opt dtype=float32")
    add_json_flag(p)
    add_common(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Runs the exporter of ``--target`` and prints its summary lines."""
    from pathlib import Path

    from neuroposter.artifact import artifact_lock
    import sys

    from neuroposter.cli._common import emit, workspace_of, write_resolved_config
    from neuroposter.targets import ExportRequest, get_exporter
    from neuroposter.targets._bundle import check_bundle_destination, default_run

    if args.model is not None and args.target != "onnx":
        print(f"neuroposter: note: --model applies to --target onnx only; exporting run "
              f"{args.run or default_run(args.target)!r}", file=sys.stderr)
    ws = workspace_of(args)
    run_dir = ws.run(args.run or default_run(args.target, args.model))   # a run name or a path to a run
    out_dir = Path(args.out) if args.out else Path(args.export_root) / args.target / run_dir.name
    options: dict[str, Any] = {"samples": args.samples, "min_agreement": args.min_agreement,
                               "trained_samples": args.trained_samples,
                               "min_trained_agreement": args.min_trained_agreement}
    if args.model is not None:
        options["model"] = args.model
    if args.floating_pt:
        if args.target != "loihi":
            print("neuroposter: error: --floating-pt applies to --target loihi only", file=sys.stderr)
            return EXIT_USAGE
        options["floating_pt"] = True
    options.update(dict(args.opt))
    options = {k: v for k, v in options.items() if v is not None}
    exporter = get_exporter(args.target)
    request = ExportRequest(target=args.target, run_dir=run_dir, out_dir=Path(out_dir), workspace=Path(ws.root),
                            options=options, force=bool(args.force),
                            write_config=lambda d: write_resolved_config(d, args))
    # refuse a destination that could destroy data before any work, then hold the bundle's lock for
    # the whole export (a second writer of the same bundle is told at once)
    check_bundle_destination(request)
    with artifact_lock(request.out_dir):
        result = exporter(request)
    emit(args, list(result.lines), export_payload(args.target, result))
    if result.failed:
        reason = str(result.summary.get("reason") or "verification failed").strip().splitlines()[0]
        print(f"neuroposter: error: {args.target} verification failed ({reason}); the new bundle is kept at "
              f"{result.out_dir} and {out_dir} was not replaced", file=sys.stderr)
        return EXIT_FAILED
    if ws.root.is_dir():   # a success or a refusal verdict: `report` finds the bundle from anywhere
        ws.record_export(request.out_dir)
    return 0 if result.ok else EXIT_REFUSED


def verdict_of(result: Any) -> str:
    """``"ok"``, ``"refused"`` (the chip cannot host the network: exit code 3) or ``"failed"`` (verification)."""
    return "ok" if result.ok else "failed" if result.failed else "refused"


def export_payload(target: str, result: Any) -> dict[str, Any]:
    """The ``--json`` results of an export: the verdict, the bundle and its summary.json (verification, gates,
    mapping, op counts stored...)."""
    return {"target": target, "verdict": verdict_of(result), "ok": bool(result.ok), "bundle": str(result.out_dir),
            "reason": result.summary.get("reason"), "lines": list(result.lines), "summary": dict(result.summary)}
