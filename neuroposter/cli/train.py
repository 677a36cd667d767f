"""``neuroposter train``: train one model on the workspace's inputs and write ``runs/<name>/``.

Scale-out: ``torchrun --nproc_per_node=N -m neuroposter train ...`` trains with
DistributedDataParallel (gloo on CPU, NCCL on GPU); ``--batch-size`` stays the global batch.
"""

from __future__ import annotations

import argparse
import contextlib

from neuroposter.cli._common import add_common, float_in_range, int_in_range, seed_type
from neuroposter.models import MODELS

__all__ = ["add_parser", "run"]


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    """Registers ``neuroposter train``."""
    models = "; ".join(f"{n}: {MODELS.get(n).description}" for n in MODELS.names())
    p = subparsers.add_parser(
        "train", help="train the SDT or a baseline; metrics beside constant baselines",
        description=f"Trains a model and writes WORKSPACE/runs/<name>/ (checkpoint, metrics.json, curves). "
        f"Models: {models}. Optimisation flags left out take per-model defaults.")
    p.add_argument("--model", choices=MODELS.names(), default="sdt", help="model to train (default: sdt)")
    p.add_argument("--name", default=None, help="run name (default: the model name)")
    p.add_argument("--encoded", default="default", help="encoded set name (sdt, snn-mlp, ann-transformer)")
    p.add_argument("--features", default="default", help="feature store name (cnn)")
    p.add_argument("--dataset", default="default", help="dataset name (vit)")
    p.add_argument("--epochs", type=int_in_range(1, 10_000), default=None, help="maximum epochs (default per model, e.g. 40)")
    p.add_argument("--batch-size", type=int_in_range(1, 65_536), default=None, help="global batch size (default per model)")
    p.add_argument("--lr", type=float_in_range(0, 10, low_open=True), default=None, help="AdamW peak learning rate (default per model)")
    p.add_argument("--weight-decay", type=float_in_range(0, 10), default=None, help="AdamW weight decay (default 0.01)")
    p.add_argument("--warmup", type=int_in_range(0, 10_000), default=None, help="linear warm-up epochs (default 1)")
    p.add_argument("--patience", type=int_in_range(1, 10_000), default=None,
                   help="early stopping: epochs without a better validation mAP (default per model)")
    p.add_argument("--seed", type=seed_type, default=0, help="seed for init, sample order and dropout (default 0)")
    p.add_argument("--resume", action="store_true", help="continue an interrupted run of the same name")
    p.add_argument("--force", action="store_true",
                   help="replace an existing run of the same name (without it, that is refused)")
    p.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto",
                   help="auto: CUDA when available (default)")
    p.add_argument("--threads", type=int_in_range(0, 1024), default=0,
                   help="CPU threads for torch (0: torch's default; 1 avoids oversubscription on busy machines)")
    p.add_argument("--finetune", action="store_true",
                   help="cnn: train the backbone end to end on images (slow) instead of a head on stored features")
    p.add_argument("--image-size", type=int_in_range(16, 1024), default=96, help="vit: square image side when trained from scratch")
    p.add_argument("--vit-weights", choices=["auto", "none", "imagenet"], default="auto",
                   help="vit: ImageNet ViT-B/16 from the local torch cache (auto: if cached) or from scratch")
    add_common(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Trains and prints the test metrics next to the constant baselines."""
    import torch

    from neuroposter.cli._common import workspace_of, write_resolved_config
    from neuroposter.train import (
        MODEL_TRAIN_DEFAULTS, TrainConfig, dist_info_from_env, load_task_data, resolve_device, train_run,
    )
    from neuroposter.train.data import input_locations
    from neuroposter.train.distributed import init_distributed, shutdown_distributed
    from neuroposter.train.run import claim_run

    if args.threads > 0:
        torch.set_num_threads(args.threads)
    info = dist_info_from_env()
    device = resolve_device(args.device)
    if device.type == "cuda" and info.distributed:
        device = torch.device("cuda", info.local_rank)
        torch.cuda.set_device(device)
    init_distributed(info, device)
    claim = contextlib.ExitStack()
    try:
        ws = workspace_of(args)
        name = args.name or args.model
        run_dir = ws.run(name)
        # refuse a bad destination, and lock the run (with its --resume state), before loading or training
        claim.enter_context(claim_run(run_dir, force=args.force, dist=info, protect=input_locations(
            args.model, ws, encoded=args.encoded, features=args.features, dataset=args.dataset)))
        model_kwargs: dict[str, object] = {}
        image_size = args.image_size
        if args.model == "vit":
            from neuroposter.models.vit import imagenet_vit_checkpoint

            weights = args.vit_weights
            if weights == "auto":
                weights = "imagenet" if imagenet_vit_checkpoint() is not None else "none"
            model_kwargs["weights"] = weights
            if weights == "imagenet":
                image_size = 224
        task, store = load_task_data(args.model, ws, encoded=args.encoded, features=args.features,
                                     dataset=args.dataset, finetune=args.finetune, image_size=image_size)
        defaults = dict(MODEL_TRAIN_DEFAULTS.get(args.model, {}))
        for key in ("epochs", "batch_size", "lr", "weight_decay", "warmup", "patience"):
            value = getattr(args, key)
            if value is not None:
                defaults[key] = value
        cfg = TrainConfig(seed=args.seed, **defaults)
        result = train_run(args.model, task, run_dir, cfg, model_kwargs=model_kwargs, device=device,
                           dist=info, resume=args.resume, store=store, force=args.force,
                           write_config=lambda d: write_resolved_config(d, args))
        if result is None:
            return 0
        m = result.metrics
        print(f"trained {args.model} -> {result.run_dir} in {result.train_seconds:.1f} s "
              f"({m['epochs_run']} epochs, best {m['best_epoch']}, device {m['device']}, "
              f"{m['world_size']} process{'es' if m['world_size'] > 1 else ''})")
        keys = ("micro_f1", "macro_f1", "samples_f1", "map", "p_at_1", "hamming", "micro_f1_tuned")
        print(f"  {'test':<18s}" + "".join(f"{k:>16s}" for k in keys))
        rows = [(args.model, m["test"])] + [(f"  {b}", v) for b, v in m["baselines"].items()]
        for label, vals in rows:
            print(f"  {label:<18s}" + "".join(f"{vals[k]:16.3f}" for k in keys))
        if m.get("firing_rates"):
            rates = m["firing_rates"]
            print(f"  firing rates: mean {sum(rates.values()) / len(rates):.3f} over {len(rates)} LIF layers")
        return 0
    finally:
        claim.close()
        shutdown_distributed()
