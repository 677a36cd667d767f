"""Options every command shares (--workspace, --config, --debug) and config-file handling.

A config file is YAML. Its top-level keys are option names of the command (dashes or
underscores); a mapping under the command's own name (e.g. ``train: {epochs: 5}``) also
applies, so one file can configure several commands. Explicit flags override the file.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import Any, Callable, Sequence

__all__ = ["ConfigError", "add_common", "apply_config", "write_resolved_config", "workspace_of",
           "int_at_least", "float_at_least", "positive_float"]


class ConfigError(Exception):
    """A config file that cannot be used (usage error, exit code 2)."""


def int_at_least(low: int) -> Callable[[str], int]:
    """An argparse type: an integer >= ``low`` (anything else is a usage error naming the value)."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
        if value < low:
            raise argparse.ArgumentTypeError(f"must be >= {low}, got {value}")
        return value

    parse.__name__ = f"integer>={low}"
    return parse


def float_at_least(low: float) -> Callable[[str], float]:
    """An argparse type: a number >= ``low``."""

    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
        if not value >= low:
            raise argparse.ArgumentTypeError(f"must be >= {low:g}, got {value:g}")
        return value

    parse.__name__ = f"number>={low:g}"
    return parse


def positive_float(text: str) -> float:
    """An argparse type: a number > 0."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be > 0, got {value:g}")
    return value


def add_common(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Adds --workspace, --config and --debug to a command's parser."""
    g = parser.add_argument_group("common options")
    g.add_argument("--workspace", "-w", metavar="DIR", default="workspace",
                   help="workspace folder where commands read and write (default: ./workspace)")
    g.add_argument("--config", "-c", metavar="FILE", default=None,
                   help="YAML config file; explicit flags override its values")
    g.add_argument("--debug", action="store_true", default=argparse.SUPPRESS,
                   help="show full tracebacks on errors")
    return parser


def _find_subparser(parser: argparse.ArgumentParser, args: argparse.Namespace) -> argparse.ArgumentParser:
    """Walks the chosen subcommand chain down to the parser that parsed the leaf command."""
    current = parser
    while True:
        sub_actions = [a for a in current._actions if isinstance(a, argparse._SubParsersAction)]
        if not sub_actions:
            return current
        action = sub_actions[0]
        chosen = getattr(args, action.dest, None)
        if chosen is None or chosen not in action.choices:
            return current
        current = action.choices[chosen]


def _option_dests(parser: argparse.ArgumentParser) -> dict[str, argparse.Action]:
    return {a.dest: a for a in parser._actions if a.option_strings and a.dest not in ("help", "config")}


def apply_config(parser: argparse.ArgumentParser, args: argparse.Namespace,
                 argv: Sequence[str]) -> argparse.Namespace:
    """Re-parses ``argv`` with the config file's values as defaults (flags win).

    Raises:
        ConfigError: unreadable file, unknown key, or a value argparse rejects.
    """
    path = getattr(args, "config", None)
    if not path:
        return args
    import yaml

    try:
        raw = yaml.safe_load(Path(path).read_text(encoding="utf-8")) or {}
    except FileNotFoundError:
        raise ConfigError(f"config file {path} not found") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"config file {path} is not valid YAML: {exc}") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"config file {path} must hold a mapping of option names to values")
    leaf = _find_subparser(parser, args)
    dests = _option_dests(leaf)
    command = getattr(args, "command", None)
    values: dict[str, Any] = {}
    section_names = {n for n in (command, getattr(args, "subcommand", None)) if n}
    for key, value in raw.items():
        dest = str(key).replace("-", "_")
        if key in section_names and isinstance(value, dict):
            for k2, v2 in value.items():
                d2 = str(k2).replace("-", "_")
                if d2 not in dests:
                    raise ConfigError(f"config {path}: unknown option {k2!r} for `{command}`; "
                                      f"valid: {', '.join(sorted(dests))}")
                values[d2] = v2
        elif dest in dests:
            values.setdefault(dest, value)
        elif isinstance(value, dict):
            continue  # a section for another command
        else:
            raise ConfigError(f"config {path}: unknown option {key!r} for `{command}`; "
                              f"valid: {', '.join(sorted(dests))}")
    for dest, value in values.items():
        # a config value passes the same checks as the same value given as a flag (type, range, choices)
        action = dests[dest]
        if value is None:
            continue
        items = list(value) if isinstance(value, (list, tuple)) else [value]
        if isinstance(action.nargs, int) and isinstance(value, (list, tuple)) and len(items) != action.nargs:
            raise ConfigError(f"config {path}: {dest} needs {action.nargs} values, got {len(items)}")
        if action.type is not None:
            try:
                items = [action.type(str(v)) for v in items]
            except (argparse.ArgumentTypeError, TypeError, ValueError) as exc:
                flag = max(action.option_strings, key=len)
                raise ConfigError(f"config {path}: argument {flag}: {exc}") from None
        if action.choices is not None:
            bad = [v for v in items if v not in action.choices]
            if bad:
                raise ConfigError(f"config {path}: {dest}={bad[0]!r} is not one of {list(action.choices)}")
        values[dest] = items if isinstance(value, (list, tuple)) else items[0]
    leaf.set_defaults(**values)
    return parser.parse_args(list(argv))


def write_resolved_config(directory: str | os.PathLike[str], args: argparse.Namespace) -> None:
    """Writes ``resolved_config.yaml`` (the options actually used) next to a command's outputs."""
    import yaml

    from neuroposter._io import atomic_write_text, to_jsonable

    cfg = {k: to_jsonable(v) for k, v in sorted(vars(args).items()) if k not in ("func",) and not callable(v)}
    atomic_write_text(Path(directory) / "resolved_config.yaml", yaml.safe_dump(cfg, sort_keys=True))


def workspace_of(args: argparse.Namespace):  # -> Workspace (import kept light)
    """The Workspace named by ``--workspace``."""
    from neuroposter.workspace import Workspace

    return Workspace.at(args.workspace)
