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
from typing import Callable, Sequence

from neuroposter.cli._common import add_common

__all__ = ["add_parser", "run", "SIZES", "stages"]

# Size presets: how much data and how much training each stage gets.
SIZES: dict[str, dict[str, int]] = {
    "tiny": {"posters": 48, "epochs_snn": 3, "epochs_ann": 3, "samples": 8},
    "default": {"posters": 480, "epochs_snn": 15, "epochs_ann": 15, "samples": 16},
}


@dataclass(frozen=True)
class Stage:
    """One demo stage: a name shown to the user and the CLI arguments it runs."""

    name: str
    command: str
    argv: Callable[[argparse.Namespace, dict[str, int]], list[str]]


def _common(args: argparse.Namespace) -> list[str]:
    return ["--workspace", str(args.workspace)]


def stages() -> list[Stage]:
    """The demo's stages in pipeline order."""
    out = [
        Stage("data synth", "data", lambda a, s: ["data", "synth", "--n", str(s["posters"]),
                                                    "--seed", str(a.seed), *_common(a)]),
        Stage("data import", "data", lambda a, s: ["data", "import", "--seed", str(a.seed), *_common(a)]),
    ]
    return out


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    """Registers ``neuroposter demo``."""
    p = subparsers.add_parser(
        "demo", help="run the whole pipeline on the built-in synthetic poster set",
        description="Runs synth -> import -> features -> encode -> train -> export -> report on the "
        "built-in synthetic posters, printing each stage's time.")
    p.add_argument("--size", choices=sorted(SIZES), default="default",
                   help="default: the full demo; tiny: the same stages on a few dozen posters")
    p.add_argument("--seed", type=int, default=0, help="seed for data, splits and training")
    add_common(p)
    p.set_defaults(func=run)


def _command_available(command: str) -> bool:
    from neuroposter.cli import COMMANDS

    try:
        importlib.import_module(f"neuroposter.cli.{COMMANDS[command]}")
    except ModuleNotFoundError:
        return False
    return True


def run(args: argparse.Namespace) -> int:
    """Runs every stage; stops at the first failing one with its exit code."""
    from neuroposter.cli import main

    preset = SIZES[args.size]
    timings: list[tuple[str, float]] = []
    extra = ["--debug"] if getattr(args, "debug", False) else []
    t_all = time.perf_counter()
    for stage in stages():
        if not _command_available(stage.command):
            print(f"[demo] skipping {stage.name}: command `{stage.command}` is not available", flush=True)
            continue
        argv = stage.argv(args, preset)
        print(f"[demo] {stage.name}: neuroposter {' '.join(argv)}", flush=True)
        t0 = time.perf_counter()
        code = main([*extra, *argv]) if extra else main(argv)
        dt = time.perf_counter() - t0
        timings.append((stage.name, dt))
        if code != 0:
            print(f"[demo] stage {stage.name!r} failed (exit {code}) after {dt:.1f} s", file=sys.stderr)
            return code
    total = time.perf_counter() - t_all
    print("\n[demo] stage times")
    for name, dt in timings:
        print(f"  {name:<28s} {dt:7.1f} s")
    print(f"  {'total':<28s} {total:7.1f} s")
    return 0


