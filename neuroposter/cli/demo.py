"""``neuroposter demo``: the whole pipeline on the built-in synthetic poster set.

The demo runs the same commands a user would run, in order, on one workspace, and prints each
stage's time. ``--size tiny`` runs the same stages on a few dozen posters (a smoke run).
"""

from __future__ import annotations

import argparse
import importlib
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from neuroposter.cli._common import SEED_MAX, add_common, add_json_flag, emit, int_in_range

__all__ = ["add_parser", "run", "SIZES", "stages"]

# Size presets: how much data and how much training each stage gets. Every training runs to early stopping:
# ``epochs`` / ``qat_epochs`` are budgets (maxima) large enough that validation mAP stops improving first, and
# ``patience`` (``qat_patience`` for the fine-tunes with a chip's arithmetic, which start from a trained run and
# settle within a few epochs) epochs without a better validation mAP end the run (its metrics.json records
# best_epoch, epochs_run and stopped_early). ``seeds``: the SDT and its ANN twin are trained with that many seeds,
# all with the same budget, for the report's seed statistics (with one seed the report's error bars are bootstrap
# intervals over the test posters). ``lava_samples``: samples Lava runs against the integer reference in the
# Loihi exports (the float-trained comparison bundles run 4; the deployed network is compared with the trained
# model on the whole test split either way).
# ``pixels``: the image side of the pixel-input SDT (``sdt-pixels``: a spiking convolutional stem on the posters, no
# DenseNet front end), which every preset trains, fine-tunes with Loihi 2's arithmetic (graded 8-bit input) and
# exports: 16x16 in ``default`` and ``tiny`` (the default must fit the 6-minute budget on 2 CPU cores), 32x32 in
# ``full``.
# ``default`` is sized to finish within 6 minutes on 2 CPU cores; ``full`` adds seeds, patience and a larger pixel
# SDT.
# ``frontend``: also train the spiking front end for the seed's SDT (``sdt-frontend --init-from sdt``: a spiking
# convolutional network distilled to make the SDT's DenseNet token spikes from the poster) and deploy it (NIR; Loihi 2
# with the agreement bound off: it has no quantisation-aware training). Its training (float64, 1664-channel spiking
# token projection) took about 9 s per epoch on 800 posters on 2 cores (17 epochs), more than the default budget
# leaves, so ``default`` leaves it to ``full`` (``tiny`` runs it to keep the stage tested).
# ``float_loihi``: also export the float-trained spiking models to Loihi 2 (bound off), the "without
# quantisation-aware training" comparison (about 14 s). ``conv_fit``: also fit the pixel SDT's convolutional variant to
# every convolution-native chip (Speck; about 25 s at 16x16). Both are left to ``full`` by ``default``, whose other
# stages take the 6 minutes.
SIZES: dict[str, dict[str, int]] = {
    "tiny": {"posters": 48, "epochs": 20, "patience": 2, "qat_patience": 2, "samples": 8, "seeds": 1,
             "qat_epochs": 8, "lava_samples": 8, "pixels": 16, "frontend": 1, "float_loihi": 1, "conv_fit": 1},
    "default": {"posters": 800, "epochs": 60, "patience": 4, "qat_patience": 3, "samples": 16, "seeds": 1,
                "qat_epochs": 30, "lava_samples": 8, "pixels": 16, "frontend": 0, "float_loihi": 0, "conv_fit": 0},
    "full": {"posters": 800, "epochs": 60, "patience": 5, "qat_patience": 5, "samples": 16, "seeds": 3,
             "qat_epochs": 30, "lava_samples": 16, "pixels": 32, "frontend": 1, "float_loihi": 1, "conv_fit": 1},
}

# The fair pair (the SDT and its ANN twin) is trained with extra seeds so that the report can
# weigh their accuracy difference against seed-to-seed noise; runs are named <model>-seed<k>.
_SEEDED_MODELS = ("sdt", "ann-transformer")

# The five models the demo trains, with the encoded set each one reads.
_MODELS = (("sdt", "default"), ("snn-mlp", "pooled"), ("ann-transformer", "default"), ("cnn", None), ("vit", None))

# The spiking models are also fine-tuned with Loihi 2's arithmetic in the loop (``train --target loihi
# --init-from <model>``, run ``<model>-loihi``): the Loihi exports of both versions show what quantisation-aware
# training buys (deployed accuracy and agreement with the trained model, with and without it).
_QAT_TARGET = "loihi"

# stage outcomes (the ``when`` of a later stage reads them)
_OK, _REFUSED, _BELOW, _SKIPPED = "ok", "refused", "below trained agreement", "skipped"
_QAT_MODELS = (("sdt", "default"), ("snn-mlp", "pooled"))
# the pixel-input SDT (reads the posters itself; ``pixels`` presets)
_PIXEL_MODEL = "sdt-pixels"
# the spiking front end for the seed's SDT (reads the posters; ``frontend`` presets)
_FRONTEND_MODEL = "sdt-frontend"


@dataclass(frozen=True)
class Stage:
    """One demo stage: a name shown to the user and the CLI arguments it runs.

    ``verdict`` stages (Loihi and the simulated chips) may end in a verdict: a refusal (the chip cannot host the
    network; the bundle's summary.json names the violated limit) or a deployed network that keeps the trained
    model's decisions too rarely (``--min-trained-agreement``; the bundle is kept as ``<name>.failed``, its
    summary.json has the agreement). Both are results the demo reports, not failures of the demo.
    ``when`` makes a stage conditional on the outcomes of earlier stages (``{stage name: "ok" | "refused" |
    "below trained agreement" | "skipped"}``): e.g. a chip-fitted variant is trained only where the chip refuses
    the full model.
    """

    name: str
    command: str
    argv: Callable[[argparse.Namespace, dict[str, int]], list[str]]
    verdict: bool = False
    when: Callable[[dict[str, str]], bool] | None = None   # runs only when true of the earlier stages' outcomes


def _common(args: argparse.Namespace) -> list[str]:
    # the demo rebuilds the built-in default: each stage replaces its own earlier artifact (only an
    # artifact of the same kind; a stage never replaces anything else, --force or not)
    return ["--workspace", str(args.workspace), "--force"]


# The NIR bundles of fine-tuned runs are made for their op counts (the report's chip-independent views); the NIR
# consumers (Norse, snnTorch, nirtorch) already ran the same architecture in the float run's bundle, so these run
# two samples each instead of eight.
_FEW_CONSUMERS = ("--opt", "consumer_samples=2")


def _export(target: str, run: str, *extra: str, at_most: int | None = None
            ) -> Callable[[argparse.Namespace, dict[str, int]], list[str]]:
    def argv(a: argparse.Namespace, s: dict[str, int]) -> list[str]:
        # nir, loihi and chip bundles store the op counts the report reads, made on the report's sample count
        counts = ["--opt", f"count_samples={2 * s['samples']}"] if target != "onnx" else []
        # Loihi: Lava runs lava_samples (0: the target's default, 64) against the integer reference (or at most
        # ``at_most``); the deployed network is compared with the trained model on the whole test
        # split by every target
        n = s["lava_samples"] if target == "loihi" else s["samples"]
        n = min(n, at_most) if at_most else n
        samples = ["--samples", str(n)] if n else []
        return ["export", "--target", target, "--run", run, "--export-root", str(a.export_root),
                *samples, *counts, *extra, *_common(a)]

    return argv


def _conv_native(chip: str) -> bool:
    """Whether chip target ``chip``'s profile hosts convolutions natively (``nir_nodes`` lists ``Conv2d``)."""
    from neuroposter.profiling.profiles import load_profile
    from neuroposter.report.chips import chip_target_profiles

    return "Conv2d" in {str(x) for x in (getattr(load_profile(chip_target_profiles()[chip]), "nir_nodes", None) or ())}


def _chip_stages(chip: str, model: str = "sdt", conv_fit: bool = True) -> list[Stage]:
    """Every chip runs a model: the full ``model`` where the chip's system hosts it (partitioned over its cores and
    chips); fine-tuned with the chip's arithmetic in the loop where the deployed network keeps the trained
    model's decisions too rarely; a variant fitted to the chip's limits (``neuroposter fit``: on the pooled
    features for the SDT, a convolutional variant on the images for the pixel SDT) where it is refused."""
    full, tuned = f"export {chip} {model}", f"{model}-{chip}"
    pixels = model == _PIXEL_MODEL

    def qat_argv(a: argparse.Namespace, s: dict[str, int]) -> list[str]:
        return ["train", "--model", model, "--target", chip, "--init-from", model, "--qat-epochs",
                str(s["qat_epochs"]), "--patience", str(s["qat_patience"]), "--seed", str(a.seed), *_common(a)]

    def fit_argv(a: argparse.Namespace, s: dict[str, int]) -> list[str]:
        inputs = ["--input", "images", "--image-size", str(s["pixels"])] if pixels else ["--encoded", "pooled"]
        return ["fit", "--target", chip, *inputs, "--epochs", str(s["epochs"]), "--qat-epochs",
                str(s["qat_epochs"]), "--patience", str(s["patience"]), "--seed", str(a.seed), "--export-root",
                str(a.export_root), "--samples", str(s["samples"]), *_common(a)]

    # the pixel SDT's conv variant is fitted where the chip is convolution-native (its profile hosts Conv2d):
    # elsewhere it would be trained only to be refused (TrueNorth's 256-axon fan-in, Xylo's 16 inputs); those chips
    # run their feature fit
    fit = not pixels or (conv_fit and _conv_native(chip))
    # the pixel SDT has quantisation-aware training for Loihi 2 only (its analog input is deployed as graded spikes
    # there): on a simulated chip its deployed-vs-trained verdict stands as it is
    tune = not pixels
    out = [
        Stage(full, "export", _export(chip, model), verdict=True),
        *([Stage(f"train {tuned} ({chip} arithmetic fine-tune)", "train", qat_argv,
                 when=lambda o: o.get(full) == _BELOW),
           # its NIR bundle holds the fine-tuned run's op counts for the report's chip-independent views
           Stage(f"export nir {tuned}", "export", _export("nir", tuned, *_FEW_CONSUMERS),
                 when=lambda o: o.get(full) == _BELOW),
           Stage(f"export {chip} {tuned}", "export", _export(chip, tuned), verdict=True,
                 when=lambda o: o.get(full) == _BELOW)] if tune else []),
    ]
    if fit:
        name = (f"fit {chip} --input images (the pixel SDT's conv variant fitted to its limits)" if pixels
                else f"fit {chip} (variant fitted to {chip}'s limits)")
        out.append(Stage(name, "fit", fit_argv, verdict=True, when=lambda o: o.get(full) == _REFUSED))
    return out


def stages(preset: dict[str, int] | None = None) -> list[Stage]:
    """The demo's stages in pipeline order for a size ``preset`` (default: the ``default`` size)."""
    preset = preset or SIZES["default"]
    from neuroposter.targets import chip_targets

    out = [
        Stage("data synth", "data", lambda a, s: ["data", "synth", "--n", str(s["posters"]),
                                                    "--seed", str(a.seed), *_common(a)]),
        Stage("data import", "data", lambda a, s: ["data", "import", "--seed", str(a.seed), *_common(a)]),
        Stage("features", "features", lambda a, s: ["features", *_common(a)]),
        Stage("encode tokens", "encode", lambda a, s: ["encode", "--seed", str(a.seed), *_common(a)]),
        Stage("encode pooled", "encode", lambda a, s: ["encode", "--form", "pooled", "--name", "pooled",
                                                        "--seed", str(a.seed), *_common(a)]),
    ]
    for model, encoded in _MODELS:
        def train_argv(a: argparse.Namespace, s: dict[str, int], model: str = model,
                       encoded: str | None = encoded) -> list[str]:
            enc = ["--encoded", encoded] if encoded else []
            return ["train", "--model", model, *enc, "--epochs", str(s["epochs"]), "--patience", str(s["patience"]),
                    "--seed", str(a.seed), *_common(a)]

        out.append(Stage(f"train {model}", "train", train_argv))
    if preset.get("pixels"):
        out.append(Stage(f"train {_PIXEL_MODEL}", "train", lambda a, s: [
            "train", "--model", _PIXEL_MODEL, "--image-size", str(s["pixels"]), "--epochs", str(s["epochs"]),
            "--patience", str(s["patience"]), "--seed", str(a.seed), *_common(a)]))
        out.append(Stage(f"train {_PIXEL_MODEL}-{_QAT_TARGET} (quantisation-aware fine-tune)", "train", lambda a, s: [
            "train", "--model", _PIXEL_MODEL, "--target", _QAT_TARGET, "--init-from", _PIXEL_MODEL, "--qat-epochs",
            str(s["qat_epochs"]), "--patience", str(s["qat_patience"]), "--seed", str(a.seed), *_common(a)]))
    if preset.get("frontend"):
        out.append(Stage(f"train {_FRONTEND_MODEL}", "train", lambda a, s: [
            "train", "--model", _FRONTEND_MODEL, "--init-from", "sdt", "--epochs", str(s["epochs"]),
            "--patience", str(s["patience"]), "--seed", str(a.seed), *_common(a)]))
    for model, encoded in _QAT_MODELS:
        def qat_argv(a: argparse.Namespace, s: dict[str, int], model: str = model, encoded: str = encoded) -> list[str]:
            return ["train", "--model", model, "--encoded", encoded, "--target", _QAT_TARGET, "--init-from", model,
                    "--qat-epochs", str(s["qat_epochs"]), "--patience", str(s["qat_patience"]), "--seed", str(a.seed),
                    *_common(a)]

        out.append(Stage(f"train {model}-{_QAT_TARGET} (quantisation-aware fine-tune)", "train", qat_argv))
    for k in range(1, int(preset.get("seeds", 1))):
        for model in _SEEDED_MODELS:
            def seed_argv(a: argparse.Namespace, s: dict[str, int], model: str = model, k: int = k) -> list[str]:
                return ["train", "--model", model, "--name", f"{model}-seed{k}", "--epochs", str(s["epochs"]),
                        "--patience", str(s["patience"]), "--seed", str(a.seed + k), *_common(a)]

            out.append(Stage(f"train {model} seed +{k}", "train", seed_argv))
    out += [
        Stage("export nir sdt", "export", _export("nir", "sdt")),
        Stage("export nir snn-mlp", "export", _export("nir", "snn-mlp")),
        # the pixel SDT and its Loihi fine-tune (whose graph.nir carries the graded 8-bit input as its input contract)
        *([Stage(f"export nir {_PIXEL_MODEL}", "export", _export("nir", _PIXEL_MODEL)),
           Stage(f"export nir {_PIXEL_MODEL}-{_QAT_TARGET}", "export",
                 _export("nir", f"{_PIXEL_MODEL}-{_QAT_TARGET}", *_FEW_CONSUMERS)),
           Stage(f"export loihi {_PIXEL_MODEL}-{_QAT_TARGET}", "export",
                 _export("loihi", f"{_PIXEL_MODEL}-{_QAT_TARGET}"), verdict=True)] if preset.get("pixels") else []),
        # the spiking front end + the seed's SDT: its NIR graph (op counts, spike-for-spike check) and Loihi 2 (bound
        # off: float-trained, it is the "as deployed" number, not a gate)
        *([Stage(f"export nir {_FRONTEND_MODEL}", "export", _export("nir", _FRONTEND_MODEL, *_FEW_CONSUMERS)),
           Stage(f"export loihi {_FRONTEND_MODEL} (float-trained)", "export",
                 _export("loihi", _FRONTEND_MODEL, "--min-trained-agreement", "0", at_most=4), verdict=True)]
          if preset.get("frontend") else []),
        *(Stage(f"export onnx {m}", "export", _export("onnx", m)) for m in ("cnn", "vit", "ann-transformer")),
        # the extra seeds' bundles hold their op counts for the report
        *(Stage(f"export {t} {m}-seed{k}", "export", _export(t, f"{m}-seed{k}"))
          for k in range(1, int(preset.get("seeds", 1))) for m, t in zip(_SEEDED_MODELS, ("nir", "onnx"))),
        # the quantisation-aware runs' graphs (their op counts: the deployed network's activity) and Loihi bundles
        *(Stage(f"export nir {m}-{_QAT_TARGET}", "export", _export("nir", f"{m}-{_QAT_TARGET}", *_FEW_CONSUMERS))
          for m, _ in _QAT_MODELS),
        *(Stage(f"export loihi {m}-{_QAT_TARGET}", "export", _export("loihi", f"{m}-{_QAT_TARGET}"), verdict=True)
          for m, _ in _QAT_MODELS),
        # the float-trained runs on Loihi, kept as the "without quantisation-aware training" comparison: their
        # deployed-vs-trained bound is switched off here (it would fail them) so that the report can show them
        *(Stage(f"export loihi {m} (float-trained, for comparison)", "export",
                _export("loihi", m, "--min-trained-agreement", "0", at_most=4), verdict=True)
          for m, _ in _QAT_MODELS if preset.get("float_loihi")),
        *(st for chip in chip_targets() for st in _chip_stages(chip)),
        *(st for chip in chip_targets() for st in _chip_stages(chip, _PIXEL_MODEL, bool(preset.get("conv_fit")))
          if preset.get("pixels")),
        Stage("report", "report", lambda a, s: ["report", "--exports", str(a.export_root),
                                                "--samples", str(2 * s["samples"]), *_common(a)]),
    ]
    return out


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    """Registers ``neuroposter demo``."""
    p = subparsers.add_parser(
        "demo", help="run the whole pipeline on the built-in synthetic poster set",
        description="Runs synth -> import -> features -> encode -> train -> export -> report on the "
        "built-in synthetic posters, printing each stage's time. Each stage rebuilds its own artifact of "
        "the workspace (as with --force); nothing of another kind is ever replaced.")
    p.add_argument("--size", choices=sorted(SIZES), default="default",
                   help="default: the whole pipeline on 800 posters (about 6 minutes on 2 cores); full: the same with 3 seeds "
                        "of the SDT and its twin for seed statistics, more patience and the pixel-input SDT; tiny: a "
                        "few dozen posters")
    p.add_argument("--seed", type=int_in_range(0, SEED_MAX - 16, "the demo also trains seeds seed+1, seed+2"),
                   default=0, help="seed for data, splits and training")
    p.add_argument("--export-root", metavar="DIR", default="export",
                   help="folder for the export bundles (default: ./export)")
    add_json_flag(p)
    add_common(p)
    p.set_defaults(func=run)


def _command_available(command: str) -> bool:
    from neuroposter.cli import COMMANDS

    try:
        importlib.import_module(f"neuroposter.cli.{COMMANDS[command]}")
    except ModuleNotFoundError:
        return False
    return True


_METRICS = ("map", "micro_f1", "micro_f1_tuned", "macro_f1", "samples_f1", "p_at_1", "hamming")


def _comparison(workspace: Path) -> tuple[list[str], dict[str, dict]]:
    """One table: every trained model's test metrics beside the constant-predictor baselines, as text lines and as
    ``{run or "constant: <name>": {metric: value}}``."""
    from neuroposter._io import read_json

    rows: list[tuple[str, dict]] = []
    baselines: dict[str, dict] = {}
    seeded = sorted(p.name for p in (workspace / "runs").glob("*-seed*") if p.is_dir())
    from neuroposter.targets import chip_targets

    qat = [f"{m}-{_QAT_TARGET}" for m, _ in (*_QAT_MODELS, (_PIXEL_MODEL, None))]
    chips = [f"{kind}-{chip}" if kind == "sdt" else f"fit-{chip}" for chip in chip_targets() for kind in ("sdt", "fit")]
    for model in [m for m, _ in _MODELS] + [_PIXEL_MODEL] + qat + chips + seeded:
        path = workspace / "runs" / model / "metrics.json"
        if path.is_file():
            metrics = read_json(path)
            rows.append((model, metrics.get("test", metrics)))
            baselines = baselines or metrics.get("baselines", {})
    if not rows:
        return [], {}
    rows += [(f"constant: {name}", values) for name, values in baselines.items()]
    lines = ["", "[demo] test metrics (hamming: lower is better; never read 1 - hamming as accuracy)",
             f"  {'model':<28s}" + "".join(f"{m:>15s}" for m in _METRICS)]
    for name, values in rows:
        cells = "".join(f"{values[m]:>15.3f}" if isinstance(values.get(m), (int, float)) else f"{'-':>15s}"
                        for m in _METRICS)
        lines.append(f"  {name:<28s}{cells}")
    return lines, {name: {m: values.get(m) for m in _METRICS} for name, values in rows}


def _bundle(argv: list[str]) -> Path:
    from neuroposter.cli.fit import default_run_name

    target = argv[argv.index("--target") + 1]
    images = "--input" in argv and argv[argv.index("--input") + 1] == "images"
    run = (argv[argv.index("--run") + 1] if "--run" in argv
           else argv[argv.index("--name") + 1] if "--name" in argv else default_run_name(target, images))
    return Path(argv[argv.index("--export-root") + 1]) / target / run


def _refused(argv: list[str]) -> bool:
    """True when an export bundle records a deliberate refusal (a named violated limit)."""
    from neuroposter._io import read_json

    summary = _bundle(argv) / "summary.json"
    if not summary.is_file():
        return False
    data = read_json(summary)
    return data.get("ok") is False and bool(data.get("reason"))


def _below_trained_agreement(argv: list[str], since: float) -> str | None:
    """The reason when the export failed only its deployed-vs-trained bound (its ``<name>.failed`` bundle, written
    after ``since`` (epoch seconds), says so in ``gates``), else None."""
    from neuroposter._io import read_json
    from neuroposter.artifact import failed_path

    summary = failed_path(_bundle(argv)) / "summary.json"
    if not summary.is_file() or summary.stat().st_mtime < since:
        return None
    data = read_json(summary)
    failed = [g for g in data.get("gates") or [] if not g.get("ok")]
    if failed and all(g.get("check") == "deployed_vs_trained" and g.get("metric") == "set_agreement" for g in failed):
        return str(data.get("reason") or "deployed network below --min-trained-agreement")
    return None


def run(args: argparse.Namespace) -> int:
    """Runs every stage; stops at the first failing one with its exit code."""
    from neuroposter.cli import main

    preset = SIZES[args.size]
    timings: list[tuple[str, float]] = []
    extra = ["--debug"] if getattr(args, "debug", False) else []
    t_all = time.perf_counter()
    outcomes: dict[str, str] = {}
    for stage in stages(preset):
        if stage.when is not None and not stage.when(outcomes):
            outcomes[stage.name] = _SKIPPED
            continue
        if not _command_available(stage.command):
            print(f"[demo] skipping {stage.name}: command `{stage.command}` is not available", flush=True)
            outcomes[stage.name] = _SKIPPED
            continue
        argv = stage.argv(args, preset)
        print(f"[demo] {stage.name}: neuroposter {' '.join(argv)}", flush=True)
        t0, started = time.perf_counter(), time.time()
        code = main([*extra, *argv]) if extra else main(argv)
        dt = time.perf_counter() - t0
        timings.append((stage.name, dt))
        if code != 0 and stage.verdict and _refused(argv):
            print(f"[demo] {stage.name}: the chip refuses this network (verdict in its summary.json)", flush=True)
            timings[-1] = (f"{stage.name} (refused)", dt)
            outcomes[stage.name] = _REFUSED
            continue
        below = _below_trained_agreement(argv, started - 1.0) if code != 0 and stage.verdict else None
        if below is not None:
            print(f"[demo] {stage.name}: verdict -- {below} (bundle kept as {_bundle(argv).name}.failed)", flush=True)
            timings[-1] = (f"{stage.name} (below trained agreement)", dt)
            outcomes[stage.name] = _BELOW
            continue
        if code != 0:
            print(f"[demo] stage {stage.name!r} failed (exit {code}) after {dt:.1f} s", file=sys.stderr)
            return code
        outcomes[stage.name] = _OK
    total = time.perf_counter() - t_all
    lines, metrics = _comparison(Path(args.workspace))
    lines += ["", "[demo] stage times"]
    width = max([34, *(len(name) for name, _ in timings)])
    lines += [f"  {name:<{width}s} {dt:7.1f} s" for name, dt in timings]
    lines.append(f"  {'total':<{width}s} {total:7.1f} s")
    report = Path(args.workspace) / "reports" / "default" / "report.html"
    if report.is_file():
        lines += ["", f"[demo] energy profiling report: {report.resolve()}"]
    emit(args, lines, {"test_metrics": metrics, "stages": [{"stage": n, "seconds": dt} for n, dt in timings],
                       "outcomes": outcomes, "total_seconds": total,
                       "report": str(report.resolve()) if report.is_file() else None})
    return 0


