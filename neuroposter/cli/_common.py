"""Options every command shares (--workspace, --config, --debug) and config-file handling.

A config file is YAML. Its top-level keys are option names of the command (dashes or
underscores); a mapping under the command's own name (e.g. ``train: {epochs: 5}``) also
applies, so one file can configure several commands. Explicit flags override the file.
"""

from __future__ import annotations

import argparse
import math
import os
import sys
from pathlib import Path
from typing import Any, Callable, Sequence

__all__ = ["ConfigError", "UsageExit", "add_common", "apply_config", "write_resolved_config", "workspace_of",
           "int_at_least", "float_at_least", "positive_float", "int_in_range", "float_in_range",
           "samples_or_all", "parse_bool", "one_line_errors", "encode_steps", "seed_type", "SEED_MAX", "SAMPLES_MAX", "T_MAX",
           "EXIT_OK", "EXIT_FAILED", "EXIT_USAGE", "EXIT_REFUSED", "EXIT_CODES_EPILOG", "add_json_flag", "emit",
           "results_to_stderr", "json_document"]

# Seeds are 0..2**31-1: numpy's legacy RandomState (used by the stratified split, which also uses
# seed+1) takes at most 2**32-1, and some commands derive further seeds by adding small offsets.
SEED_MAX = 2**31 - 1
# Most test samples a deployment check or the report may simulate (``all`` means up to this many).
SAMPLES_MAX = 100_000
_TRUE = frozenset({"true", "yes", "on", "1"})
_FALSE = frozenset({"false", "no", "off", "0"})


# Exit codes of every command (documented in neuroposter/cli/__init__.py and in the --help epilogs).
EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2
#: ``export`` / ``fit``: the chip refuses the network (a verdict recorded in the bundle, not a failure).
EXIT_REFUSED = 3
EXIT_CODES_EPILOG = ("exit codes: 0 success; 1 failure (a failed verification, bad data; one-line message, traceback "
                     "with --debug); 2 usage error; 3 the chip refuses the network (export, fit: the verdict and every "
                     "violated limit are in the bundle's summary.json)")


class UsageExit(SystemExit):
    """argparse's exit on a usage error (exit code 2) that keeps its one-line message (``message``) for
    ``--json``: :func:`neuroposter.cli.main` puts it into the JSON document."""

    def __init__(self, message: str) -> None:
        super().__init__(2)
        self.message = message


class ConfigError(Exception):
    """A config file that cannot be used (usage error, exit code 2)."""


def _to_int(text: str) -> int:
    try:
        return int(str(text).strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None


def _to_finite_float(text: str) -> float:
    try:
        value = float(str(text).strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"must be a finite number, got {text!r}")
    return value


def _fmt(x: float) -> str:
    return str(x) if isinstance(x, int) else f"{x:g}"


def _too_large(value: float, high: float, hint: str | Callable[[Any], str] | None) -> str:
    if callable(hint):
        return f"{hint(value)}; the maximum is {_fmt(high)}"
    return f"must be <= {_fmt(high)}, got {_fmt(value)}" + (f" ({hint})" if hint else "")


def int_at_least(low: int) -> Callable[[str], int]:
    """An argparse type: an integer >= ``low`` (anything else is a usage error naming the value)."""

    def parse(text: str) -> int:
        value = _to_int(text)
        if value < low:
            raise argparse.ArgumentTypeError(f"must be >= {low}, got {value}")
        return value

    parse.__name__ = f"integer>={low}"
    return parse


def int_in_range(low: int, high: int, unit_hint: str | Callable[[int], str] | None = None
                 ) -> Callable[[str], int]:
    """An argparse type: an integer in ``[low, high]``.

    Args:
        low, high: inclusive bounds.
        unit_hint: said when the value is above ``high``: a text (why the bound), or a function of
            the value returning what that value would take (e.g. ``"T=100000 would need about
            426 GB ..."``); ``"; the maximum is HIGH"`` is appended to the function's text.
    """

    def parse(text: str) -> int:
        value = _to_int(text)
        if value < low:
            raise argparse.ArgumentTypeError(f"must be >= {low}, got {value}")
        if value > high:
            raise argparse.ArgumentTypeError(_too_large(value, high, unit_hint))
        return value

    parse.__name__ = f"integer in [{low}, {high}]"
    return parse


def float_at_least(low: float) -> Callable[[str], float]:
    """An argparse type: a finite number >= ``low``."""

    def parse(text: str) -> float:
        value = _to_finite_float(text)
        if not value >= low:
            raise argparse.ArgumentTypeError(f"must be >= {low:g}, got {value:g}")
        return value

    parse.__name__ = f"number>={low:g}"
    return parse


def float_in_range(low: float, high: float, unit_hint: str | Callable[[float], str] | None = None, *,
                   low_open: bool = False, high_open: bool = False) -> Callable[[str], float]:
    """An argparse type: a finite number between ``low`` and ``high``.

    Args:
        low, high: the bounds (inclusive unless ``low_open`` / ``high_open``).
        unit_hint: as for :func:`int_in_range`.
    """

    def parse(text: str) -> float:
        value = _to_finite_float(text)
        if value < low or (low_open and value == low):
            raise argparse.ArgumentTypeError(f"must be {'>' if low_open else '>='} {low:g}, got {value:g}")
        if value > high or (high_open and value == high):
            if high_open:
                raise argparse.ArgumentTypeError(f"must be < {high:g}, got {value:g}")
            raise argparse.ArgumentTypeError(_too_large(value, high, unit_hint))
        return value

    parse.__name__ = f"number in {'(' if low_open else '['}{low:g}, {high:g}{')' if high_open else ']'}"
    return parse


def positive_float(text: str) -> float:
    """An argparse type: a finite number > 0."""
    value = _to_finite_float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be > 0, got {value:g}")
    return value


def samples_or_all(text: str) -> int:
    """An argparse type for ``--samples``: an integer in ``[1, SAMPLES_MAX]``, or ``all``.

    ``all`` is :data:`SAMPLES_MAX`; every consumer takes ``min(samples, size of the test split)``,
    so it means the whole test split (up to that many).
    """
    if str(text).strip().lower() == "all":
        return SAMPLES_MAX
    value = _to_int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1 (or `all` for the whole test split), got {value}")
    if value > SAMPLES_MAX:
        raise argparse.ArgumentTypeError(f"must be <= {SAMPLES_MAX} (or `all` for the whole test split), "
                                         f"got {value}")
    return value


samples_or_all.__name__ = "samples"
seed_type = int_in_range(0, SEED_MAX)
seed_type.__name__ = "seed"


# `encode -T`: the encoder holds dense uint8 spikes [T, B, N, D] for a batch of B = 32 posters (and
# a transposed copy while packing them into events); with the default 8x5 = 40 tokens of 1664
# DenseNet features that is T x 4.3 MB per batch, so T = 256 already needs about 1.1 GB.
T_MAX = 256
_ENCODE_BATCH, _TOKENS, _DIM = 32, 40, 1664


def _encode_memory_hint(T: int) -> str:
    gb = 2 * T * _ENCODE_BATCH * _TOKENS * _DIM / 1e9
    return (f"T={T} would need about {gb:,.0f} GB of memory to encode one {_ENCODE_BATCH}-poster batch "
            f"(dense uint8 spikes [T, {_ENCODE_BATCH}, {_TOKENS}, {_DIM}] and their packed copy, at the "
            f"default 8x5 tokens)")


encode_steps = int_in_range(1, T_MAX, _encode_memory_hint)
encode_steps.__name__ = "time steps"


def parse_bool(value: Any) -> bool:
    """A config-file boolean: YAML true/false, or true/false/yes/no/on/off/1/0 (any case).

    Raises:
        ValueError: anything else.
    """
    if isinstance(value, bool):
        return value
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    if isinstance(value, str):
        low = value.strip().lower()
        if low in _TRUE:
            return True
        if low in _FALSE:
            return False
    raise ValueError(f"expected true or false (or yes/no, on/off, 1/0), got {value!r}")


def one_line_errors(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Makes ``parser``'s usage errors one line, ``neuroposter: error: COMMAND: MESSAGE`` (exit code 2).

    argparse's own ``error`` prints the whole usage block first; the CLI's convention is one line
    that names the problem (``--help`` shows the usage).
    """
    prog = parser.prog
    command = prog.split(" ", 1)[1] if " " in prog else ""

    def error(message: str) -> None:  # argparse.ArgumentParser.error never returns
        where = f"{command}: " if command else ""
        line = f"{where}{message} (see `{prog} --help`)"
        sys.stderr.write(f"neuroposter: error: {line}\n")
        raise UsageExit(line)

    parser.error = error  # type: ignore[method-assign]
    return parser


def add_common(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Adds --workspace, --config and --debug to a command's parser (and one-line usage errors)."""
    one_line_errors(parser)
    g = parser.add_argument_group("common options")
    g.add_argument("--workspace", "-w", metavar="DIR", default="workspace",
                   help="workspace folder where commands read and write (default: ./workspace)")
    g.add_argument("--config", "-c", metavar="FILE", default=None,
                   help="YAML config file; explicit flags override its values")
    g.add_argument("--debug", action="store_true", default=argparse.SUPPRESS,
                   help="show full tracebacks on errors")
    g.add_argument("--verify", action="store_true", default=argparse.SUPPRESS,
                   help="re-hash every input file against its manifest (default: only files whose size or "
                        "modification time changed since the last check)")
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


_BOOL_ACTIONS = (argparse._StoreTrueAction, argparse._StoreFalseAction, argparse.BooleanOptionalAction)
_MAX_CONFIG_BYTES = 10 * 1024 * 1024


def _config_names(dests: dict[str, argparse.Action]) -> dict[str, tuple[str, bool]]:
    """Config key -> (dest, inverted): every dest, plus each long option's own name.

    ``--no-probe`` (``store_false``, dest ``probe``) may be written ``probe: false`` or
    ``no-probe: true``; the second form is the inverted alias.
    """
    names: dict[str, tuple[str, bool]] = {d: (d, False) for d in dests}
    for dest, action in dests.items():
        for opt in action.option_strings:
            if not opt.startswith("--"):
                continue
            alias = opt[2:].replace("-", "_")
            if alias in names:
                continue
            inverted = isinstance(action, argparse._StoreFalseAction) or (
                isinstance(action, argparse.BooleanOptionalAction) and alias.startswith("no_"))
            names[alias] = (dest, inverted)
    return names


def _all_section_names(parser: argparse.ArgumentParser) -> set[str]:
    """Every command and sub-command name under ``parser`` (possible config sections)."""
    out: set[str] = set()
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                out.add(name)
                out |= _all_section_names(sub)
    return out


def _short(value: Any, limit: int = 60) -> str:
    """A bounded repr (YAML aliases can make a value huge or self-referential)."""
    import reprlib

    r = reprlib.Repr()
    r.maxlevel, r.maxlist, r.maxdict, r.maxtuple, r.maxstring, r.maxother = 3, 6, 4, 6, limit, limit
    text = r.repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _read_config(path: str) -> dict[str, Any]:
    """The config file's top-level mapping; every way it can be unusable is a one-line ConfigError."""
    import yaml

    p = Path(path)
    try:
        if p.is_dir():
            raise ConfigError(f"config file {path} is a directory, not a YAML file")
        if not p.exists():
            raise ConfigError(f"config file {path} not found")
        if not p.is_file():
            raise ConfigError(f"config file {path} is not a regular file")
        if p.stat().st_size > _MAX_CONFIG_BYTES:
            raise ConfigError(f"config file {path} is {p.stat().st_size} bytes, too large for a config file "
                              f"(at most {_MAX_CONFIG_BYTES // (1024 * 1024)} MiB)")
        data = p.read_bytes()
    except PermissionError:
        raise ConfigError(f"config file {path} cannot be read (permission denied)") from None
    except OSError as exc:
        raise ConfigError(f"config file {path} cannot be read ({exc.strerror or type(exc).__name__})") from None
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise ConfigError(f"config file {path} is not UTF-8 text (byte 0x{data[exc.start]:02x} at offset "
                          f"{exc.start}); save it as UTF-8") from None
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        what = getattr(exc, "problem", None) or str(exc)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        raise ConfigError(f"config file {path} is not valid YAML: {' '.join(str(what).split())}{where}") from None
    except RecursionError:
        raise ConfigError(f"config file {path} is nested too deeply") from None
    if raw is None:  # empty, or only comments
        return {}
    if not isinstance(raw, dict):
        kind = {list: "a list", str: "a string", int: "a number", float: "a number", bool: "a boolean"}.get(
            type(raw), type(raw).__name__)
        raise ConfigError(f"config file {path} must hold a mapping of option names to values, "
                          f"got {kind} ({_short(raw)})")
    return raw


def _check_value(path: str, key: str, action: argparse.Action, value: Any, inverted: bool) -> Any:
    """One config value, checked and converted as argparse would the same flag (ConfigError if not)."""
    flag = max(action.option_strings, key=len)
    if isinstance(action, _BOOL_ACTIONS):
        try:
            b = parse_bool(value)
        except ValueError as exc:
            raise ConfigError(f"config {path}: {key}: {exc}") from None
        return (not b) if inverted else b
    multi = (action.nargs in ("+", "*") or isinstance(action.nargs, int)
             or isinstance(action, argparse._AppendAction))
    if isinstance(value, dict):
        raise ConfigError(f"config {path}: {key}: expected {'a list of values' if multi else 'a single value'}, "
                          f"got a mapping {_short(value)}")
    if isinstance(value, (list, tuple)):
        if not multi:
            raise ConfigError(f"config {path}: {key}: expected a single value, got a list {_short(value)}")
        items = list(value)
    elif isinstance(action.nargs, int) and action.nargs > 1:
        raise ConfigError(f"config {path}: {key} needs {action.nargs} values, got 1 ({_short(value)})")
    else:
        items = [value]
    if isinstance(action.nargs, int) and len(items) != action.nargs:
        raise ConfigError(f"config {path}: {key} needs {action.nargs} values, got {len(items)}")
    if action.nargs == "+" and not items:
        raise ConfigError(f"config {path}: {key} needs at least one value, got an empty list")
    out = []
    for v in items:
        if v is None or isinstance(v, (dict, list, tuple)):
            raise ConfigError(f"config {path}: {key}: expected a plain value, got {_short(v)}")
        if isinstance(v, bool):
            raise ConfigError(f"config {path}: {key}: expected {'a string' if action.type is None else 'a value'}, "
                              f"got the boolean {str(v).lower()} (quote it if you mean the text)")
        if action.type is not None:
            try:
                v = action.type(str(v))
            except (argparse.ArgumentTypeError, TypeError, ValueError) as exc:
                raise ConfigError(f"config {path}: argument {flag}: {exc}") from None
        else:
            v = str(v)
        if action.choices is not None and v not in action.choices:
            raise ConfigError(f"config {path}: {key}={v!r} is not one of {list(action.choices)}")
        out.append(v)
    return out if multi else out[0]


def apply_config(parser: argparse.ArgumentParser, args: argparse.Namespace,
                 argv: Sequence[str]) -> argparse.Namespace:
    """Re-parses ``argv`` with the config file's values as defaults (flags win).

    Every value passes the same checks as the same flag: its type and range, its choices, the
    number of values; booleans (``store_true`` flags) take YAML booleans or true/false, yes/no,
    on/off, 1/0 in any case.

    Raises:
        ConfigError: unreadable file, unknown key, or a value the option refuses.
    """
    path = getattr(args, "config", None)
    if not path:
        return args
    raw = _read_config(str(path))
    leaf = _find_subparser(parser, args)
    dests = _option_dests(leaf)
    names = _config_names(dests)
    command = getattr(args, "command", None)
    label = " ".join(n for n in (command, getattr(args, "subcommand", None)) if n)
    sections = _all_section_names(parser)
    section_names = {n for n in (command, getattr(args, "subcommand", None)) if n}
    found: dict[str, tuple[str, Any, bool]] = {}   # dest -> (key as written, value, inverted)

    def unknown(key: Any) -> ConfigError:
        return ConfigError(f"config {path}: unknown option {key!r} for `{label}`; "
                           f"valid: {', '.join(sorted(dests))}")

    for key, value in raw.items():
        name = str(key).replace("-", "_")
        if key in section_names:
            if not isinstance(value, dict):
                raise ConfigError(f"config {path}: section {key!r} must be a mapping of option names to values, "
                                  f"got {_short(value)}")
            for k2, v2 in value.items():
                n2 = str(k2).replace("-", "_")
                if n2 not in names:
                    raise unknown(k2)
                d2, inv2 = names[n2]
                found[d2] = (str(k2), v2, inv2)
        elif isinstance(value, dict) and (key in sections or name not in names):
            continue  # a section for another command (e.g. `features:` when running `train --features`)
        elif name in names:
            d, inv = names[name]
            found.setdefault(d, (str(key), value, inv))
        else:
            raise unknown(key)
    values: dict[str, Any] = {}
    for dest, (key, value, inverted) in found.items():
        if value is None:
            continue  # `key:` with nothing after it keeps the default
        values[dest] = _check_value(str(path), key, dests[dest], value, inverted)
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


# --------------------------------------------------------------------------------------------- --json output

_PAYLOAD = "_json_payload"


def add_json_flag(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Adds ``--json``: print one JSON document on stdout instead of the text (progress and logs stay on stderr).

    The command reports its results through :func:`emit`; :func:`neuroposter.cli.main` sends everything else the
    command prints to stderr while it runs (:func:`results_to_stderr`) and prints the document at the end.
    """
    parser.add_argument("--json", action="store_true", default=False,
                        help="print the results as one JSON document on stdout (nothing else goes to stdout; "
                             "progress bars and messages stay on stderr)")
    return parser


def emit(args: argparse.Namespace, text_lines: Sequence[str], payload: dict[str, Any]) -> None:
    """A command's results: ``text_lines`` printed on stdout, or with ``--json`` ``payload`` kept for the one JSON
    document :func:`neuroposter.cli.main` prints when the command returns (a later call's keys update it)."""
    if getattr(args, "json", False):
        held = getattr(args, _PAYLOAD, None) or {}
        held.update(payload)
        setattr(args, _PAYLOAD, held)
        return
    for line in text_lines:
        print(line)


def json_document(args: argparse.Namespace, code: int, error: str | None = None) -> str:
    """The ``--json`` document of a finished command: ``{"command", "exit_code", ["error"], **payload}``."""
    import json

    from neuroposter._io import to_jsonable

    command = " ".join(str(n) for n in (getattr(args, "command", None), getattr(args, "subcommand", None)) if n)
    doc: dict[str, Any] = {"command": command, "exit_code": int(code)}
    if error is not None:
        doc["error"] = error
    doc.update(getattr(args, _PAYLOAD, None) or {})
    return json.dumps(_finite(to_jsonable(doc)), indent=2, allow_nan=False, default=str)


def _finite(obj: Any) -> Any:
    """NaN and infinities (not JSON) -> null, recursively (numpy values already plain)."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: _finite(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_finite(to) for to in obj]
    return obj


class results_to_stderr:  # noqa: N801 - used as a context manager
    """While active, everything written to stdout -- by Python code (``print``) or at the file-descriptor level
    (C extensions, child processes) -- goes to stderr; :attr:`stdout` is the real stdout for the JSON document."""

    def __init__(self) -> None:
        import sys

        self.stdout = sys.stdout
        self._fd: int | None = None
        self._saved: int | None = None

    def __enter__(self) -> "results_to_stderr":
        import sys

        sys.stdout.flush()
        try:   # the process's own descriptors: what C extensions and child processes write to
            os.fstat(1)
            os.fstat(2)
            fd, err = 1, 2
        except OSError:   # no descriptor 1 or 2 (a detached process): Python-level redirection only
            fd = err = None
        if fd is not None and err is not None:
            self._saved, self._fd = os.dup(fd), fd
            os.dup2(err, fd)
        self._old = sys.stdout
        sys.stdout = sys.stderr
        return self

    def __exit__(self, *exc: Any) -> None:
        import sys

        try:
            sys.stderr.flush()
            sys.__stdout__.flush() if sys.__stdout__ is not None else None
        finally:
            sys.stdout = self._old
            if self._saved is not None and self._fd is not None:
                os.dup2(self._saved, self._fd)
                os.close(self._saved)
