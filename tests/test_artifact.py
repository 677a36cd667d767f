"""Artifact writing: safe names, destinations that are never destroyed, locks, failed results, hashes."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from neuroposter._io import atomic_write_text, sha256_file
from neuroposter.artifact import (artifact_lock, check_destination, check_name, failed_path, reject,
                                  write_artifact)
from neuroposter.errors import ArtifactBusyError, ManifestError, UsageError
from neuroposter.manifest import input_path, read_manifest, require_manifest, write_manifest


def _write(path: Path, kind: str = "run", text: str = "x", **kw) -> None:
    with write_artifact(path, kind, **kw) as tmp:
        atomic_write_text(tmp / "a.txt", text)
        (tmp / "sub").mkdir()
        atomic_write_text(tmp / "sub" / "b.txt", text * 2)
        write_manifest(tmp, kind)


@pytest.mark.parametrize("bad", ["", ".", "..", "a/b", ".hidden", "-x", "x.tmp", "x.failed", "a b", "é", "x" * 129])
def test_unsafe_names_are_usage_errors(bad):
    with pytest.raises(UsageError, match="not a valid artifact name"):
        check_name(bad)


@pytest.mark.parametrize("good", ["sdt", "sdt-seed1", "a.b_c+d", "0"])
def test_safe_names_pass(good):
    assert check_name(good) == good


def test_write_then_files_are_hashed_and_verified(tmp_path):
    out = tmp_path / "runs" / "r"
    _write(out)
    m = read_manifest(out)
    assert set(m["files"]) == {"a.txt", os.path.join("sub", "b.txt")}
    assert m["files"]["a.txt"]["sha256"] == sha256_file(out / "a.txt")
    require_manifest(out, "run", rerun="again")
    (out / "sub" / "b.txt").write_text("yy")        # same size, other content
    with pytest.raises(ManifestError, match=r"b.txt has changed.*run `again`"):
        require_manifest(out, "run", rerun="again")


def test_cheap_mode_skips_unchanged_files_and_full_mode_rehashes(tmp_path, monkeypatch):
    out = tmp_path / "r"
    _write(out)
    st = os.stat(out / "a.txt")
    (out / "a.txt").write_text("y")                   # same size; restore the mtime: only full mode sees it
    os.utime(out / "a.txt", ns=(st.st_atime_ns, st.st_mtime_ns))
    require_manifest(out, "run", rerun="again")
    monkeypatch.setenv("NEUROPOSTER_VERIFY", "full")
    with pytest.raises(ManifestError, match="a.txt has changed"):
        require_manifest(out, "run", rerun="again")


def test_missing_file_and_legacy_manifest_are_refused(tmp_path):
    out = tmp_path / "r"
    _write(out)
    (out / "a.txt").unlink()
    with pytest.raises(ManifestError, match="a.txt is missing"):
        require_manifest(out, "run", rerun="again")
    legacy = tmp_path / "legacy"
    legacy.mkdir()
    (legacy / "manifest.json").write_text('{"kind": "run"}')
    with pytest.raises(ManifestError, match="no file hashes"):
        require_manifest(legacy, "run", rerun="again")


def test_existing_artifact_needs_force(tmp_path):
    out = tmp_path / "r"
    _write(out, text="1")
    with pytest.raises(UsageError, match="already holds a run; pass --force"):
        _write(out, text="2")
    assert (out / "a.txt").read_text() == "1"
    _write(out, text="2", force=True)
    assert (out / "a.txt").read_text() == "2"


def test_destinations_that_hold_other_things_are_never_replaced(tmp_path):
    ws = tmp_path / "ws"
    _write(ws / "runs" / "r")
    raw = tmp_path / "raw"
    raw.mkdir()
    (raw / "MovieGenre.csv").write_text("data")
    before = sha256_file(raw / "MovieGenre.csv")
    for dest, match in [(ws, "not a neuroposter"), (ws / "runs", "not a neuroposter"), (raw, "not a neuroposter"),
                        (ws / "runs" / "r", "holds a run artifact, not an export"),
                        (ws / "runs" / "r" / "inner", "inside the run artifact")]:
        with pytest.raises(UsageError, match=match):
            _write(dest, kind="export", force=True)
    assert sha256_file(raw / "MovieGenre.csv") == before
    assert read_manifest(ws / "runs" / "r")["kind"] == "run"


def test_protected_inputs_cannot_be_overwritten(tmp_path):
    run = tmp_path / "runs" / "r"
    _write(run)
    for dest in (run, tmp_path / "runs", run / "x"):
        with pytest.raises(UsageError):
            check_destination(dest, "export", force=True, protect=[run])


def test_failed_result_is_kept_beside_the_good_one(tmp_path):
    out = tmp_path / "b"
    _write(out, kind="export", text="good")
    with write_artifact(out, "export", force=True) as tmp:
        atomic_write_text(tmp / "a.txt", "bad")
        write_manifest(tmp, "export")
        reject(tmp, "agreement 0.5 < 0.99")
    assert (out / "a.txt").read_text() == "good"
    bad = failed_path(out)
    assert (bad / "a.txt").read_text() == "bad"
    assert read_manifest(bad)["status"] == "failed"
    with pytest.raises(ManifestError, match="failed export"):
        require_manifest(bad, "export", rerun="x")
    require_manifest(out, "export", rerun="x")


def test_an_exception_leaves_no_temporary_and_the_old_artifact(tmp_path):
    out = tmp_path / "r"
    _write(out, text="1")
    with pytest.raises(RuntimeError):
        with write_artifact(out, "run", force=True) as tmp:
            atomic_write_text(tmp / "a.txt", "2")
            raise RuntimeError("boom")
    assert (out / "a.txt").read_text() == "1"
    assert [p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp")] == []


def test_stale_temporaries_of_a_killed_writer_are_cleaned(tmp_path):
    out = tmp_path / "r"
    stale = tmp_path / ".r.abc12_89.tmp"
    stale.mkdir()
    (stale / "junk").write_text("j")
    other = tmp_path / ".r.b.abc12_89.tmp"      # a temporary of the artifact "r.b": not ours to remove
    other.mkdir()
    _write(out)
    assert not stale.exists() and other.exists()


def test_second_writer_fails_with_a_clear_message(tmp_path):
    out = tmp_path / "r"
    code = textwrap.dedent(f"""
        import sys, time
        from neuroposter.artifact import artifact_lock
        with artifact_lock({str(out)!r}):
            print("locked", flush=True)
            time.sleep(30)
    """)
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "locked"
        with pytest.raises(ArtifactBusyError, match="being written by another neuroposter process"):
            _write(out)
    finally:
        proc.kill()
        proc.wait()
    _write(out)   # the lock dies with its process


def test_lock_is_reentrant_in_one_process(tmp_path):
    out = tmp_path / "r"
    with artifact_lock(out):
        _write(out)
    assert (out / "a.txt").is_file()


def test_inputs_are_stored_relative_and_survive_a_move(tmp_path):
    ws = tmp_path / "ws"
    data = ws / "datasets" / "d"
    data.mkdir(parents=True)
    run = ws / "runs" / "r"
    with write_artifact(run, "run") as tmp:
        write_manifest(tmp, "run", inputs={"dataset": {"path": str(data), "key": "k"}})
    m = read_manifest(run)
    assert m["inputs"]["dataset"]["path"] == os.path.join("..", "..", "datasets", "d")
    moved = tmp_path / "elsewhere"
    os.rename(ws, moved)
    assert input_path(moved / "runs" / "r", m, "dataset") == moved / "datasets" / "d"
    require_manifest(moved / "runs" / "r", "run", rerun="x")
