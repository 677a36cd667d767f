"""``neuroposter data synth|import|download``: make, import and fetch poster datasets."""

from __future__ import annotations

import argparse
import math
import re
from pathlib import Path
from typing import Any

from neuroposter.cli._common import (
    add_common, float_in_range, int_in_range, one_line_errors, seed_type, workspace_of, write_resolved_config,
)

__all__ = ["add_parser", "run"]

# Mirrors neuroposter.data.SYNTH_SIZES / POLICY_MODES (kept literal so `--help` imports nothing
# heavy; tests/cli/test_data_cli.py checks they agree).
_SYNTH_SIZES = {"tiny": 48, "default": 800}
_POLICY_MODES = ("native", "fit", "crop", "squash")
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")
_PARSERS: dict[str, argparse.ArgumentParser] = {}  # sub-command -> its parser (for re-checking config values)


def _fraction(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a fraction, got {text!r}") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"must be a finite number, got {text!r}")
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"fractions are in [0, 1], got {value:g}")
    return value


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    """Adds ``data`` and its sub-commands ``synth``, ``import`` and ``download``."""
    p = subparsers.add_parser(
        "data", help="poster datasets: synthesise, import a Kaggle MovieGenre.csv, download posters",
        description="Make, import and fetch poster datasets (Kaggle 'Movie Genre from its Poster' format).")
    p.set_defaults(func=run)
    one_line_errors(p)
    sub = p.add_subparsers(dest="subcommand", required=True, metavar="SUBCOMMAND")

    s = sub.add_parser("synth", help="write a synthetic poster set in the Kaggle format",
                       description="Write a deterministic synthetic poster set (MovieGenre.csv + posters/) "
                                   "in the Kaggle on-disk format; `data import` reads it by default.")
    s.add_argument("--n", type=int_in_range(1, 100_000, "the Kaggle set has about 40,000 posters"), default=None, metavar="N",
                   help="number of posters (default: from --size)")
    s.add_argument("--size", choices=list(_SYNTH_SIZES), default="default",
                   help="preset size: tiny = 48 posters, default = 800 (default: %(default)s)")
    s.add_argument("--seed", type=seed_type, default=0, help="random seed (default: %(default)s)")
    s.add_argument("--width", type=int_in_range(32, 4096), default=182, help="poster width (default: %(default)s)")
    s.add_argument("--height", type=int_in_range(32, 4096), default=268, help="poster height (default: %(default)s)")
    s.add_argument("--out", metavar="DIR", default=None, help="output folder (default: WORKSPACE/raw/synth)")
    s.add_argument("--force", action="store_true",
                   help="replace an existing synthetic set at the output folder (nothing else is ever replaced)")
    add_common(s)
    _PARSERS["synth"] = s

    i = sub.add_parser("import", help="import MovieGenre.csv + posters as a dataset",
                       description="Import a Kaggle-format MovieGenre.csv and its posters into "
                                   "WORKSPACE/datasets/NAME: clean rows (skips counted by reason), genre "
                                   "vocabulary, multi-hot labels, iterative-stratified split, report.")
    i.add_argument("--csv", metavar="FILE", default=None,
                   help="MovieGenre.csv (default: WORKSPACE/raw/synth/MovieGenre.csv)")
    i.add_argument("--posters", metavar="DIR", default=None,
                   help="folder of <imdbId>.jpg posters (default: 'posters' next to the CSV)")
    i.add_argument("--name", default="default", help="dataset name under WORKSPACE/datasets (default: %(default)s)")
    i.add_argument("--top-genres", type=int_in_range(1, 1000), default=None, metavar="N",
                   help="keep only the N most frequent genres (default: all)")
    i.add_argument("--min-count", type=int_in_range(1, 10_000_000), default=1, metavar="M",
                   help="drop genres with fewer than M usable posters (default: %(default)s)")
    i.add_argument("--split", type=_fraction, nargs=3, default=[0.7, 0.15, 0.15],
                   metavar=("TRAIN", "VAL", "TEST"),
                   help="split fractions in [0, 1] summing to 1, train > 0; every non-zero split gets at least "
                        "one poster (default: 0.7 0.15 0.15)")
    i.add_argument("--seed", type=seed_type, default=0, help="split seed (default: %(default)s)")
    i.add_argument("--image-policy", choices=_POLICY_MODES, default="native",
                   help="how posters are resized for feature extraction (default: %(default)s)")
    i.add_argument("--image-size", type=int_in_range(8, 4096), nargs=2, default=[268, 182], metavar=("H", "W"),
                   help="output image size (default: 268 182, the Kaggle poster size)")
    i.add_argument("--workers", type=int_in_range(1, 256), default=None,
                   help="threads verifying posters (default: min(8, CPUs))")
    i.add_argument("--force", action="store_true",
                   help="replace an existing dataset of that name (nothing else is ever replaced)")
    add_common(i)
    _PARSERS["import"] = i

    d = sub.add_parser("download", help="download the poster URLs of a MovieGenre.csv",
                       description="Fetch poster URLs into DIR/<imdbId>.jpg: resumable, bounded concurrency, "
                                   "timeouts, retries, atomic writes; failures by kind go to "
                                   "DIR/download_report.json. Stops at once when offline.")
    d.add_argument("--csv", metavar="FILE", required=True, help="Kaggle-format MovieGenre.csv")
    d.add_argument("--posters", metavar="DIR", default=None,
                   help="folder for the posters (default: 'posters' next to the CSV)")
    d.add_argument("--workers", type=int_in_range(1, 256), default=8, help="concurrent requests (default: %(default)s)")
    d.add_argument("--timeout", type=float_in_range(0, 3600, low_open=True), default=10.0,
                   help="per-request timeout in seconds (default: %(default)s)")
    d.add_argument("--retries", type=int_in_range(0, 100), default=2,
                   help="extra attempts for transient failures (default: %(default)s)")
    d.add_argument("--limit", type=int_in_range(1, 10_000_000), default=None, metavar="N",
                   help="fetch at most N missing posters (default: all)")
    add_common(d)
    _PARSERS["download"] = d


def _recheck(args: argparse.Namespace) -> str | None:
    """Runs each option's type check on values that came from a config file (argparse skips them).

    Returns:
        The first problem as a message, or None.
    """
    parser = _PARSERS.get(args.subcommand)
    if parser is None:
        return None
    for action in parser._actions:
        if not action.option_strings or action.type is None:
            continue
        value = getattr(args, action.dest, None)
        if value is None:
            continue
        flag = action.option_strings[-1] if action.option_strings[-1].startswith("--") else action.option_strings[0]
        values = value if isinstance(value, (list, tuple)) else [value]
        if isinstance(action.nargs, int) and len(values) != action.nargs:
            return f"{flag} needs {action.nargs} values, got {len(values)}"
        for v in values:
            try:
                action.type(str(v))
            except argparse.ArgumentTypeError as exc:
                return f"argument {flag}: {exc}"
    return None


def _usage(args: argparse.Namespace, message: str) -> int:
    """Raises the usage error (``neuroposter: error: data SUB: MESSAGE``, exit code 2)."""
    from neuroposter.errors import UsageError

    raise UsageError(f"data {args.subcommand}: {message}")


def run(args: argparse.Namespace) -> int:
    """Dispatches to the chosen sub-command; returns the exit code."""
    problem = _recheck(args)
    if problem:
        return _usage(args, problem)
    handlers = {"synth": _synth, "import": _import, "download": _download}
    return handlers[args.subcommand](args)


def _synth(args: argparse.Namespace) -> int:
    from neuroposter.data import SYNTH_SIZES, generate_synth

    n = args.n if args.n is not None else SYNTH_SIZES.get(args.size)
    if n is None:
        return _usage(args, f"--size must be one of {', '.join(SYNTH_SIZES)}")
    out = Path(args.out) if args.out else workspace_of(args).raw("synth")
    args.n, args.out = int(n), str(out)
    res = generate_synth(out, n=int(n), seed=int(args.seed), width=int(args.width), height=int(args.height),
                         force=bool(getattr(args, "force", False)),
                         before_commit=lambda d: write_resolved_config(d, args))
    prev = ", ".join(f"{g} {p:.0%}" for g, p in res.prevalence.items())
    print(f"wrote {res.n} synthetic posters to {res.out_dir} in {res.seconds:.1f} s")
    print(f"  csv     {res.csv_path}")
    print(f"  posters {res.posters_dir}")
    print(f"  genres  {prev}")
    return 0


def _import(args: argparse.Namespace) -> int:
    from neuroposter.data import ImagePolicy, import_kaggle
    from neuroposter.data.split import check_fractions

    if not _NAME.match(str(args.name)):
        return _usage(args, f"--name {args.name!r}: use letters, digits, '.', '_' or '-' (no paths)")
    ws = workspace_of(args)
    csv_path = Path(args.csv) if args.csv else ws.raw("synth") / "MovieGenre.csv"
    posters = Path(args.posters) if args.posters else csv_path.parent / "posters"
    try:
        split = check_fractions(args.split)
        h, w = (int(v) for v in args.image_size)
        policy = ImagePolicy(mode=str(args.image_policy), height=h, width=w)
    except ValueError as exc:
        return _usage(args, str(exc))
    args.csv, args.posters = str(csv_path), str(posters)
    res = import_kaggle(csv_path, posters, ws.dataset(args.name), top_genres=args.top_genres,
                        min_count=int(args.min_count), split=split, seed=int(args.seed),
                        image_policy=policy, workers=args.workers, force=bool(getattr(args, "force", False)),
                        before_commit=lambda d: write_resolved_config(d, args))
    print(_import_summary(res.path, res.key, res.report))
    return 0


def _import_summary(path: Path, key: str, r: dict[str, Any]) -> str:
    lines = [f"dataset {path}  (key {key[:12]})",
             f"rows read {r['rows_read']}, kept {r['rows_kept']}, skipped {r['rows_skipped']}"]
    if r["skipped"]:
        lines.append("  skipped: " + ", ".join(f"{k} {v['count']}" for k, v in r["skipped"].items()))
    if r["genres_dropped"]:
        lines.append("  genres dropped: " + ", ".join(f"{g} ({c})" for g, c in r["genres_dropped"].items()))
    sizes = r["split_sizes"]
    width = max(8, *(len(g) for g in r["genres"]))
    lines.append(f"{'genre':<{width}} {'count':>6} {'all':>6} " + " ".join(f"{s:>6}" for s in sizes))
    for g in r["genres"]:
        cells = []
        for s in sizes:
            v = r["split_genre_prevalence"][s][g]
            cells.append(f"{v:>6.1%}" if v is not None else f"{'-':>6}")
        lines.append(f"{g:<{width}} {r['genre_counts'][g]:>6} {r['genre_prevalence'][g]:>6.1%} " + " ".join(cells))
    lines.append(f"{'items':<{width}} {r['rows_kept']:>6} {'':>6} " + " ".join(f"{n:>6}" for n in sizes.values()))
    pol = r["image_policy"]
    lines.append(f"labels per poster {r['label_cardinality']:.2f}; image policy {pol['mode']} "
                 f"{pol['height']}x{pol['width']} (HxW)")
    lines.extend(f"warning: {w}" for w in r["warnings"])
    return "\n".join(lines)


def _download(args: argparse.Namespace) -> int:
    from neuroposter.data import download_posters

    csv_path = Path(args.csv)
    posters = Path(args.posters) if args.posters else csv_path.parent / "posters"
    res = download_posters(csv_path, posters, workers=int(args.workers), timeout=float(args.timeout),
                           retries=int(args.retries), limit=args.limit)
    args.posters = str(posters)
    write_resolved_config(res.posters_dir, args)
    print(f"posters {res.posters_dir}: downloaded {res.downloaded}, already present {res.present}, "
          f"failed {sum(res.failures.values())} of {res.requested} requested")
    for kind, count in res.failures.items():
        print(f"  {kind:<14} {count}")
    print(f"report {res.report_path}")
    return 0
