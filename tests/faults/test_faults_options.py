"""Hostile-tester faults (issue #10, item 7): every option validated at the boundary, data-import faults.

Every test goes through ``neuroposter.cli.main`` in-process and checks the exit code, that stderr is
one line naming the problem, and (for imports) that files present before the command hash the same
after it.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
from pathlib import Path

import pytest
import yaml

from neuroposter.cli import build_parser, main
from neuroposter.cli._common import SAMPLES_MAX, SEED_MAX, T_MAX, apply_config


# ----------------------------------------------------------------------------------------- helpers

def _run(argv: list[str]) -> int:
    """The exit code of ``main(argv)``, whether it returns or raises SystemExit (argparse)."""
    try:
        return int(main(argv))
    except SystemExit as exc:
        return int(exc.code or 0)


def _one_line_error(capsys: pytest.CaptureFixture[str], *needles: str) -> str:
    err = capsys.readouterr().err.strip()
    lines = err.splitlines()
    assert len(lines) == 1, f"expected one line on stderr, got:\n{err}"
    assert lines[0].startswith("neuroposter: error: "), lines[0]
    assert "Traceback" not in err
    for n in needles:
        assert n in lines[0], f"{n!r} not in {lines[0]!r}"
    return lines[0]


def _snapshot(root: Path) -> dict[str, str]:
    """SHA-256 of every regular file under ``root`` (symlinks are not followed)."""
    out = {}
    for dirpath, _dirs, files in os.walk(root):
        for f in files:
            p = Path(dirpath) / f
            if p.is_symlink() or not p.is_file():
                continue
            out[str(p.relative_to(root))] = hashlib.sha256(p.read_bytes()).hexdigest()
    return out


def _assert_unchanged(before: dict[str, str], root: Path) -> None:
    after = _snapshot(root)
    changed = [k for k, v in before.items() if after.get(k) != v]
    assert not changed, f"pre-existing files changed or vanished: {changed[:5]}"


def _parse(argv: list[str]) -> argparse.Namespace:
    parser = build_parser()
    return apply_config(parser, parser.parse_args(argv), argv)


@pytest.fixture(scope="module")
def synth12(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 12-poster synthetic raw folder (read-only: copy it before changing anything)."""
    ws = tmp_path_factory.mktemp("synth12")
    assert main(["data", "synth", "--n", "12", "--seed", "1", "-w", str(ws)]) == 0
    return ws / "raw" / "synth"


@pytest.fixture
def raw(synth12: Path, tmp_path: Path) -> Path:
    """A private copy of the 12-poster raw folder (MovieGenre.csv + posters/)."""
    dst = tmp_path / "raw"
    shutil.copytree(synth12, dst)
    return dst


def _ids(raw: Path) -> list[str]:
    lines = (raw / "MovieGenre.csv").read_bytes().decode("latin-1").splitlines()[1:]
    return [ln.split(",", 1)[0] for ln in lines if ln]


# ------------------------------------------------------------------------------- config booleans

@pytest.mark.parametrize("text, expected", [
    ("true", True), ("false", False), ('"no"', False), ('"yes"', True), ("'off'", False), ("'on'", True),
    ('"FALSE"', False), ('"True"', True), ("1", True), ("0", False), ('"0"', False), ('"1"', True),
    ("no", False), ("yes", True), ('" No "', False),
])
def test_config_booleans_are_typed(tmp_path, text, expected):
    cfg = tmp_path / "c.yaml"
    cfg.write_text(f"resume: {text}\nfinetune: {text}\n")
    args = _parse(["train", "-w", str(tmp_path), "-c", str(cfg)])
    assert args.resume is expected and args.finetune is expected


def test_store_false_option_from_config_both_spellings(tmp_path):
    cfg = tmp_path / "c.yaml"
    cfg.write_text("encode:\n  probe: 'no'\n")
    assert _parse(["encode", "-c", str(cfg)]).probe is False
    cfg.write_text("encode:\n  no-probe: 'yes'\n")
    assert _parse(["encode", "-c", str(cfg)]).probe is False
    cfg.write_text("encode:\n  no_probe: false\n")
    assert _parse(["encode", "-c", str(cfg)]).probe is True
    assert _parse(["encode", "-c", str(cfg), "--no-probe"]).probe is False  # the flag still wins


@pytest.mark.parametrize("value", ["maybe", "2", "[true]", "{a: 1}", "'nope'", "-1", "0.5"])
def test_bad_config_boolean_is_a_usage_error_naming_key_and_value(tmp_path, capsys, value):
    cfg = tmp_path / "c.yaml"
    cfg.write_text(f"train:\n  resume: {value}\n")
    assert _run(["train", "-w", str(tmp_path / "ws"), "-c", str(cfg)]) == 2
    line = _one_line_error(capsys, "resume", "true or false")
    assert repr(yaml.safe_load(value)) in line
    assert not (tmp_path / "ws").exists()


# --------------------------------------------------------------------------- config file faults

def _config_fault(tmp_path: Path, kind: str) -> Path:
    path = tmp_path / "bad.yaml"
    if kind == "directory":
        path.mkdir()
    elif kind == "latin1":
        path.write_bytes("name: caf\xe9\n".encode("latin-1"))
    elif kind == "binary":
        path.write_bytes(b"\x00\x01\x02\xff\xfe")
    elif kind == "scalar":
        path.write_text("0\n")
    elif kind == "empty-string":
        path.write_text("''\n")
    elif kind == "list":
        path.write_text("- epochs\n- 3\n")
    elif kind == "false":
        path.write_text("false\n")
    elif kind == "bad-yaml":
        path.write_text("epochs: [\n  3\n")
    elif kind == "tabs":
        path.write_text("train:\n\tepochs: 3\n")
    return path


@pytest.mark.parametrize("kind, needle", [
    ("directory", "is a directory"), ("latin1", "not UTF-8"), ("binary", "not UTF-8"),
    ("scalar", "must hold a mapping"), ("empty-string", "must hold a mapping"), ("list", "must hold a mapping"),
    ("false", "must hold a mapping"), ("bad-yaml", "not valid YAML"), ("tabs", "not valid YAML"),
])
def test_unusable_config_file_is_one_line_exit_2(tmp_path, capsys, kind, needle):
    path = _config_fault(tmp_path, kind)
    assert _run(["train", "-w", str(tmp_path / "ws"), "--config", str(path)]) == 2
    _one_line_error(capsys, f"config file {path}", needle)
    assert not (tmp_path / "ws").exists()


def test_unreadable_config_file_is_one_line_exit_2(tmp_path, capsys, monkeypatch):
    path = tmp_path / "secret.yaml"
    path.write_text("epochs: 3\n")
    real = Path.read_bytes

    def deny(self: Path) -> bytes:
        if self.name == "secret.yaml":
            raise PermissionError(13, "Permission denied", str(self))
        return real(self)

    monkeypatch.setattr(Path, "read_bytes", deny)  # chmod 000 does not stop root
    assert _run(["train", "-w", str(tmp_path / "ws"), "-c", str(path)]) == 2
    _one_line_error(capsys, f"config file {path}", "permission denied")


def test_empty_or_comment_only_config_is_fine(tmp_path):
    for text in ("", "# nothing here\n", "---\n"):
        cfg = tmp_path / "c.yaml"
        cfg.write_text(text)
        assert _parse(["train", "-c", str(cfg)]).epochs is None


@pytest.mark.parametrize("text, needle", [
    ("name: [a, b]\n", "expected a single value, got a list"),
    ("name: {a: 1}\n", "expected a single value, got a mapping"),
    ("train:\n  dataset: [x]\n", "dataset: expected a single value"),
    ("model: [sdt]\n", "model: expected a single value"),
    ("name: yes\n", "got the boolean true"),
    ("train: 5\n", "section 'train' must be a mapping"),
    ("weight_decay: .inf\n", "must be a finite number"),
    ("epochs: .inf\n", "expected an integer"),
    ("lr: .nan\n", "must be a finite number"),
    ("epochs: 2.5\n", "expected an integer"),
])
def test_config_values_of_the_wrong_shape_are_refused(tmp_path, capsys, text, needle):
    cfg = tmp_path / "c.yaml"
    cfg.write_text(text)
    assert _run(["train", "-w", str(tmp_path / "ws"), "-c", str(cfg)]) == 2
    _one_line_error(capsys, str(cfg), needle)


def test_section_for_another_command_does_not_leak_into_a_same_named_option(tmp_path):
    """`features:` is a section for `neuroposter features`, not a value for `train --features`."""
    cfg = tmp_path / "pipeline.yaml"
    cfg.write_text("features:\n  batch_size: 8\ntrain:\n  epochs: 2\n")
    args = _parse(["train", "-c", str(cfg)])
    assert args.features == "default" and args.epochs == 2
    shipped = Path(__file__).resolve().parents[2] / "examples" / "configs" / "pipeline.yaml"
    for command in ("features", "encode", "train", "export", "report"):
        _parse([command, "-c", str(shipped)])  # the shipped example is valid for every command


def test_list_options_take_lists_and_scalars(tmp_path):
    cfg = tmp_path / "c.yaml"
    cfg.write_text("report:\n  runs: sdt\n  profiles: [loihi, truenorth]\n")
    args = _parse(["report", "-c", str(cfg)])
    assert args.runs == ["sdt"] and args.profiles == ["loihi", "truenorth"]
    cfg.write_text("report:\n  runs: []\n")
    with pytest.raises(Exception, match="at least one value"):
        _parse(["report", "-c", str(cfg)])


# ------------------------------------------------------------------------------------- numbers

BAD_FLAGS = [
    (["train", "--lr", "inf"], "--lr", "finite"),
    (["train", "--lr", "nan"], "--lr", "finite"),
    (["train", "--lr=-inf"], "--lr", "finite"),
    (["train", "--lr", "1e400"], "--lr", "finite"),
    (["train", "--weight-decay", "nan"], "--weight-decay", "finite"),
    (["train", "--epochs", "0"], "--epochs", ">= 1"),
    (["train", "--epochs", "1000000"], "--epochs", "<= 10000"),
    (["train", "--batch-size", "10000000"], "--batch-size", "<="),
    (["train", "--seed", "-1"], "--seed", ">= 0"),
    (["train", "--seed", str(SEED_MAX + 1)], "--seed", "<="),
    (["train", "--threads", "100000"], "--threads", "<="),
    (["train", "--warmup", "-1"], "--warmup", ">= 0"),
    (["encode", "-T", "0"], "--T", ">= 1"),
    (["encode", "--seed", "-3"], "--seed", ">= 0"),
    (["features", "--batch-size", "1000000"], "--batch-size", "<="),
    (["features", "--limit", "0"], "--limit", ">= 1"),
    (["export", "--samples", "-5"], "--samples", ">= 1"),
    (["export", "--samples", "0"], "--samples", ">= 1"),
    (["export", "--samples", str(SAMPLES_MAX + 1)], "--samples", "<="),
    (["export", "--samples", "some"], "--samples", "expected an integer"),
    (["export", "--min-agreement", "1.5"], "--min-agreement", "<= 1"),
    (["export", "--min-agreement", "nan"], "--min-agreement", "finite"),
    (["report", "--samples", "0"], "--samples", ">= 1"),
    (["report", "--samples", "-1"], "--samples", ">= 1"),
    (["demo", "--seed", "-1"], "--seed", ">= 0"),
    (["data", "synth", "--n", "10000000"], "--n", "<="),
    (["data", "synth", "--width", "100000"], "--width", "<="),
    (["data", "import", "--split", "nan", "0.5", "0.5"], "--split", "finite"),
    (["data", "import", "--split", "inf", "0", "0"], "--split", "finite"),
    (["data", "import", "--split", "1.5", "-0.25", "-0.25"], "--split", "[0, 1]"),
    (["data", "import", "--workers", "0"], "--workers", ">= 1"),
    (["data", "import", "--image-size", "100000", "8"], "--image-size", "<="),
    (["data", "download", "--csv", "x.csv", "--timeout", "inf"], "--timeout", "finite"),
    (["data", "download", "--csv", "x.csv", "--timeout", "0"], "--timeout", "> 0"),
    (["data", "download", "--csv", "x.csv", "--retries", "1000"], "--retries", "<="),
]


@pytest.mark.parametrize("argv, flag, needle", BAD_FLAGS, ids=[" ".join(a) for a, _, _ in BAD_FLAGS])
def test_out_of_range_numbers_are_one_line_usage_errors(tmp_path, capsys, argv, flag, needle):
    ws = tmp_path / "ws"
    assert _run([*argv, "-w", str(ws)]) == 2
    _one_line_error(capsys, flag, needle)
    assert not ws.exists()


def test_encode_steps_bound_says_what_it_would_take(tmp_path, capsys):
    assert _run(["encode", "-w", str(tmp_path), "-T", "100000"]) == 2
    line = _one_line_error(capsys, "T=100000 would need about", "GB", f"the maximum is {T_MAX}")
    assert "426 GB" in line
    assert _parse(["encode", "-T", str(T_MAX)]).T == T_MAX


def test_samples_take_all_explicitly(tmp_path):
    assert _parse(["export", "--samples", "all"]).samples == SAMPLES_MAX
    assert _parse(["report", "--samples", "ALL"]).samples == SAMPLES_MAX
    assert _parse(["export", "--samples", "3"]).samples == 3
    assert _parse(["export"]).samples is None  # None: the per-target default
    assert _parse(["report"]).samples is None  # None: use the sample count the nir bundles' op counts hold


def test_same_bounds_apply_to_config_values(tmp_path, capsys):
    cfg = tmp_path / "c.yaml"
    for text, flag in (("export:\n  samples: 0\n", "--samples"), ("report:\n  samples: -2\n", "--samples"),
                       ("encode:\n  T: 100000\n", "--T"), ("train:\n  lr: .inf\n", "--lr")):
        cfg.write_text(text)
        command = text.split(":", 1)[0]
        assert _run([command, "-w", str(tmp_path / "ws"), "-c", str(cfg)]) == 2
        _one_line_error(capsys, f"argument {flag}")


def _leaf_parsers(parser: argparse.ArgumentParser):
    subs = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    if not subs:
        yield parser
        return
    for sub in subs:
        for child in sub.choices.values():
            yield from _leaf_parsers(child)


def test_no_numeric_option_without_a_range():
    """No bare int/float left: every typed option refuses NaN, infinities and absurd sizes."""
    checked = 0
    for leaf in _leaf_parsers(build_parser()):
        for action in leaf._actions:
            if action.type is None or getattr(action.type, "__name__", "") == "_kv":
                continue
            assert action.type not in (int, float), f"{leaf.prog} {action.option_strings}: bare {action.type}"
            for bad in ("nan", "inf", "-inf", "1e12", "1000000000000", "-1000000000000"):
                with pytest.raises(argparse.ArgumentTypeError):
                    action.type(bad)
            checked += 1
    assert checked >= 30


# ------------------------------------------------------------------------ kaggle import faults

def test_bom_csv_imports_and_records_the_encoding(raw, tmp_path, capsys):
    text = (raw / "MovieGenre.csv").read_bytes().decode("latin-1")
    (raw / "MovieGenre.csv").write_bytes(b"\xef\xbb\xbf" + text.encode("utf-8"))
    before = _snapshot(raw)
    ws = tmp_path / "ws"
    assert _run(["data", "import", "-w", str(ws), "--csv", str(raw / "MovieGenre.csv")]) == 0
    assert "rows read 12, kept 12" in capsys.readouterr().out
    rep = json.loads((ws / "datasets" / "default" / "data_report.json").read_text())
    assert rep["csv_encoding"] == "utf-8" and rep["csv_bom"] is True
    _assert_unchanged(before, raw)


@pytest.mark.parametrize("codec, name, bom", [("utf-16", "utf-16-le", True), ("utf-16-be", "utf-16-be", False),
                                              ("utf-32", "utf-32-le", True)])
def test_utf16_csv_is_read(raw, tmp_path, capsys, codec, name, bom):
    text = (raw / "MovieGenre.csv").read_bytes().decode("latin-1")
    (raw / "MovieGenre.csv").write_bytes(text.encode(codec))
    ws = tmp_path / "ws"
    assert _run(["data", "import", "-w", str(ws), "--csv", str(raw / "MovieGenre.csv")]) == 0
    rep = json.loads((ws / "datasets" / "default" / "data_report.json").read_text())
    assert (rep["csv_encoding"], rep["csv_bom"], rep["rows_kept"]) == (name, bom, 12)
    # the titles decode to the same text as the latin-1 original
    latin = tmp_path / "ws2"
    raw2 = tmp_path / "raw2"
    shutil.copytree(raw, raw2)
    (raw2 / "MovieGenre.csv").write_bytes(text.encode("latin-1"))
    assert _run(["data", "import", "-w", str(latin), "--csv", str(raw2 / "MovieGenre.csv")]) == 0
    a = (ws / "datasets" / "default" / "items.csv").read_text(encoding="utf-8")
    b = (latin / "datasets" / "default" / "items.csv").read_text(encoding="utf-8")
    assert a == b


def test_utf16_with_a_broken_byte_order_is_refused_naming_the_encoding(raw, tmp_path, capsys):
    (raw / "MovieGenre.csv").write_bytes(b"\xff\xfe" + "imdbId,".encode("utf-16-le") + b"\x00\xd8\x41")
    before = _snapshot(raw)
    assert _run(["data", "import", "-w", str(tmp_path / "ws"), "--csv", str(raw / "MovieGenre.csv")]) == 1
    _one_line_error(capsys, "UTF-16-LE", "iconv")
    _assert_unchanged(before, raw)


def test_dangling_symlink_is_a_counted_skip(raw, tmp_path, capsys):
    ids = _ids(raw)
    (raw / "posters" / f"{ids[0]}.jpg").unlink()
    (raw / "posters" / f"{ids[0]}.jpg").symlink_to(raw / "posters" / "gone.jpg")
    (raw / "posters" / f"{ids[1]}.jpg").unlink()
    (raw / "posters" / f"{ids[1]}.jpg").symlink_to(raw / "posters" / f"{ids[1]}.jpg")  # a loop
    before = _snapshot(raw)
    ws = tmp_path / "ws"
    assert _run(["data", "import", "-w", str(ws), "--csv", str(raw / "MovieGenre.csv")]) == 0
    out = capsys.readouterr().out
    assert "rows read 12, kept 10, skipped 2" in out and "poster_dangling_symlink 2" in out
    rep = json.loads((ws / "datasets" / "default" / "data_report.json").read_text())
    assert rep["skipped"]["poster_dangling_symlink"]["count"] == 2
    assert sorted(rep["skipped"]["poster_dangling_symlink"]["examples"]) == sorted(int(i) for i in ids[:2])
    _assert_unchanged(before, raw)


# ------------------------------------------------------------------------------------- splits

def _tiny_raw(raw: Path, n: int) -> Path:
    lines = (raw / "MovieGenre.csv").read_bytes().split(b"\n")
    (raw / "MovieGenre.csv").write_bytes(b"\n".join(lines[: n + 1]) + b"\n")
    return raw / "MovieGenre.csv"


def test_too_small_for_the_split_says_how_many_and_the_minimum(raw, tmp_path, capsys):
    ws = tmp_path / "ws"
    assert _run(["data", "import", "-w", str(ws), "--csv", str(raw / "MovieGenre.csv")]) == 0
    capsys.readouterr()
    csv = _tiny_raw(raw, 2)
    before = _snapshot(tmp_path)
    assert _run(["data", "import", "-w", str(ws), "--csv", str(csv), "--force"]) == 1
    _one_line_error(capsys, "the dataset has 2 usable posters",
                    "splitting train/val/test 0.7/0.15/0.15 needs at least 3 (one per non-empty split)")
    _assert_unchanged(before, tmp_path)  # the previous dataset and the inputs are untouched
    assert _run(["data", "import", "-w", str(ws), "--csv", str(csv), "--split", "0.5", "0.5", "0", "--force"]) == 0


def test_every_non_zero_split_gets_a_poster(raw, tmp_path):
    csv = _tiny_raw(raw, 4)
    ws = tmp_path / "ws"
    for split in (["0.9", "0.05", "0.05"], ["0.34", "0.33", "0.33"], ["0.98", "0", "0.02"]):
        assert _run(["data", "import", "-w", str(ws), "--csv", str(csv), "--split", *split, "--force"]) == 0
        sizes = json.loads((ws / "datasets" / "default" / "data_report.json").read_text())["split_sizes"]
        assert [sizes[s] > 0 for s in ("train", "val", "test")] == [float(f) > 0 for f in split], (split, sizes)


@pytest.mark.parametrize("split, needle", [(["0.5", "0.3", "0.3"], "sum to 1"), (["0", "0.5", "0.5"], "train > 0")])
def test_bad_fractions_are_usage_errors(tmp_path, capsys, split, needle):
    assert _run(["data", "import", "-w", str(tmp_path / "ws"), "--split", *split]) == 2
    _one_line_error(capsys, needle)
    assert not (tmp_path / "ws" / "datasets").exists()


# --------------------------------------------------------------------------- poster contents

def test_import_records_poster_hashes_and_verify_poster_catches_changes(raw, tmp_path):
    from neuroposter.data import load_dataset
    from neuroposter.data.dataset import verify_poster
    from neuroposter.errors import ManifestError

    ws = tmp_path / "ws"
    assert _run(["data", "import", "-w", str(ws), "--csv", str(raw / "MovieGenre.csv")]) == 0
    ds = load_dataset(ws / "datasets" / "default")
    for i in range(len(ds)):
        path = ds.poster_path(i)
        assert ds.poster_sha256(i) == hashlib.sha256(path.read_bytes()).hexdigest()
        assert verify_poster(path, ds.poster_sha256(i)) == path.read_bytes()
    victim = ds.poster_path(0)
    victim.write_bytes(ds.poster_path(1).read_bytes())
    with pytest.raises(ManifestError) as exc:
        ds.verify_poster(0)
    msg = str(exc.value)
    assert "\n" not in msg and str(victim) in msg and "neuroposter data import" in msg and "changed" in msg
    with pytest.raises(ManifestError):
        ds.load_image(0, verify=True)
    assert ds.load_image(1, verify=True).size == ds.load_image(1).size
