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

from neuroposter.cli._common import SEED_MAX, add_common, int_in_range

__all__ = ["add_parser", "run", "SIZES", "stages"]

# Size presets: how much data and how much training each stage gets.
SIZES: dict[str, dict[str, int]] = {
    "tiny": {"posters": 48, "epochs": 3, "samples": 8, "seeds": 1},
    "default": {"posters": 800, "epochs": 12, "samples": 16, "seeds": 3},
}

# The fair pair (the SDT and its ANN twin) is trained with extra seeds so that the report can
# weigh their accuracy difference against seed-to-seed noise; runs are named <model>-seed<k>.
_SEEDED_MODELS = ("sdt", "ann-transformer")

# The five models the demo trains, with the encoded set each one reads.
_MODELS = (("sdt", "default"), ("snn-mlp", "pooled"), ("ann-transformer", "default"), ("cnn", None), ("vit", None))


@dataclass(frozen=True)
class Stage:
    """One demo stage: a name shown to the user and the CLI arguments it runs.

    ``verdict`` stages (simulated chips) may end in a refusal: the chip cannot host the network and the
    bundle's summary.json names the violated limit. That is a result, not a failure of the demo.
    """

    name: str
    command: str
    argv: Callable[[argparse.Namespace, dict[str, int]], list[str]]
    verdict: bool = False


def _common(args: argparse.Namespace) -> list[str]:
    # the demo rebuilds the built-in default: each stage replaces its own earlier artifact (only an
    # artifact of the same kind; a stage never replaces anything else, --force or not)
    return ["--workspace", str(args.workspace), "--force"]


def _export(target: str, run: str, *extra: str) -> Callable[[argparse.Namespace, dict[str, int]], list[str]]:
    def argv(a: argparse.Namespace, s: dict[str, int]) -> list[str]:
        # nir bundles store the op counts the report reads, made on the report's (larger) sample count
        counts = ["--opt", f"count_samples={2 * s['samples']}"] if target == "nir" else []
        return ["export", "--target", target, "--run", run, "--export-root", str(a.export_root),
                "--samples", str(s["samples"]), *counts, *extra, *_common(a)]

    return argv


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
            return ["train", "--model", model, *enc, "--epochs", str(s["epochs"]), "--seed", str(a.seed),
                    *_common(a)]

        out.append(Stage(f"train {model}", "train", train_argv))
    for k in range(1, int(preset.get("seeds", 1))):
        for model in _SEEDED_MODELS:
            def seed_argv(a: argparse.Namespace, s: dict[str, int], model: str = model, k: int = k) -> list[str]:
                return ["train", "--model", model, "--name", f"{model}-seed{k}", "--epochs", str(s["epochs"]),
                        "--seed", str(a.seed + k), *_common(a)]

            out.append(Stage(f"train {model} seed +{k}", "train", seed_argv))
    out += [
        Stage("export nir sdt", "export", _export("nir", "sdt")),
        Stage("export nir snn-mlp", "export", _export("nir", "snn-mlp")),
        *(Stage(f"export onnx {m}", "export", _export("onnx", m)) for m in ("cnn", "vit", "ann-transformer")),
        # the extra seeds' bundles hold their op counts for the report
        *(Stage(f"export {t} {m}-seed{k}", "export", _export(t, f"{m}-seed{k}"))
          for k in range(1, int(preset.get("seeds", 1))) for m, t in zip(_SEEDED_MODELS, ("nir", "onnx"))),
        Stage("export loihi sdt", "export", _export("loihi", "sdt")),
        Stage("export loihi snn-mlp", "export", _export("loihi", "snn-mlp")),
        *(Stage(f"export {chip} sdt", "export", _export(chip, "sdt"), verdict=True) for chip in chip_targets()),
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
                   help="default: the full demo; tiny: the same stages on a few dozen posters")
    p.add_argument("--seed", type=int_in_range(0, SEED_MAX - 16, "the demo also trains seeds seed+1, seed+2"),
                   default=0, help="seed for data, splits and training")
    p.add_argument("--export-root", metavar="DIR", default="export",
                   help="folder for the export bundles (default: ./export)")
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


def _print_comparison(workspace: Path) -> None:
    """One table: every trained model's test metrics beside the constant-predictor baselines."""
    from neuroposter._io import read_json

    rows: list[tuple[str, dict]] = []
    baselines: dict[str, dict] = {}
    seeded = sorted(p.name for p in (workspace / "runs").glob("*-seed*") if p.is_dir())
    for model in [m for m, _ in _MODELS] + seeded:
        path = workspace / "runs" / model / "metrics.json"
        if path.is_file():
            metrics = read_json(path)
            rows.append((model, metrics.get("test", metrics)))
            baselines = baselines or metrics.get("baselines", {})
    if not rows:
        return
    rows += [(f"constant: {name}", values) for name, values in baselines.items()]
    print("\n[demo] test metrics (hamming: lower is better; never read 1 - hamming as accuracy)")
    print(f"  {'model':<28s}" + "".join(f"{m:>15s}" for m in _METRICS))
    for name, values in rows:
        cells = "".join(f"{values[m]:>15.3f}" if isinstance(values.get(m), (int, float)) else f"{'-':>15s}"
                        for m in _METRICS)
        print(f"  {name:<28s}{cells}")


def _refused(argv: list[str]) -> bool:
    """True when an export bundle records a deliberate refusal (a named violated limit)."""
    from neuroposter._io import read_json

    target, run = argv[argv.index("--target") + 1], argv[argv.index("--run") + 1]
    root = argv[argv.index("--export-root") + 1]
    summary = Path(root) / target / run / "summary.json"
    if not summary.is_file():
        return False
    data = read_json(summary)
    return data.get("ok") is False and bool(data.get("reason"))


def run(args: argparse.Namespace) -> int:
    """Runs every stage; stops at the first failing one with its exit code."""
    from neuroposter.cli import main

    preset = SIZES[args.size]
    timings: list[tuple[str, float]] = []
    extra = ["--debug"] if getattr(args, "debug", False) else []
    t_all = time.perf_counter()
    for stage in stages(preset):
        if not _command_available(stage.command):
            print(f"[demo] skipping {stage.name}: command `{stage.command}` is not available", flush=True)
            continue
        argv = stage.argv(args, preset)
        print(f"[demo] {stage.name}: neuroposter {' '.join(argv)}", flush=True)
        t0 = time.perf_counter()
        code = main([*extra, *argv]) if extra else main(argv)
        dt = time.perf_counter() - t0
        timings.append((stage.name, dt))
        if code != 0 and stage.verdict and _refused(argv):
            print(f"[demo] {stage.name}: the chip refuses this network (verdict in its summary.json)", flush=True)
            timings[-1] = (f"{stage.name} (refused)", dt)
            continue
        if code != 0:
            print(f"[demo] stage {stage.name!r} failed (exit {code}) after {dt:.1f} s", file=sys.stderr)
            return code
    total = time.perf_counter() - t_all
    _print_comparison(Path(args.workspace))
    print("\n[demo] stage times")
    for name, dt in timings:
        print(f"  {name:<34s} {dt:7.1f} s")
    print(f"  {'total':<34s} {total:7.1f} s")
    report = Path(args.workspace) / "reports" / "default" / "report.html"
    if report.is_file():
        print(f"\n[demo] energy profiling report: {report.resolve()}")
    return 0


