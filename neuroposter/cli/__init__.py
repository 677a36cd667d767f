"""The ``neuroposter`` console script: argument parsing only; the work happens in the packages.

Every command module in this package exposes ``add_parser(subparsers)`` and ``run(args) -> int``
and imports heavy libraries only inside ``run`` so that ``neuroposter --help`` is instant.
Exit codes (``neuroposter.cli._common.EXIT_*``):

* 0 success;
* 1 runtime failure: a failed verification, missing or changed data (one-line message; traceback with ``--debug``);
* 2 usage error (a bad flag or value, a missing file named on the command line);
* 3 ``export`` and ``fit`` only: the chip refuses the network -- a verdict, not a failure: the bundle is written at
  its name and its ``summary.json`` names every violated limit (a failed verification stays 1).

``--json`` (``demo``, ``train``, ``fit``, ``export``, ``report``, ``profile``, ``predict``): the command prints one JSON
document on stdout -- ``{"command", "exit_code", ["error"], ...its results}`` -- and nothing else; everything else it
prints goes to stderr (``_common.add_json_flag`` / ``_common.emit``). A usage error (exit 2) with ``--json`` on the
command line also prints its document, ``{"command", "exit_code": 2, "error"}``, before argparse exits.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys
import traceback
from typing import Sequence

from neuroposter import __version__
from neuroposter.cli._common import (
    EXIT_CODES_EPILOG, EXIT_USAGE, ConfigError, UsageExit, apply_config, json_document, one_line_errors, results_to_stderr,
)

__all__ = ["main", "build_parser", "COMMANDS"]

# Command name -> module (in neuroposter.cli). Order is the order of `neuroposter --help`.
COMMANDS: dict[str, str] = {
    "demo": "demo",
    "data": "data",
    "features": "features",
    "encode": "encode",
    "train": "train",
    "fit": "fit",
    "export": "export",
    "report": "report",
    "profile": "profile",
    "predict": "predict",
}


def _available_commands() -> dict[str, object]:
    mods = {}
    for name, modname in COMMANDS.items():
        try:
            mods[name] = importlib.import_module(f"neuroposter.cli.{modname}")
        except ModuleNotFoundError as exc:
            if exc.name != f"neuroposter.cli.{modname}":
                raise
    return mods


def build_parser() -> argparse.ArgumentParser:
    """The full argument parser (one subparser per command)."""
    parser = argparse.ArgumentParser(
        prog="neuroposter",
        description="Spike-Driven Transformers on movie posters: train, deploy through NIR to Loihi 2 "
        "and simulated chips, and profile energy against a CNN and a ViT.",
        epilog=EXIT_CODES_EPILOG,
    )
    one_line_errors(parser)
    parser.add_argument("--version", action="version", version=f"neuroposter {__version__}")
    parser.add_argument("--debug", action="store_true", help="show full tracebacks on errors")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for mod in _available_commands().values():
        mod.add_parser(sub)  # type: ignore[attr-defined]
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Runs the CLI and returns the exit code (never raises, except SystemExit from argparse)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    try:
        try:
            args = parser.parse_args(argv)
            args = apply_config(parser, args, argv)
        except ConfigError as exc:
            sys.stderr.write(f"neuroposter: error: {exc}\n")
            raise UsageExit(str(exc)) from None
    except UsageExit as exc:
        if "--json" in argv:   # a usage error still answers --json with its one document
            command = next((a for a in argv if a in COMMANDS), None)
            print(json_document(argparse.Namespace(command=command), EXIT_USAGE, exc.message), flush=True)
        raise
    debug = bool(getattr(args, "debug", False))
    if getattr(args, "verify", False):
        os.environ["NEUROPOSTER_VERIFY"] = "full"   # read by neuroposter.manifest.verify_files
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    logging.getLogger("neuroposter").setLevel(logging.DEBUG if debug else logging.INFO)
    if not getattr(args, "json", False):
        return _run(args, debug)
    # --json: the command's own prints go to stderr; stdout gets exactly one JSON document
    errors: list[str] = []
    with results_to_stderr():
        code = _run(args, debug, errors)
    print(json_document(args, code, errors[0] if errors else None), flush=True)
    return code


def _run(args: argparse.Namespace, debug: bool, errors: list[str] | None = None) -> int:
    """Runs the command; every failure becomes one line on stderr (and, for --json, an entry of ``errors``)."""
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        print("neuroposter: interrupted", file=sys.stderr)
        if errors is not None:
            errors.append("interrupted")
        return 130
    except Exception as exc:  # noqa: BLE001 - the CLI boundary turns every failure into one line
        if debug:
            traceback.print_exc()
        import errno

        if isinstance(exc, OSError) and exc.errno == errno.ENOSPC:
            where = exc.filename or "the output folder"
            line = f"no space left on device: {where}; free some space and run again"
            print(f"neuroposter: error: {line}", file=sys.stderr)
            if errors is not None:
                errors.append(line)
            return 1
        msg = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        if isinstance(exc, KeyError) and msg.startswith(("'", '"')):
            msg = msg[1:-1]
        from neuroposter.errors import NeuroposterError, UsageError

        hint = "" if debug or isinstance(exc, NeuroposterError) else " (run with --debug for the traceback)"
        kind = "" if isinstance(exc, (NeuroposterError, KeyError)) else f"{type(exc).__name__}: "
        print(f"neuroposter: error: {kind}{msg}{hint}", file=sys.stderr)
        if errors is not None:
            errors.append(f"{kind}{msg}")
        return 2 if isinstance(exc, UsageError) else 1
