"""``neuroposter predict POSTER...``: classify poster image files with a run or a deployed bundle (argument
parsing and printing only; the work is :mod:`neuroposter.predict`)."""

from __future__ import annotations

import argparse
from typing import Any

from neuroposter.cli._common import add_common, add_json_flag, int_in_range

__all__ = ["add_parser", "run", "format_prediction"]


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    """Registers ``neuroposter predict``."""
    p = subparsers.add_parser(
        "predict", help="classify poster images with a trained run or a deployed bundle (with its energy)",
        description="Runs poster image files (jpg/png) through the front end the run was trained on (the DenseNet-169 "
        "weights and image policy of its feature store, the encoder fitted for its encoded set) and the model: the "
        "run's float model (--run), or the deployed network of an export bundle on its target (--bundle: nir graph "
        "in the reference simulator, a chip's deployed graph in its arithmetic, Loihi's integer reference, "
        "onnxruntime), with the network's energy for each poster (its op counts on that poster, device view; front "
        "end excluded). Prints the genres by probability (sigmoid of the time-mean logits) and the predicted ones "
        "(the run's tuned per-genre thresholds, else 0.5).")
    p.add_argument("posters", nargs="+", metavar="POSTER", help="poster image files (.jpg, .jpeg, .png)")
    src = p.add_mutually_exclusive_group()
    src.add_argument("--run", default=None, metavar="RUN",
                     help="run name in WORKSPACE/runs/ or a path to a run (default: sdt)")
    src.add_argument("--bundle", default=None, metavar="DIR",
                     help="an export bundle (EXPORT_ROOT/<target>/<run>): predict with its deployed network")
    p.add_argument("--top", type=int_in_range(1, 10_000), default=None, metavar="K",
                   help="list only the K most probable genres per poster (default: all)")
    p.add_argument("--profiles", nargs="+", default=None, metavar="PROFILE",
                   help="--bundle of nir/onnx: the profiles pricing the energy (default: every neuromorphic profile "
                        "with published per-op energy / every ANN profile); chip bundles use the chip's profile")
    add_json_flag(p)
    add_common(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Predicts and prints (or emits the JSON document)."""
    from neuroposter.cli._common import emit, workspace_of
    from neuroposter.errors import UsageError
    from neuroposter.predict import predict_bundle, predict_run

    if args.profiles is not None and args.bundle is None:
        raise UsageError("--profiles prices a bundle's energy; it applies with --bundle only")
    if args.bundle is not None:
        res = predict_bundle(args.bundle, args.posters, profiles=args.profiles)
    else:
        res = predict_run(workspace_of(args).run(args.run or "sdt"), args.posters)
    emit(args, format_prediction(res, args.top), res.to_dict(args.top))
    return 0


def _energy_line(e: dict[str, Any]) -> str:
    from neuroposter.profiling.foreign import energy_text   # nir/numpy: imported only when results are printed

    where = f"{e.get('placement')} on " if e.get("placement") in ("chip", "host") else ""
    if e.get("status") != "priced":
        why = str(e.get("reason") or "").strip().splitlines()[0][:160] if e.get("reason") else ""
        return f"    {where}{e.get('profile', '-')}: {e.get('status')}" + (f" ({why})" if why else "")
    rng = ""
    if e.get("low_pj") is not None and (e.get("low_pj") != e.get("energy_pj") or e.get("high_pj") != e.get("energy_pj")):
        rng = f" [{energy_text(e['low_pj'])} - {energy_text(e.get('high_pj'))}]"
    return (f"    {where}{e['profile']}: {energy_text(e['energy_pj'])}{rng} ({e.get('evidence')}; "
            f"{'; '.join(e.get('includes') or [])})")


def format_prediction(res: Any, top: int | None = None) -> list[str]:
    """The text output: one block per poster."""
    head = (f"bundle {res.bundle} ({res.target}) of run {res.run}" if res.bundle is not None
            else f"run {res.run}")
    lines = [f"{head}: {res.model}; network: {res.network}",
             f"front end: {res.front_end}",
             f"probability: sigmoid of the time-mean logits; predicted at {res.thresholds}"]
    for pp in res.posters:
        p = pp.poster
        known = f" (dataset poster #{p.dataset_index}: {p.title})" if p.dataset_index is not None else ""
        lines.append(f"{p.path}{known}")
        lines.append(f"  predicted: {', '.join(pp.predicted) or '(none above its threshold)'}")
        w = max([len(s.genre) for s in pp.scores] + [5])
        for s in pp.scores[:top]:
            lines.append(f"  {s.genre:<{w}s} {s.probability:6.3f}  (threshold {s.threshold:.2f})"
                         + ("  *" if s.predicted else ""))
        if pp.energy:
            lines.append("  energy per inference of this poster:")
            lines += [_energy_line(e) for e in pp.energy if e.get("shown", True)]
            hidden = [e["profile"] for e in pp.energy if not e.get("shown", True)]
            if hidden:
                lines.append(f"    not shown (no per-op energy published): {', '.join(hidden)}")
    if res.energy_note:
        lines.append(f"energy: {res.energy_note}")
    return lines
