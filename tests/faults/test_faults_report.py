"""Fault tests of `neuroposter report`, end to end through the CLI on a tiny real workspace.

The workspace (24 synthetic posters, an SDT and its ANN twin trained one epoch, a NIR and an ONNX bundle and a
refused xylo bundle, all recorded in ``workspace/exports.json``) is built once per session; every test works on
its own copy. What is checked: unsafe report names and re-runs without --force are usage errors that change
nothing; bundles are found from any current folder and after the workspace and its exports are moved (same
numbers); junk and missing inputs are warnings, never models; stale and edited bundles are refused with the
command that rebuilds them; a second writer of the same report gets a one-line busy error.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pandas as pd
import pytest

from neuroposter.cli import main

pytestmark = pytest.mark.slow

# A cheap report: no DenseNet-169 front end, no latency measurement, two profiles; the SNN's stored counts must
# be the two-sample ones its nir bundle was exported with (`--opt count_samples=2`).
REPORT = ["report", "--no-frontend", "--no-latency", "--samples", "2", "--profiles", "loihi", "truenorth"]
# Files that are not part of any artifact's content: verification caches and lock files.
_NOT_CONTENT = (".verified.json",)


def _cli(*argv: str) -> int:
    return main(list(argv))


@pytest.fixture(scope="session")
def built(tmp_path_factory) -> Path:
    """``<base>/workspace`` + ``<base>/export``, built through the CLI from ``<base>``."""
    base = tmp_path_factory.mktemp("faults-report")
    old = os.getcwd()
    os.environ.setdefault("NEUROPOSTER_NO_PROGRESS", "1")
    os.chdir(base)
    try:
        for argv in (["data", "synth", "--n", "24"], ["data", "import"], ["features"], ["encode"],
                     ["train", "--model", "sdt", "--epochs", "1"],
                     ["train", "--model", "ann-transformer", "--epochs", "1"],
                     ["export", "--target", "nir", "--run", "sdt", "--samples", "2", "--opt", "count_samples=2"],
                     ["export", "--target", "onnx", "--run", "ann-transformer", "--samples", "2"]):
            assert _cli(*argv) == 0, argv
        _cli("export", "--target", "xylo", "--run", "sdt", "--samples", "2")   # a refusal: a verdict all the same
    finally:
        os.chdir(old)
    assert (base / "workspace" / "exports.json").is_file()
    return base


@pytest.fixture
def proj(built, tmp_path, monkeypatch) -> Path:
    """A copy of the built project; the current folder is the project's root."""
    dst = tmp_path / "proj"
    shutil.copytree(built, dst, symlinks=True)
    monkeypatch.chdir(dst)
    return dst


def _snapshot(root: Path) -> dict[str, str]:
    """relpath -> sha256 of every content file under ``root`` (workspace and export folders)."""
    out = {}
    for dirpath, _, files in os.walk(root):
        for f in files:
            if f in _NOT_CONTENT or f.endswith(".lock"):
                continue
            p = Path(dirpath) / f
            out[os.path.relpath(p, root)] = hashlib.sha256(p.read_bytes()).hexdigest()
    return out


def _error(capsys) -> str:
    err = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert len(err) == 1, err
    assert err[0].startswith("neuroposter: error: "), err[0]
    return err[0]


def _numbers(report_dir: Path) -> pd.DataFrame:
    e = pd.read_csv(report_dir / "energy.csv")
    return e[["run", "evaluation", "component", "energy_mj", "low_mj", "high_mj", "available"]].sort_values(
        ["run", "evaluation", "component"]).reset_index(drop=True)


def _verdicts(report_dir: Path) -> dict[str, str]:
    prov = pd.read_csv(report_dir / "provenance.csv")
    rows = prov[prov["item"].str.startswith("bundle ")]
    return dict(zip(rows["item"], rows["note"]))


def test_unsafe_report_names_are_refused_and_change_nothing(proj, capsys):
    before = _snapshot(proj)
    # `.` and `..` are not names; a path to the workspace or its runs is not a report: never replaced, even
    # with --force
    for name, force in ((".", False), (".", True), ("..", True), (str(proj / "workspace"), True),
                        ("workspace/runs", True), ("workspace/runs/sdt", True)):
        assert _cli(*REPORT, "--name", name, *(["--force"] if force else [])) == 2, name
        line = _error(capsys)
        assert "not a valid artifact name" in line or "choose another --name" in line, line
        assert _snapshot(proj) == before
    assert not (proj / "workspace" / "reports").exists() or not any((proj / "workspace" / "reports").iterdir())


def test_an_existing_report_needs_force(proj, capsys):
    assert _cli(*REPORT) == 0
    capsys.readouterr()
    before = _snapshot(proj)
    assert _cli(*REPORT) == 2
    line = _error(capsys)
    assert "already holds a report" in line and "--force" in line
    assert _snapshot(proj) == before
    assert _cli(*REPORT, "--force") == 0


def test_bundles_are_found_from_any_current_folder(proj, tmp_path, monkeypatch, capsys):
    assert _cli(*REPORT, "--name", "here") == 0
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)   # no ./export here
    assert _cli(*REPORT, "--workspace", str(proj / "workspace"), "--name", "there") == 0
    here, there = proj / "workspace" / "reports" / "here", proj / "workspace" / "reports" / "there"
    verdicts = _verdicts(here)
    assert verdicts == {"bundle nir/sdt": "fits", "bundle onnx/ann-transformer": "fits",
                        "bundle xylo/sdt": "does not fit"}
    assert _verdicts(there) == verdicts
    pd.testing.assert_frame_equal(_numbers(here), _numbers(there))
    counts = pd.read_csv(there / "provenance.csv").set_index("item").loc["counts ann-transformer", "where"]
    assert counts.startswith("ONNX bundle ")   # priced from its bundle, not from a temporary export


def test_a_moved_workspace_with_its_exports_reports_the_same(proj, tmp_path, monkeypatch, capsys):
    assert _cli(*REPORT, "--name", "before") == 0
    moved = tmp_path / "moved"
    monkeypatch.chdir(tmp_path)
    shutil.move(str(proj), str(moved))   # nothing may still point into the old place
    third = tmp_path / "third"
    third.mkdir()
    monkeypatch.chdir(third)
    assert _cli(*REPORT, "--workspace", str(moved / "workspace"), "--name", "after") == 0
    assert "missing" not in capsys.readouterr().out
    before, after = moved / "workspace" / "reports" / "before", moved / "workspace" / "reports" / "after"
    pd.testing.assert_frame_equal(_numbers(before), _numbers(after))
    assert _verdicts(after) == _verdicts(before) and len(_verdicts(after)) == 3


def test_junk_run_and_missing_bundle_are_warnings_not_models(proj, capsys):
    junk = proj / "workspace" / "runs" / "junk"
    junk.mkdir()
    (junk / "metrics.json").write_text('{"model": "sdt", "test": {"map": 0.99}, "map": 0.99}')
    shutil.rmtree(proj / "export" / "xylo" / "sdt")
    assert _cli(*REPORT) == 0
    out = capsys.readouterr().out
    assert "warning: workspace/runs/junk: no manifest.json" in out
    assert "warning: bundle" in out and "xylo/sdt is listed in" in out and "missing" in out
    report = proj / "workspace" / "reports" / "default"
    assert "junk" not in set(pd.read_csv(report / "accuracy.csv")["run"])
    assert "junk" not in set(pd.read_csv(report / "energy.csv")["run"])
    assert "bundle xylo/sdt" not in _verdicts(report)


def test_stale_bundle_is_refused_with_the_export_command(proj, capsys):
    assert _cli("train", "--model", "ann-transformer", "--epochs", "1", "--seed", "1", "--force") == 0
    capsys.readouterr()
    before = _snapshot(proj)
    assert _cli(*REPORT) == 1
    line = _error(capsys)
    assert "onnx/ann-transformer is stale" in line
    assert "neuroposter export --target onnx --run ann-transformer --force" in line
    assert _snapshot(proj) == before and not (proj / "workspace" / "reports" / "default").exists()
    # rebuilding the bundle as told makes the report work again
    assert _cli("export", "--target", "onnx", "--run", "ann-transformer", "--samples", "2", "--force") == 0
    assert _cli(*REPORT) == 0


@pytest.mark.parametrize("name,same_size", [("graph.nir", False), ("graph.nir", True), ("op_counts.json", True)])
def test_edited_bundle_file_is_refused(proj, capsys, name, same_size):
    graph = proj / "export" / "nir" / "sdt" / name   # the stored op counts are hashed like the graph
    data = bytearray(graph.read_bytes())
    if same_size:
        data[len(data) // 2] ^= 0xFF
    else:
        data += b"\0"
    graph.write_bytes(bytes(data))
    before = _snapshot(proj)
    assert _cli(*REPORT) == 1
    line = _error(capsys)
    assert name in line and "changed" in line
    assert "neuroposter export --target nir --run sdt --force" in line
    assert _snapshot(proj) == before and not (proj / "workspace" / "reports" / "default").exists()


def test_counts_come_from_the_bundles_and_samples_are_checked(proj, capsys):
    """The report reads the counts the exports stored (it exports and simulates nothing); --samples must match
    them, and a run without its bundle is a warning naming the export command."""
    assert _cli(*REPORT) == 0
    report = proj / "workspace" / "reports" / "default"
    prov = pd.read_csv(report / "provenance.csv").set_index("item")
    assert prov.loc["counts sdt", "where"].startswith("NIR lowering of sdt simulated on 2 test samples")
    capsys.readouterr()
    before = _snapshot(proj)
    assert _cli(*[a if a != "2" else "3" for a in REPORT], "--name", "three") == 2
    line = _error(capsys)
    assert "made on 2 test samples, not the 3 asked for" in line and "--opt count_samples=3" in line
    assert _snapshot(proj) == before
    shutil.rmtree(proj / "export" / "nir" / "sdt")
    assert _cli(*REPORT, "--name", "gone") == 0
    out = capsys.readouterr().out
    assert "warning: sdt: no op counts" in out and "neuroposter export --target nir --run sdt" in out


def test_a_second_writer_of_the_same_report_is_told_it_is_busy(proj, capsys):
    target = proj / "workspace" / "reports" / "default"
    holder = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(f"""
            import sys, time
            from neuroposter.artifact import artifact_lock
            with artifact_lock({str(target)!r}):
                print("locked", flush=True)
                sys.stdin.read()
        """)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        before = _snapshot(proj)
        assert _cli(*REPORT) == 1
        line = _error(capsys)
        assert "being written by another neuroposter process" in line and "reports/default" in line
        assert _snapshot(proj) == before and not target.exists()
    finally:
        holder.stdin.close()
        holder.wait(timeout=30)
    assert _cli(*REPORT) == 0   # the lock dies with its holder
