"""``neuroposter train``: train one model on the workspace's inputs and write ``runs/<name>/``.

Scale-out: ``torchrun --nproc_per_node=N -m neuroposter train ...`` trains with
DistributedDataParallel (gloo on CPU, NCCL on GPU); ``--batch-size`` stays the global batch.
"""

from __future__ import annotations

import argparse
import contextlib

from neuroposter.cli._common import add_common, add_json_flag, float_in_range, int_in_range, seed_type
from neuroposter.models import MODELS
from neuroposter.targets import training_targets

__all__ = ["add_parser", "run"]


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    """Registers ``neuroposter train``."""
    models = "; ".join(f"{n}: {MODELS.get(n).description}" for n in MODELS.names())
    p = subparsers.add_parser(
        "train", help="train the SDT or a baseline; metrics beside constant baselines",
        description=f"Trains a model and writes WORKSPACE/runs/<name>/ (checkpoint, metrics.json, curves). "
        f"Models: {models}. Optimisation flags left out take per-model defaults.")
    p.add_argument("--model", choices=MODELS.names(), default="sdt", help="model to train (default: sdt)")
    p.add_argument("--name", default=None, help="run name (default: the model name; with --target: MODEL-TARGET)")
    p.add_argument("--target", choices=training_targets(), default=None,
                   help="quantisation-aware training: the target's integer weight arithmetic (from its hardware "
                        "profile) in the forward pass, so the deployed network is the trained one; spiking models "
                        "(sdt-pixels: loihi only; its image goes as 8-bit graded spikes over the training images' "
                        "range)")
    p.add_argument("--init-from", metavar="RUN", default=None,
                   help="with --target: fine-tune this float run (name or path) instead of training a float phase "
                        "first; sdt-frontend (required): the sdt run whose SDT it feeds (loaded and frozen)")
    p.add_argument("--distill-weight", type=float_in_range(0, 1e6), default=None,
                   help="sdt-frontend: weight of the distillation term, the MSE of its spikes against the encoded "
                        "DenseNet token spikes of the same posters (default 1; 0: task loss only)")
    p.add_argument("--frontend-widths", default=None, metavar="C1,C2,...",
                   help="sdt-frontend: channels of its conv stages, one per 2x2 pooling (default 4,8,16; the image "
                        "is the token grid times 2^stages, e.g. 64x40 for 8x5)")
    p.add_argument("--qat-epochs", type=int_in_range(1, 10_000), default=None,
                   help="with --target: epochs of the quantisation-aware phase (default 10)")
    p.add_argument("--qat-lr", type=float_in_range(0, 10, low_open=True), default=None,
                   help="with --target: its peak learning rate (default: a tenth of --lr)")
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
    p.add_argument("--image-size", type=int_in_range(16, 1024), default=None,
                   help="vit, sdt-pixels: square image side (default: vit 96 when trained from scratch, sdt-pixels 32)")
    p.add_argument("--T", "-T", dest="T", type=int_in_range(1, 256), default=None,
                   help="sdt-pixels: time steps of direct encoding (default 4; the other spiking models take T from "
                        "the encoded set)")
    p.add_argument("--vit-weights", choices=["auto", "none", "imagenet"], default="auto",
                   help="vit: ImageNet ViT-B/16 from the local torch cache (auto: if cached) or from scratch")
    add_json_flag(p)
    add_common(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Trains and prints the test metrics next to the constant baselines."""
    import torch

    from neuroposter.cli._common import emit, workspace_of, write_resolved_config
    from neuroposter.errors import UsageError
    from neuroposter.train import (
        IMAGE_SIZE_DEFAULTS, MODEL_TRAIN_DEFAULTS, TrainConfig, dist_info_from_env, load_task_data, resolve_device, train_run,
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
        qat_arith = _check_qat_args(args)
        name = args.name or (f"{args.model}-{args.target}" if args.target else args.model)
        run_dir = ws.run(name)
        # refuse a bad destination, and lock the run (with its --resume state), before loading or training
        claim.enter_context(claim_run(run_dir, force=args.force, dist=info, protect=input_locations(
            args.model, ws, encoded=args.encoded, features=args.features, dataset=args.dataset)))
        model_kwargs: dict[str, object] = {}
        inherited = _init_run_kwargs(ws, args)   # a fine-tune keeps its float run's image side and T unless given
        image_size = (args.image_size or inherited.get("image_size")
                      or IMAGE_SIZE_DEFAULTS.get(args.model, IMAGE_SIZE_DEFAULTS["vit"]))
        if args.T is None and "T" in inherited and args.model == "sdt-pixels":
            model_kwargs["T"] = inherited["T"]
        if args.T is not None:
            if args.model != "sdt-pixels":
                raise UsageError(f"--T sets the time steps of sdt-pixels; {args.model} takes T from its inputs "
                                 "(`neuroposter encode --T` for the spike models)")
            model_kwargs["T"] = args.T
        if args.model == "vit":
            from neuroposter.models.vit import imagenet_vit_checkpoint

            weights = args.vit_weights
            if weights == "auto":
                weights = "imagenet" if imagenet_vit_checkpoint() is not None else "none"
            model_kwargs["weights"] = weights
            if weights == "imagenet":
                image_size = 224
        head_state = None
        if args.model == "sdt-frontend":
            widths = _frontend_widths(args)
            if args.image_size is not None:
                raise UsageError("sdt-frontend's image size follows from the token grid and --frontend-widths "
                                 "(grid x 2^stages); drop --image-size")
        elif args.distill_weight is not None or args.frontend_widths is not None:
            raise UsageError("--distill-weight and --frontend-widths apply to --model sdt-frontend only")
        task, store = load_task_data(args.model, ws, encoded=args.encoded, features=args.features,
                                     dataset=args.dataset, finetune=args.finetune, image_size=image_size,
                                     **({"stages": len(widths)} if args.model == "sdt-frontend" else {}))
        if args.model == "sdt-frontend":
            head_state, head_kwargs = _frontend_head(args, ws, task)
            model_kwargs.update(head_kwargs, widths=list(widths),
                                distill_weight=1.0 if args.distill_weight is None else float(args.distill_weight))
        defaults = dict(MODEL_TRAIN_DEFAULTS.get(args.model, {}))
        for key in ("epochs", "batch_size", "lr", "weight_decay", "warmup", "patience"):
            value = getattr(args, key)
            if value is not None:
                defaults[key] = value
        cfg = TrainConfig(seed=args.seed, **defaults)
        qat = None if qat_arith is None else _qat_plan(args, ws, qat_arith, cfg, task)
        result = train_run(args.model, task, run_dir, cfg, model_kwargs=model_kwargs, device=device,
                           dist=info, resume=args.resume, store=store, force=args.force,
                           write_config=lambda d: write_resolved_config(d, args), qat=qat, head_state=head_state)
        if result is None:
            return 0
        m = result.metrics
        lines = [f"trained {args.model} -> {result.run_dir} in {result.train_seconds:.1f} s "
                 f"({m['epochs_run']} epochs, best {m['best_epoch']}, device {m['device']}, "
                 f"{m['world_size']} process{'es' if m['world_size'] > 1 else ''})"]
        keys = ("micro_f1", "macro_f1", "samples_f1", "map", "p_at_1", "hamming", "micro_f1_tuned")
        lines.append(f"  {'test':<18s}" + "".join(f"{k:>16s}" for k in keys))
        rows = [(args.model, m["test"])] + [(f"  {b}", v) for b, v in m["baselines"].items()]
        for label, vals in rows:
            lines.append(f"  {label:<18s}" + "".join(f"{vals[k]:16.3f}" for k in keys))
        if m.get("qat"):
            src = (m["qat"]["init_from"] or {}).get("run")
            lines.append(f"  trained with {m['qat']['description']}" + (f", fine-tuned from {src}" if src else ""))
        if m.get("frontend"):
            fe = m["frontend"]
            lines.append(f"  spiking front end {'x'.join(map(str, fe['image_size']))} -> frozen SDT of "
                         f"{fe['head_run']} (distillation weight {fe['distill_weight']:g})")
        if m.get("firing_rates"):
            rates = m["firing_rates"]
            lines.append(f"  firing rates: mean {sum(rates.values()) / len(rates):.3f} over {len(rates)} LIF layers")
        emit(args, lines, {"run": str(result.run_dir), "model": args.model, **train_payload(m, result.train_seconds)})
        return 0
    finally:
        claim.close()
        shutdown_distributed()


def train_payload(m: dict, train_seconds: float) -> dict:
    """The ``--json`` results of a training: test metrics beside the constant baselines, thresholds, firing rates."""
    keys = ("epochs_run", "best_epoch", "device", "world_size", "test", "baselines", "thresholds", "firing_rates",
            "qat", "frontend")
    return {"train_seconds": round(float(train_seconds), 3), **{k: m.get(k) for k in keys if k in m}}


def _check_qat_args(args: argparse.Namespace) -> object:
    """The target arithmetic of ``--target`` (None without it); refuses QAT flags that cannot apply."""
    from neuroposter.errors import UsageError

    if args.target is None:
        given = [f for f, v in (("--init-from", None if args.model == "sdt-frontend" else args.init_from),
                                ("--qat-epochs", args.qat_epochs),
                                ("--qat-lr", args.qat_lr)) if v is not None]
        if given:
            raise UsageError(f"{', '.join(given)} only apply with --target (quantisation-aware training)")
        return None
    if MODELS.get(args.model).kind != "snn":
        from neuroposter.models import names

        raise UsageError(f"--target trains a spiking model with the target's arithmetic; {args.model} is not one "
                         f"(spiking models: {', '.join(names(kind='snn'))})")
    from neuroposter.targets import training_arithmetic, training_quantiser

    arith = training_arithmetic(args.target)
    if MODELS.get(args.model).inputs == "images" and training_quantiser(arith) is None:
        raise UsageError(f"--target {args.target}: no quantisation-aware training of {args.model} for it (its analog "
                         "image input is only deployed as graded spikes, by --target loihi); use --target loihi or "
                         "train without --target")
    return arith


def _init_run_kwargs(ws: object, args: argparse.Namespace) -> dict[str, object]:
    """The model constructor kwargs recorded by ``--init-from``'s run (``model.json``), or {} without one (a
    missing or unreadable run is reported later, where it is loaded)."""
    from neuroposter._io import read_json
    from neuroposter.errors import DataError

    if getattr(args, "init_from", None) is None:
        return {}
    try:
        doc = read_json(ws.run(args.init_from) / "model.json")
    except (OSError, ValueError, DataError):
        return {}
    kwargs = doc.get("kwargs") if isinstance(doc, dict) else None
    return dict(kwargs) if isinstance(kwargs, dict) else {}


def _qat_plan(args: argparse.Namespace, ws: object, arith: object, cfg: object, task: object) -> object:
    """The :class:`~neuroposter.train.QATPlan` of the command line (loads ``--init-from``'s weights)."""
    from dataclasses import replace

    from neuroposter.errors import UsageError
    from neuroposter.train import QAT_DEFAULTS, QATPlan, default_model_kwargs, load_run

    qcfg = replace(cfg, epochs=args.qat_epochs or QAT_DEFAULTS["epochs"], warmup=QAT_DEFAULTS["warmup"],
                   lr=args.qat_lr or cfg.lr * QAT_DEFAULTS["lr_factor"])
    if args.init_from is None:
        return QATPlan(arith, qcfg)
    src_dir = ws.run(args.init_from)
    src = load_run(src_dir)
    if src.model_name != args.model:
        raise UsageError(f"--init-from {args.init_from}: that run trained {src.model_name}, not {args.model}")
    if src.model_json.get("deploy"):
        raise UsageError(f"--init-from {args.init_from}: that run is already quantisation-aware; start from a "
                         "float run")
    want = default_model_kwargs(args.model, task)
    if dict(src.model_json.get("kwargs", {})) != want:
        raise UsageError(f"--init-from {args.init_from}: its model settings differ from this training's "
                         "(another encoded set or configuration); retrain it or pick a matching run")
    ins = {k: v.get("key") for k, v in (src.manifest.get("inputs") or {}).items()}
    mine = {k: v.get("key") for k, v in task.inputs_manifest.items()}
    if ins != mine:
        raise UsageError(f"--init-from {args.init_from}: it was trained on other inputs; fine-tune it on the "
                         "encoded set it was trained on, or retrain it")
    return QATPlan(arith, qcfg, init_state=src.model.state_dict(),
                   init_from={"run": str(src_dir), "key": src.manifest.get("key")})


def _frontend_widths(args: argparse.Namespace) -> tuple[int, ...]:
    """``--frontend-widths`` as channels per stage (the model's default without it)."""
    from neuroposter.errors import UsageError
    from neuroposter.models.sdt_frontend import DEFAULT_WIDTHS

    if args.frontend_widths is None:
        return DEFAULT_WIDTHS
    try:
        widths = tuple(int(v) for v in str(args.frontend_widths).split(","))
    except ValueError:
        widths = ()
    if not widths or any(w < 1 or w > 4096 for w in widths):
        raise UsageError(f"--frontend-widths {args.frontend_widths!r}: give channels per stage, e.g. 8,16,32")
    return widths


def _frontend_head(args: argparse.Namespace, ws: object, task: object) -> tuple[object, dict]:
    """The ``--init-from`` sdt run of an sdt-frontend training: its checkpoint and the head's model kwargs
    (its SDT configuration, and which run it is: ``head_run``, ``head_key``)."""
    from neuroposter.errors import UsageError
    from neuroposter.train import load_run

    if args.init_from is None:
        raise UsageError("sdt-frontend feeds a trained SDT: name its run with --init-from (e.g. --init-from sdt; "
                         "train one with `neuroposter train --model sdt`)")
    if args.target is not None:
        raise UsageError("sdt-frontend has no quantisation-aware training; drop --target")
    src_dir = ws.run(args.init_from)
    src = load_run(src_dir)
    if src.model_name != "sdt":
        raise UsageError(f"--init-from {args.init_from}: that run trained {src.model_name}; sdt-frontend needs an "
                         "sdt run (its spike-token SDT)")
    if src.model_json.get("deploy"):
        raise UsageError(f"--init-from {args.init_from}: that run is quantisation-aware; give a float sdt run")
    src_enc = ((src.manifest.get("inputs") or {}).get("encoded") or {}).get("key")
    mine = (task.inputs_manifest.get("encoded") or {}).get("key")
    if src_enc != mine:
        raise UsageError(f"--init-from {args.init_from}: that run trained on another encoded set than "
                         f"--encoded {args.encoded}; distil to the spikes its SDT reads (pass its --encoded)")
    kwargs = dict(src.model_json.get("kwargs", {}))
    want = {"d_in": task.meta["d_in"], "n_tokens": task.meta["n_tokens"], "n_classes": task.n_classes}
    if any(int(kwargs.get(k, -1)) != v for k, v in want.items()):
        raise UsageError(f"--init-from {args.init_from}: its SDT ({kwargs}) does not read these inputs ({want})")
    head = {k: kwargs[k] for k in ("d_model", "depth", "heads", "mlp_hidden", "tau", "v_th", "kv_v_th") if k in kwargs}
    head.update(head_run=str(args.init_from), head_key=str(src.manifest.get("key") or ""))
    return src.model.state_dict(), head
