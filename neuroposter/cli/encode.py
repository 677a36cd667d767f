"""``neuroposter encode``: spike-encode a feature store into an encoded (event) set with a report."""

from __future__ import annotations

import argparse

from neuroposter.cli._common import add_common, encode_steps, seed_type, workspace_of, write_resolved_config

__all__ = ["add_parser", "run"]

# Kept in sync with neuroposter.encode.ENCODERS (not imported here so `--help` stays instant);
# tests/encode checks the two agree.
ENCODER_NAMES: tuple[str, ...] = ("threshold", "multilevel", "rate", "latency", "delta")



def add_parser(subparsers: argparse._SubParsersAction) -> None:
    """Adds the ``encode`` command."""
    p = subparsers.add_parser(
        "encode",
        help="turn DenseNet features into spike trains (events) with a fitted encoder and a report",
        description="Fits a normalisation and an encoder on the train split of a feature store, encodes "
        "every split to spikes stored as events in WORKSPACE/encoded/NAME, and writes encoding_report.json "
        "+ .png (firing rates, bits per feature, reconstruction error, linear probes vs features).",
    )
    p.add_argument("--features", default="default", metavar="NAME",
                   help="feature store in WORKSPACE/features (default: default)")
    p.add_argument("--name", default="default", metavar="NAME",
                   help="encoded set name in WORKSPACE/encoded (default: default)")
    p.add_argument("--encoder", default="multilevel", choices=ENCODER_NAMES,
                   help="spike encoder (default: multilevel)")
    p.add_argument("--T", "-T", dest="T", type=encode_steps, default=4, help="time steps, 1..256 (default: 4)")
    p.add_argument("--form", default="tokens", choices=("tokens", "pooled"),
                   help="tokens: the H'xW' spatial tokens; pooled: one token per poster (default: tokens)")
    p.add_argument("--seed", type=seed_type, default=0, help="seed of stochastic encoders and of the fit subsample")
    p.add_argument("--fit", default="per-feature", choices=("per-feature", "global"),
                   help="thresholds/levels per feature or one global set (default: per-feature)")
    p.add_argument("--levels", default="quantile", choices=("quantile", "uniform"),
                   help="multilevel: equal-frequency levels from train, or uniform t/T (default: quantile)")
    p.add_argument("--no-probe", dest="probe", action="store_false",
                   help="skip the linear probes in the report (faster)")
    p.add_argument("--force", action="store_true",
                   help="replace an existing encoded set of this name (one from other features or options "
                   "is never replaced without it)")
    add_common(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Encodes the features and prints a summary of the report."""
    from neuroposter.encode import encode_store
    from neuroposter.features import open_store

    from neuroposter.artifact import check_destination

    ws = workspace_of(args)
    out = ws.encoded(args.name)
    features_dir = ws.features(args.features)
    check_destination(out, "encoded", force=True, protect=[features_dir], option="--name")
    store = open_store(features_dir)
    if store.weights_note:
        print(f"WARNING: features {store.path} use weights {store.weights!r}: {store.weights_note}")
    res = encode_store(store, out, encoder=args.encoder, T=args.T, form=args.form, seed=args.seed,
                       per_feature=args.fit == "per-feature", levels=args.levels, probe=args.probe,
                       force=args.force, before_commit=lambda d: write_resolved_config(d, args))
    if res.status == "up-to-date":
        print(f"encoded set {out} is up to date ({args.encoder}, T={args.T}, {args.form}); nothing to do")
        return 0
    rep = res.report
    sizes = ", ".join(f"{s} {v['vectors'] // max(rep['n_tokens'], 1)}" for s, v in rep["splits"].items())
    print(f"wrote {out}: {rep['encoder']} T={rep['T']} {rep['form']} [T, N={rep['n_tokens']}, D={rep['dim']}] "
          f"({sizes}); features from weights {store.weights}")
    per_step = ", ".join(f"{r:.3f}" for r in rep["splits"]["train"]["firing_rate_per_step"])
    print(f"  firing rate {rep['firing_rate']:.3f} (per step: {per_step}); bits/feature: capacity "
          f"{rep['bits_per_feature']['capacity']:.2f}, measured {rep['bits_per_feature']['measured_train']:.2f}; "
          f"{rep['events']['total']} events, {rep['events']['bytes_on_disk'] / 1e6:.1f} MB")
    rec = rep["reconstruction"]
    if rec.get("r2") is not None:
        print(f"  reconstruction (test): MSE {rec['mse']:.4f} (normalised units), R^2 {rec['r2']:.3f}")
    pr = rep.get("probe")
    if pr:
        print(f"  linear probe test micro-F1: spikes {pr['spikes']['micro_f1']:.3f}, features "
              f"{pr['features']['micro_f1']:.3f}, constant predictor {pr['constant']['micro_f1']:.3f} "
              f"({'+'.join(pr['constant']['genres']) or 'nothing'}); mAP spikes {pr['spikes']['map']:.3f}, "
              f"features {pr['features']['map']:.3f}")
    print(f"  report: {out / 'encoding_report.json'} and {out / 'encoding_report.png'}")
    return 0
