"""The shared option types of cli/_common.py: finite numbers, ranges, `all`, config booleans."""

from __future__ import annotations

import argparse

import pytest

from neuroposter.cli._common import (
    SAMPLES_MAX, SEED_MAX, T_MAX, encode_steps, float_at_least, float_in_range, int_at_least, int_in_range,
    one_line_errors, parse_bool, positive_float, samples_or_all, seed_type,
)


@pytest.mark.parametrize("parse", [positive_float, float_at_least(0.0), float_in_range(0, 1),
                                   float_in_range(0, 10, low_open=True)])
@pytest.mark.parametrize("text", ["nan", "NaN", "inf", "-inf", "Infinity", "1e400", "-1e400"])
def test_float_types_reject_non_finite(parse, text):
    with pytest.raises(argparse.ArgumentTypeError, match="must be a finite number"):
        parse(text)


def test_float_in_range_bounds():
    p = float_in_range(0, 1)
    assert p("0") == 0.0 and p("1") == 1.0 and p(" 0.5 ") == 0.5
    with pytest.raises(argparse.ArgumentTypeError, match=r"must be <= 1, got 1.5"):
        p("1.5")
    with pytest.raises(argparse.ArgumentTypeError, match=r"must be >= 0"):
        p("-0.1")
    q = float_in_range(0, 10, low_open=True, high_open=True)
    with pytest.raises(argparse.ArgumentTypeError, match=r"must be > 0"):
        q("0")
    with pytest.raises(argparse.ArgumentTypeError, match=r"must be < 10"):
        q("10")
    with pytest.raises(argparse.ArgumentTypeError, match="expected a number"):
        p("half")


def test_int_in_range_with_hints():
    p = int_in_range(1, 8, "eight is plenty")
    assert p("1") == 1 and p("8") == 8
    with pytest.raises(argparse.ArgumentTypeError, match=r"must be <= 8, got 9 \(eight is plenty\)"):
        p("9")
    with pytest.raises(argparse.ArgumentTypeError, match="expected an integer"):
        p("2.5")
    q = int_in_range(0, 4, lambda v: f"{v} would need {v * 2} GB")
    with pytest.raises(argparse.ArgumentTypeError, match=r"^7 would need 14 GB; the maximum is 4$"):
        q("7")
    with pytest.raises(argparse.ArgumentTypeError, match="must be >= 0"):
        int_at_least(0)("-1")


def test_encode_steps_and_seeds():
    assert encode_steps(str(T_MAX)) == T_MAX
    with pytest.raises(argparse.ArgumentTypeError, match=r"T=100000 would need about 426 GB .*maximum is 256"):
        encode_steps("100000")
    assert seed_type(str(SEED_MAX)) == SEED_MAX
    with pytest.raises(argparse.ArgumentTypeError, match=f"must be <= {SEED_MAX}"):
        seed_type(str(SEED_MAX + 1))


def test_samples_or_all():
    assert samples_or_all("all") == samples_or_all(" All ") == SAMPLES_MAX
    assert samples_or_all("1") == 1 and samples_or_all(str(SAMPLES_MAX)) == SAMPLES_MAX
    for bad in ("0", "-5", str(SAMPLES_MAX + 1)):
        with pytest.raises(argparse.ArgumentTypeError, match="`all`"):
            samples_or_all(bad)
    with pytest.raises(argparse.ArgumentTypeError, match="expected an integer"):
        samples_or_all("everything")


@pytest.mark.parametrize("value, expected", [
    (True, True), (False, False), (1, True), (0, False), ("true", True), ("FALSE", False), ("Yes", True),
    ("no", False), ("ON", True), ("off", False), ("1", True), ("0", False), (" no ", False),
])
def test_parse_bool(value, expected):
    assert parse_bool(value) is expected


@pytest.mark.parametrize("value", ["maybe", "", 2, -1, 0.5, None, [True], {"a": 1}, "y", "n"])
def test_parse_bool_refuses(value):
    with pytest.raises(ValueError, match="expected true or false"):
        parse_bool(value)


def test_one_line_errors(capsys):
    parser = argparse.ArgumentParser(prog="neuroposter thing")
    parser.add_argument("--n", type=int_in_range(1, 3))
    one_line_errors(parser)
    with pytest.raises(SystemExit) as exc:
        parser.parse_args(["--n", "9"])
    assert exc.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["neuroposter: error: thing: argument --n: must be <= 3, got 9 (see `neuroposter thing --help`)"]
