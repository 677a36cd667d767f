"""``neuroposter fit --target T``: derive a model that fits chip T from its profile, train it with T's arithmetic
in the loop, export it to T and verify it (argument parsing and orchestration only).

The derivation is :func:`neuroposter.targets.fit.derive_fit` (the profile's limits alone; with ``--input images``
:func:`neuroposter.targets.fit.derive_conv_fit`, a convolutional variant of the pixel SDT, ``chip-cnn``); training is
:func:`neuroposter.train.train_run` with a float phase then the chip's weight arithmetic (as ``train --target``);
the export is the target's exporter (as ``neuroposter export --target T --run NAME``).
"""

from __future__ import annotations

import argparse
import contextlib

from neuroposter.cli._common import (
    EXIT_CODES_EPILOG, EXIT_FAILED, EXIT_REFUSED, add_common, add_json_flag, float_in_range, int_in_range,
    samples_or_all, seed_type,
)
from neuroposter.targets import chip_targets

__all__ = ["add_parser", "run", "default_run_name"]

MODEL = "chip-snn"
#: ``--input`` -> the fitted model it trains
INPUT_MODELS = {"features": "chip-snn", "images": "chip-cnn"}


def default_run_name(target: str, images: bool = False) -> str:
    """The run (and bundle) name of ``fit --target TARGET`` without ``--name``: ``fit-TARGET``, with ``--input
    images`` ``fit-TARGET-pixels``."""
    return f"fit-{target}-pixels" if images else f"fit-{target}"


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    """Registers ``neuroposter fit``."""
    p = subparsers.add_parser(
        "fit", help="derive a spiking model that fits a chip from its profile; train, export and verify it",
        description="Derives from the chip's hardware profile alone a chip-snn that fits it (a host projection of "
        "the features onto the chip's input channels where needed, widths within its fan-in / fan-out / channel "
        "/ kernel-memory / neuron limits, its neuron model and weight precision), trains it on pooled spikes with "
        "the chip's weight arithmetic in the loop (a float phase, then a quantisation-aware one), writes "
        "WORKSPACE/runs/<name>/ and exports it to the chip (EXPORT_ROOT/<target>/<name>/), printing the plan, "
        "its reasons and the export's verdict. With --input images it fits the pixel SDT's convolutional variant "
        "instead (chip-cnn: the spiking stem on the poster image, convolutions in place of the SDSA blocks, one chip "
        "core per layer within its kernel and neuron memory) and writes the run fit-TARGET-pixels. Exit code 3 when "
        "the chip refuses the network, 1 when its verification fails.", epilog=EXIT_CODES_EPILOG)
    p.add_argument("--target", required=True, choices=chip_targets(), help="the chip to fit")
    p.add_argument("--input", choices=sorted(INPUT_MODELS), default="features",
                   help="features: a chip-snn on pooled spikes of the DenseNet features (default); images: chip-cnn, "
                        "the pixel SDT's convolutional variant on the posters themselves (direct encoding)")
    p.add_argument("--encoded", default="pooled", help="--input features: pooled encoded set to train on "
                                                         "(default: pooled)")
    p.add_argument("--dataset", default="default", help="--input images: the image dataset (default: default)")
    p.add_argument("--image-size", type=int_in_range(4, 1024), default=None,
                   help="--input images: square image side, a multiple of 4 (default 16: the fit trains in about 20 s "
                        "on the 800-poster demo)")
    p.add_argument("--T", type=int_in_range(1, 64), default=None,
                   help="--input images: time steps of direct encoding (default 4)")
    p.add_argument("--name", default=None, help="run name (default: fit-TARGET, fit-TARGET-pixels with --input "
                                                "images)")
    p.add_argument("--epochs", type=int_in_range(1, 10_000), default=None,
                   help="epochs of the float phase (default: snn-mlp's, 40)")
    p.add_argument("--qat-epochs", type=int_in_range(1, 10_000), default=None,
                   help="epochs of the phase in the chip's arithmetic (default 10)")
    p.add_argument("--qat-lr", type=float_in_range(0, 10, low_open=True), default=None,
                   help="its peak learning rate (default: a tenth of --lr)")
    p.add_argument("--patience", type=int_in_range(1, 10_000), default=None,
                   help="early stopping in both phases: epochs without a better validation mAP (default 10)")
    p.add_argument("--batch-size", type=int_in_range(1, 65_536), default=None, help="batch size (default 32)")
    p.add_argument("--lr", type=float_in_range(0, 10, low_open=True), default=None,
                   help="AdamW peak learning rate (default 5e-3)")
    p.add_argument("--seed", type=seed_type, default=0, help="seed for init, sample order and dropout (default 0)")
    p.add_argument("--no-export", action="store_true", help="train only; do not export to the chip")
    p.add_argument("--export-root", metavar="DIR", default="export",
                   help="folder holding all bundles (default: ./export)")
    p.add_argument("--samples", type=samples_or_all, default=None, metavar="N|all",
                   help="export: samples of the per-layer spike comparisons (default 16)")
    p.add_argument("--trained-samples", type=samples_or_all, default=None, metavar="N|all",
                   help="export: samples on which the deployed network is compared with the trained model "
                        "(default: the whole test split)")
    p.add_argument("--force", action="store_true",
                   help="replace an existing run / bundle of the same name (never anything else)")
    p.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto", help="auto: CUDA when available")
    p.add_argument("--threads", type=int_in_range(0, 1024), default=0,
                   help="CPU threads for torch (0: torch's default)")
    add_json_flag(p)
    add_common(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Derives, trains, exports; prints the plan, the test metrics and the export's verdict."""
    import torch

    from neuroposter.cli._common import emit, workspace_of, write_resolved_config
    from neuroposter.cli.train import _qat_plan, train_payload
    from neuroposter.errors import UsageError
    from neuroposter.targets import training_arithmetic
    from neuroposter.targets.fit import derive_conv_fit, derive_fit
    from neuroposter.train import (
        IMAGE_SIZE_DEFAULTS, MODEL_TRAIN_DEFAULTS, TrainConfig, load_task_data, resolve_device, train_run,
    )
    from neuroposter.train.data import input_locations
    from neuroposter.train.run import claim_run

    if args.threads > 0:
        torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    ws = workspace_of(args)
    images = args.input == "images"
    model = INPUT_MODELS[args.input]
    if not images and (args.image_size is not None or args.T is not None):
        raise UsageError("--image-size and --T apply to --input images only")
    name = args.name or default_run_name(args.target, images)
    run_dir = ws.run(name)
    arith = training_arithmetic(args.target)
    with contextlib.ExitStack() as claim:
        claim.enter_context(claim_run(run_dir, force=args.force,
                                      protect=input_locations(model, ws, encoded=args.encoded, dataset=args.dataset)))
        if images:
            size = int(args.image_size or IMAGE_SIZE_DEFAULTS[model])
            plan = derive_conv_fit(arith.profile, size, 1, 1)    # the image size is valid before loading images
            task, _ = load_task_data(model, ws, dataset=args.dataset, image_size=size)
            plan = derive_conv_fit(arith.profile, size, task.n_classes, int(args.T or 4))
        else:
            task, _ = load_task_data(model, ws, encoded=args.encoded)
        if not images and int(task.meta.get("n_tokens", 1)) != 1:
            raise UsageError(f"fit trains on pooled spikes, but encoded set {args.encoded!r} holds "
                             f"{task.meta['n_tokens']} tokens per sample; encode the pooled features "
                             "(`neuroposter encode --form pooled --name pooled`) and pass `--encoded pooled`")
        if not images:
            plan = derive_fit(arith.profile, int(task.meta["d_in"]), task.n_classes, int(task.meta["T"]))
        emit(args, [f"fit {plan.describe()}", *(f"  - {reason}" for reason in plan.reasons)],
             {"target": args.target, "plan": {"description": plan.describe(), "reasons": list(plan.reasons),
                                              "model_kwargs": plan.to_model_kwargs()}})
        defaults = dict(MODEL_TRAIN_DEFAULTS["snn-mlp" if model == "chip-snn" else model])
        for key in ("epochs", "batch_size", "lr", "patience"):
            if getattr(args, key) is not None:
                defaults[key] = getattr(args, key)
        cfg = TrainConfig(seed=args.seed, **defaults)
        qat = _qat_plan(argparse.Namespace(**{**vars(args), "init_from": None, "model": model}), ws, arith, cfg,
                        task)
        result = train_run(model, task, run_dir, cfg, model_kwargs=plan.to_model_kwargs(), device=device,
                           store=None, force=args.force, write_config=lambda d: write_resolved_config(d, args),
                           qat=qat)
    if result is None:
        return 0
    m = result.metrics
    base = max(m["baselines"].values(), key=lambda v: v["micro_f1"])
    emit(args, [f"trained {model} -> {result.run_dir} in {result.train_seconds:.1f} s with {arith.describe()}: test "
                f"micro-F1 {m['test']['micro_f1']:.3f}, mAP {m['test']['map']:.3f} (best constant baseline micro-F1 "
                f"{base['micro_f1']:.3f})"],
         {"run": str(result.run_dir), "model": model, "arithmetic": arith.describe(),
          **train_payload(m, result.train_seconds)})
    if args.no_export:
        return 0
    return _export(args, ws, run_dir)


def _export(args: argparse.Namespace, ws: object, run_dir: object) -> int:
    """``neuroposter export --target T --run NAME`` in process; prints its lines and the verdict."""
    import sys
    from pathlib import Path

    from neuroposter.artifact import artifact_lock
    from neuroposter.cli._common import write_resolved_config
    from neuroposter.targets import ExportRequest, get_exporter
    from neuroposter.targets._bundle import check_bundle_destination

    out_dir = Path(args.export_root) / args.target / Path(run_dir).name
    options = {k: v for k, v in (("samples", args.samples), ("trained_samples", args.trained_samples))
               if v is not None}
    request = ExportRequest(target=args.target, run_dir=Path(run_dir), out_dir=out_dir, workspace=Path(ws.root),
                            options=options, force=bool(args.force),
                            write_config=lambda d: write_resolved_config(d, args))
    check_bundle_destination(request)
    with artifact_lock(request.out_dir):
        result = get_exporter(args.target)(request)
    from neuroposter.cli._common import emit
    from neuroposter.cli.export import export_payload

    payload = {"export": export_payload(args.target, result)}
    if result.failed:
        emit(args, list(result.lines), payload)
        reason = str(result.summary.get("reason") or "verification failed").strip().splitlines()[0]
        print(f"neuroposter: error: {args.target} verification of the fitted model failed ({reason}); the new "
              f"bundle is kept at {result.out_dir}", file=sys.stderr)
        return EXIT_FAILED
    if ws.root.is_dir():
        ws.record_export(request.out_dir)
    verdict = "fits and verified" if result.ok else "refused: " + str(result.summary.get("reason") or "").strip()
    emit(args, [*result.lines, f"fit {args.target}: {verdict} ({request.out_dir})"], payload)
    return 0 if result.ok else EXIT_REFUSED
