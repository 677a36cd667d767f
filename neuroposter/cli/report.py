"""``neuroposter report``: the energy profiling report (HTML + Markdown + CSV + PNG) in ``reports/<name>/``."""

from __future__ import annotations

import argparse

from neuroposter.cli._common import add_common, add_json_flag, samples_or_all

__all__ = ["add_parser", "run"]


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    """Registers ``neuroposter report``."""
    p = subparsers.add_parser(
        "report", help="energy profiling report: op counts x hardware profiles, accuracy beside energy",
        description="Reads the op counts every run's export bundle stores (SNNs: `export --target nir`, the NIR graph "
        "simulated on test inputs; ANNs: `export --target onnx`, the ONNX graph), prices them under the SDT-paper, "
        "precision-matched, memory-aware and per-device views, and writes WORKSPACE/reports/<name>/ (report.html, "
        "report.md, energy.csv, figures). It never exports or simulates anything itself.")
    p.add_argument("--name", default="default", help="report name (default: default)")
    p.add_argument("--runs", nargs="+", default=None, metavar="RUN",
                   help="run names under WORKSPACE/runs (default: all)")
    p.add_argument("--profiles", nargs="+", default=None, metavar="PROFILE",
                   help="device profiles (names or YAML paths; default: every chip and ANN platform; "
                        "`neuroposter report --list-profiles` lists them)")
    p.add_argument("--samples", type=samples_or_all, default=None, metavar="N|all",
                   help="require the SNNs' stored op counts to be made on N test samples (`all`: the whole test "
                        "split); a bundle counted on another number is refused with the export command that "
                        "recounts (`--opt count_samples=N`). Default: use what the nir bundles store")
    p.add_argument("--exports", default=None, metavar="DIR",
                   help="also read the export bundles under DIR (<target>/<run>/); by default the report reads the "
                        "bundles recorded in WORKSPACE/exports.json by every export, from any current folder")
    p.add_argument("--force", action="store_true", help="replace an existing report of the same --name")
    p.add_argument("--frontend-profile", default="jetson_agx_orin",
                   help="ANN profile pricing the DenseNet-169 front end in neuromorphic device views "
                        "(default: jetson_agx_orin)")
    p.add_argument("--no-frontend", action="store_true",
                   help="leave out the DenseNet-169 front end (totals then exclude it; the report says so)")
    p.add_argument("--no-latency", action="store_true", help="skip the onnxruntime latency measurement")
    p.add_argument("--list-profiles", action="store_true", help="list the hardware profiles and exit")
    add_json_flag(p)
    add_common(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Builds the report and prints where it is, with its verdict (the detailed sentences are in ``--json`` and
    the report)."""
    from neuroposter.cli._common import emit, workspace_of
    from neuroposter.profiling.profiles import list_profiles, load_profile

    # profiles named on the command line are loaded (and so validated) before anything else is done
    chosen = [load_profile(n) for n in (args.profiles or [])]
    if args.list_profiles:
        shown = [(p.name, p) for p in chosen] or [(n, load_profile(n)) for n in list_profiles()]
        emit(args, [f"{n:22s} {p.kind:12s} {p.scope:8s} {p.evidence:10s} {p.description}" for n, p in shown],
             {"profiles": [{"name": n, "kind": p.kind, "scope": p.scope, "evidence": p.evidence,
                            "description": p.description, "source": list(p.sources)} for n, p in shown]})
        return 0
    from neuroposter.report.build import build_report

    ws = workspace_of(args)
    cfg = {k: v for k, v in sorted(vars(args).items()) if k not in ("func",) and not callable(v)}
    res = build_report(ws.root, name=args.name, runs=args.runs, profiles=args.profiles, samples=args.samples,
                       exports=args.exports, frontend=None if args.no_frontend else "auto",
                       frontend_profile=args.frontend_profile, latency=not args.no_latency,
                       resolved_config=cfg, force=args.force)
    lines = [f"report written to {res.out_dir}/report.html (+ report.md, energy.csv, {len(res.files)} files)"]
    lines += [f"  {line}" for line in res.verdict]
    lines += [f"  warning: {w}" for w in res.warnings]
    emit(args, lines, {"report": str(res.out_dir), "files": list(res.files), "verdict": list(res.verdict),
                       "summary": list(res.summary),
                       "warnings": list(res.warnings), "headline": _records(res.headline),
                       "accuracy": _records(res.accuracy), "energy": _records(res.energy)})
    return 0


def _records(frame: object) -> list[dict] | None:
    """A table of the report as JSON records (None when the report has none)."""
    if frame is None:
        return None
    import json

    return json.loads(frame.to_json(orient="records"))  # type: ignore[attr-defined]
