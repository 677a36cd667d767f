"""``neuroposter features``: DenseNet-169 features of an imported dataset into a feature store."""

from __future__ import annotations

import argparse

from neuroposter.cli._common import add_common, int_in_range, workspace_of, write_resolved_config

__all__ = ["add_parser", "run"]



def add_parser(subparsers: argparse._SubParsersAction) -> None:
    """Adds the ``features`` command."""
    p = subparsers.add_parser(
        "features",
        help="extract DenseNet-169 features (pooled + token map) into a resumable feature store",
        description="Runs DenseNet-169 over every poster of a dataset and stores the pooled [1664] and the "
        "spatial token [H'xW', 1664] features as float16 memory maps in WORKSPACE/features/NAME. "
        "Interrupted runs resume; re-running with the same inputs does nothing.",
    )
    p.add_argument("--dataset", default="default", metavar="NAME",
                   help="dataset in WORKSPACE/datasets (default: default)")
    p.add_argument("--name", default="default", metavar="NAME",
                   help="feature store name in WORKSPACE/features (default: default)")
    p.add_argument("--weights", default="auto", metavar="auto|imagenet|random|PATH",
                   help="backbone weights: auto (ImageNet if cached or downloadable, else deterministic random "
                   "with a warning), imagenet, random[:SEED], or a DenseNet-169 state-dict file (default: auto)")
    p.add_argument("--batch-size", type=int_in_range(1, 1024), default=16, help="images per forward pass (default: 16)")
    p.add_argument("--limit", type=int_in_range(1, 10_000_000), default=None, metavar="N",
                   help="extract only N posters, spread over the splits (for quick runs)")
    p.add_argument("--force", action="store_true",
                   help="rebuild even if a store from other inputs (or an interrupted one) exists")
    add_common(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Extracts the features and prints a summary."""
    from neuroposter.artifact import check_destination
    from neuroposter.data import load_dataset
    from neuroposter.features import extract_features, resolve_weights

    ws = workspace_of(args)
    out = ws.features(args.name)
    dataset_dir = ws.dataset(args.dataset)
    # refuse a destination that could destroy data before anything slow happens (again under the lock later)
    check_destination(out, "features", force=True, protect=[dataset_dir], option="--name")
    dataset = load_dataset(dataset_dir)
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the fallback note is printed below, prominently
        spec = resolve_weights(args.weights)
    if spec.note:
        print(f"WARNING: {spec.note}")
    result = extract_features(dataset, out, weights=spec, batch_size=args.batch_size, limit=args.limit,
                              force=args.force, before_commit=lambda d: write_resolved_config(d, args))
    if result.status == "up-to-date":
        print(f"features {out} are up to date ({result.rows} posters, weights {result.weights}); nothing to do")
        return 0
    speed = f", {result.images_per_s:.1f} img/s" if result.images_per_s else ""
    verb = "resumed and finished" if result.status == "resumed" else "wrote"
    print(f"{verb} {out}: {result.rows} posters, pooled [{result.rows}, 1664], tokens "
          f"[{result.rows}, {result.grid[0] * result.grid[1]}, 1664] (grid {result.grid[0]}x{result.grid[1]}), "
          f"weights {result.weights}; {result.computed} computed in {result.seconds:.1f} s{speed}")
    return 0
