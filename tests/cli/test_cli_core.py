"""The CLI frame: help, exit codes, config files and flag precedence."""

from __future__ import annotations

import argparse
import subprocess
import sys

import pytest

from neuroposter.cli import main
from neuroposter.cli._common import ConfigError, add_common, apply_config


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="t")
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("train")
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument("--model", choices=["a", "b"], default="a")
    add_common(p)
    return parser


def _parse(argv):
    parser = _parser()
    return apply_config(parser, parser.parse_args(argv), argv)


def test_config_sets_defaults_and_flags_win(tmp_path):
    cfg = tmp_path / "c.yaml"
    cfg.write_text("epochs: 3\nmodel: b\n")
    args = _parse(["train", "--config", str(cfg)])
    assert (args.epochs, args.model) == (3, "b")
    args = _parse(["train", "--config", str(cfg), "--epochs", "7"])
    assert (args.epochs, args.model) == (7, "b")


def test_config_section_for_the_command(tmp_path):
    cfg = tmp_path / "c.yaml"
    cfg.write_text("train:\n  epochs: 4\nreport:\n  whatever: 1\n")
    assert _parse(["train", "-c", str(cfg)]).epochs == 4


@pytest.mark.parametrize("text,match", [
    ("epoch: 3\n", "unknown option 'epoch'.*valid: .*epochs"),
    ("model: z\n", "not one of"),
    ("- a\n- b\n", "mapping"),
    ("epochs: [\n", "not valid YAML"),
])
def test_bad_config_is_a_usage_error(tmp_path, text, match):
    cfg = tmp_path / "c.yaml"
    cfg.write_text(text)
    with pytest.raises(ConfigError, match=match):
        _parse(["train", "--config", str(cfg)])


def test_missing_config_file_exits_2(tmp_path, capsys):
    with pytest.raises(SystemExit) as exc:
        main(["demo", "--config", str(tmp_path / "none.yaml")])
    assert exc.value.code == 2
    assert "not found" in capsys.readouterr().err


def test_usage_error_exits_2(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["no-such-command"])
    assert exc.value.code == 2


def test_help_is_instant_and_imports_nothing_heavy():
    code = ("import sys, time; t=time.perf_counter(); from neuroposter.cli import build_parser; "
            "build_parser().format_help(); "
            "heavy=[m for m in ('torch','lava','onnxruntime','matplotlib','nir','norse') if m in sys.modules]; "
            "print(heavy, time.perf_counter()-t)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    heavy, seconds = out.rsplit(" ", 1)
    assert heavy.strip() == "[]", f"--help imported {heavy}"
    assert float(seconds) < 2.0


def test_runtime_error_is_one_line_exit_1(tmp_path, capsys):
    import neuroposter.cli as cli

    def boom(args):
        raise RuntimeError("something broke\nsecond line")

    parser = cli.build_parser
    try:
        cli.build_parser = lambda: _with_func(parser(), boom)
        assert main(["demo", "--workspace", str(tmp_path)]) == 1
    finally:
        cli.build_parser = parser
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["neuroposter: error: RuntimeError: something broke (run with --debug for the traceback)"]


def _with_func(parser, func):
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            action.choices["demo"].set_defaults(func=func)
    return parser
