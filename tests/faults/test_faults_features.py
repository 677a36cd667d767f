"""Faults around `features`, `encode` and `data synth`, end to end through the CLI.

Names and paths that would destroy data, existing artifacts without --force, a second writer,
changed inputs (a zeroed feature file, an edited poster) and a full disk: every one ends in exit
code 1 or 2 with ONE line `neuroposter: error: ...` naming the problem, and every file that existed
before hashes the same after.
"""

from __future__ import annotations

import errno
import hashlib
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from neuroposter.cli import main

# 24 small posters (96x64 -> a 3x2 token grid): the whole pipeline up to `encode` in a few seconds.
_SYNTH = ["--n", "24", "--width", "64", "--height", "96"]
_IMPORT = ["--image-size", "96", "64"]
_FEATURES = ["--weights", "random", "--batch-size", "8"]
_ENCODE = ["--T", "2", "--no-probe"]


def _cli(argv: list[str]) -> int:
    """Runs the CLI in-process; argparse's own usage errors (SystemExit) count as their exit code."""
    try:
        return main([str(a) for a in argv])
    except SystemExit as exc:  # pragma: no cover - depends on which checks argparse does itself
        return int(exc.code or 0)


def _build(ws: Path) -> None:
    for argv in (["data", "synth", "-w", ws, *_SYNTH], ["data", "import", "-w", ws, *_IMPORT],
                 ["features", "-w", ws, *_FEATURES], ["encode", "-w", ws, *_ENCODE]):
        assert _cli(argv) == 0, argv


@pytest.fixture(scope="session")
def built_ws(tmp_path_factory) -> Path:
    """A workspace with raw/synth, datasets/default, features/default and encoded/default (built once)."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("NEUROPOSTER_NO_PROGRESS", "1")
        mp.setenv("NEUROPOSTER_OFFLINE", "1")
        ws = tmp_path_factory.mktemp("faults_features") / "ws"
        _build(ws)
    return ws


@pytest.fixture
def ws(built_ws, tmp_path, monkeypatch, capsys) -> Path:
    """A private copy of the built workspace at ``tmp_path/ws``; the current folder is ``tmp_path``."""
    monkeypatch.setenv("NEUROPOSTER_NO_PROGRESS", "1")
    monkeypatch.setenv("NEUROPOSTER_OFFLINE", "1")
    monkeypatch.setenv("NEUROPOSTER_VERIFY", "")  # restored after the test (main(--verify) sets it)
    monkeypatch.chdir(tmp_path)
    dst = tmp_path / "ws"
    shutil.copytree(built_ws, dst, symlinks=True)
    capsys.readouterr()
    return dst


def _snapshot(root: Path) -> dict[str, str]:
    """relpath -> sha256 of every file under ``root``."""
    return {p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file() and not p.is_symlink()}


def _assert_unchanged(before: dict[str, str], root: Path) -> None:
    """Every file of ``before`` hashes the same; nothing new except lock files."""
    after = _snapshot(root)
    changed = sorted(k for k, v in before.items() if after.get(k) != v)
    new = sorted(k for k in after if k not in before and not k.rsplit("/", 1)[-1].endswith(".lock"))
    assert not changed, f"changed or removed: {changed}"
    assert not new, f"left behind: {new}"


def _one_line(capsys, *needles: str) -> str:
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, err
    assert lines[0].startswith("neuroposter: error: "), lines[0]
    for needle in needles:
        assert needle in lines[0], (needle, lines[0])
    return lines[0]


def _refused(argv: list, code: int, capsys, root: Path, *needles: str) -> str:
    before = _snapshot(root)
    assert _cli(argv) == code
    line = _one_line(capsys, *needles)
    _assert_unchanged(before, root)
    return line


# -- names and paths that would destroy data -----------------------------------------------------


@pytest.mark.parametrize("name", [".", "..", ""])
def test_features_name_that_is_not_a_name_is_refused_even_with_force(ws, tmp_path, capsys, name):
    _refused(["features", "-w", ws, "--name", name, "--force", *_FEATURES], 2, capsys, tmp_path,
             "not a valid artifact name")


@pytest.mark.parametrize("target, needle", [
    ("ws", "an input of this command"),                         # the workspace holds the dataset
    (".", "an input of this command"),                          # the current folder holds the workspace
    ("ws/datasets/default", "an input of this command"),
    ("ws/raw", "not a neuroposter features"),
    ("ws/raw/synth", "holds a raw artifact"),
    ("ws/encoded/default", "holds an encoded artifact"),
    ("ws/features/default/sub", "lies inside the features artifact"),
])
def test_features_path_naming_other_data_is_refused_even_with_force(ws, tmp_path, capsys, target, needle):
    path = str(tmp_path / target) if target != "." else "./"
    line = _refused(["features", "-w", ws, "--name", path, "--force", *_FEATURES], 2, capsys, tmp_path, needle)
    assert "choose another --name" in line


@pytest.mark.parametrize("name", [".", ".."])
def test_encode_name_that_is_not_a_name_is_refused(ws, tmp_path, capsys, name):
    _refused(["encode", "-w", ws, "--name", name, *_ENCODE], 2, capsys, tmp_path, "not a valid artifact name")


@pytest.mark.parametrize("target, needle", [
    ("ws/raw/synth", "holds a raw artifact"),
    ("ws/raw", "not a neuroposter encoded"),
    ("ws/features/default", "an input of this command"),
    ("ws", "an input of this command"),
    ("ws/datasets/default", "holds a dataset artifact"),
])
@pytest.mark.parametrize("force", [False, True])
def test_encode_path_naming_other_data_is_refused(ws, tmp_path, capsys, target, needle, force):
    argv = ["encode", "-w", ws, "--name", tmp_path / target, *_ENCODE] + (["--force"] if force else [])
    _refused(argv, 2, capsys, tmp_path, needle)


def test_synth_out_naming_other_data_is_refused_even_with_force(ws, tmp_path, capsys):
    for target, needle in (("ws/datasets/default", "holds a dataset artifact"), ("ws", "not a neuroposter raw"),
                           ("ws/features/default", "holds a features artifact")):
        _refused(["data", "synth", "-w", ws, *_SYNTH, "--out", tmp_path / target, "--force"], 2, capsys, tmp_path,
                 needle, "--out")


# -- existing artifacts: up to date, or replaced only with --force -------------------------------


def test_existing_artifacts_are_replaced_only_with_force(ws, tmp_path, capsys):
    _refused(["features", "-w", ws, "--weights", "random:1"], 2, capsys, tmp_path,
             "already holds features from different inputs", "--force")
    _refused(["encode", "-w", ws, "--T", "3", "--no-probe"], 2, capsys, tmp_path,
             "already holds an encoded set", "T 2 -> 3", "--force")
    _refused(["data", "synth", "-w", ws, *_SYNTH], 2, capsys, tmp_path, "already holds a raw", "--force")
    # the same inputs again: nothing to do, nothing touched
    before = _snapshot(tmp_path)
    assert _cli(["features", "-w", ws, *_FEATURES]) == 0
    assert _cli(["encode", "-w", ws, *_ENCODE]) == 0
    out = capsys.readouterr().out
    assert out.count("up to date") == 2
    _assert_unchanged(before, tmp_path)


def test_force_rebuilds_with_a_manifest_covering_every_final_file(ws, capsys):
    from neuroposter.manifest import require_manifest

    store = ws / "features" / "default"
    old = (store / "pooled.npy").read_bytes()
    assert _cli(["features", "-w", ws, "--force", "--weights", "random:1", "--batch-size", "8"]) == 0
    assert _cli(["encode", "-w", ws, "--force", *_ENCODE]) == 0
    capsys.readouterr()
    assert (store / "pooled.npy").read_bytes() != old
    for folder, kind in ((store, "features"), (ws / "encoded" / "default", "encoded")):
        files = {p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file()}
        m = require_manifest(folder, kind, rerun="x")
        assert set(m["files"]) == files - {"manifest.json", ".verified.json"}
        assert "resolved_config.yaml" in m["files"] and "progress.json" not in files
    assert not list(ws.rglob("*.partial")) and not list(ws.rglob("*.tmp"))


# -- a second writer -----------------------------------------------------------------------------


def _hold_lock(path: Path) -> subprocess.Popen:
    """A separate process that holds the artifact lock of ``path`` until its stdin closes."""
    code = textwrap.dedent(f"""
        import sys
        from neuroposter.artifact import artifact_lock
        with artifact_lock({str(path)!r}):
            print("locked", flush=True)
            sys.stdin.read()
    """)
    proc = subprocess.Popen([sys.executable, "-c", code], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "locked"
    return proc


@pytest.mark.parametrize("what", ["features", "encode", "synth"])
def test_second_writer_fails_at_once(ws, tmp_path, capsys, what):
    target, argv = {
        "features": (ws / "features" / "default", ["features", "-w", ws, "--force", *_FEATURES]),
        "encode": (ws / "encoded" / "default", ["encode", "-w", ws, "--force", *_ENCODE]),
        "synth": (ws / "raw" / "synth", ["data", "synth", "-w", ws, "--force", *_SYNTH]),
    }[what]
    proc = _hold_lock(target)
    try:
        _refused(argv, 1, capsys, tmp_path, str(target), "being written by another neuroposter process")
    finally:
        proc.stdin.close()
        proc.wait(timeout=30)
    assert _cli(argv) == 0  # once the other writer is gone


# -- changed inputs ------------------------------------------------------------------------------


def _zero_data(path: Path) -> None:
    """Zeroes the array data of a .npy file (same size, same header)."""
    arr = np.load(path, mmap_mode="r+")
    arr[...] = 0
    arr.flush()
    del arr


def test_zeroed_pooled_features_are_refused_by_encode(ws, tmp_path, capsys):
    pooled = ws / "features" / "default" / "pooled.npy"
    _zero_data(pooled)
    line = _refused(["encode", "-w", ws, "--name", "other", *_ENCODE], 1, capsys, tmp_path,
                    "pooled.npy has changed since it was written", "neuroposter features --force")
    assert str(pooled) in line
    # `features` does not take a changed store for up to date either
    _refused(["features", "-w", ws, *_FEATURES], 1, capsys, tmp_path, "pooled.npy has changed",
             "neuroposter features --force")


def test_modified_features_with_the_same_size_and_time_are_refused_with_verify(ws, tmp_path, capsys):
    tokens = ws / "features" / "default" / "tokens.npy"
    st = tokens.stat()
    with open(tokens, "r+b") as fh:
        fh.seek(st.st_size - 2)
        fh.write(b"\x12\x34")
    os.utime(tokens, ns=(st.st_atime_ns, st.st_mtime_ns))
    _refused(["encode", "-w", ws, "--name", "other", "--verify", *_ENCODE], 1, capsys, tmp_path,
             "tokens.npy has changed since it was written", "neuroposter features --force")


@pytest.fixture
def fresh_ws(tmp_path, monkeypatch, capsys) -> Path:
    """A workspace of its own (its dataset points at its own posters), imported, no features yet."""
    monkeypatch.setenv("NEUROPOSTER_NO_PROGRESS", "1")
    monkeypatch.setenv("NEUROPOSTER_OFFLINE", "1")
    monkeypatch.chdir(tmp_path)
    ws = tmp_path / "ws"
    for argv in (["data", "synth", "-w", ws, *_SYNTH], ["data", "import", "-w", ws, *_IMPORT]):
        assert _cli(argv) == 0, argv
    capsys.readouterr()
    return ws


def test_edited_poster_is_refused_by_features(fresh_ws, tmp_path, capsys):
    from neuroposter.data import load_dataset

    ds = load_dataset(fresh_ws / "datasets" / "default")
    if not callable(getattr(ds, "verify_poster", None)):  # pragma: no cover - older dataset module
        pytest.skip("the dataset module records no poster hashes")
    poster = ds.poster_path(int(ds.indices("all")[0]))
    data = bytearray(poster.read_bytes())
    data[len(data) // 2] ^= 0xFF  # one flipped byte in the middle of the JPEG
    poster.write_bytes(bytes(data))
    line = _refused(["features", "-w", fresh_ws, "--force", *_FEATURES], 1, capsys, tmp_path,
                    "has changed since the import", "neuroposter data import")
    assert poster.name in line
    assert not (fresh_ws / "features" / ".default.partial").exists()


# -- a full disk ---------------------------------------------------------------------------------


def test_too_little_free_space_is_refused_before_writing(ws, tmp_path, capsys, monkeypatch):
    real = shutil.disk_usage

    def little(path):
        u = real(path)
        return type(u)(u.total, u.total - 4096, 4096)

    monkeypatch.setattr(shutil, "disk_usage", little)
    for argv in (["features", "-w", ws, "--force", *_FEATURES], ["data", "synth", "-w", ws, "--force", *_SYNTH]):
        line = _refused(argv, 1, capsys, tmp_path, "no space left on device", "MB needed")
        assert str(ws) in line


def test_full_disk_while_reserving_the_store_leaves_nothing(ws, tmp_path, capsys, monkeypatch):
    def full(fd, offset, length):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(os, "posix_fallocate", full)
    _refused(["features", "-w", ws, "--force", *_FEATURES], 1, capsys, tmp_path,
             f"no space left on device: {ws / 'features' / 'default'} (about", "MB needed")
    assert not (ws / "features" / ".default.partial").exists()


def _tmpfs_works(mnt: Path) -> str | None:
    """None when `unshare -rm` + a tmpfs mount work here, else why not."""
    if shutil.which("unshare") is None:
        return "no `unshare` on this machine"
    try:
        r = subprocess.run(["unshare", "-rm", "sh", "-c", f"mount -t tmpfs -o size=64k tmpfs '{mnt}'"],
                           capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"unshare failed: {exc}"
    if r.returncode != 0:
        return f"cannot mount a tmpfs in a user+mount namespace here: {r.stderr.strip() or r.returncode}"
    return None


def test_full_disk_on_a_real_tiny_tmpfs(ws, tmp_path):
    mnt = tmp_path / "tiny"
    mnt.mkdir()
    why = _tmpfs_works(mnt)
    if why:
        pytest.skip(why)
    before = _snapshot(ws)
    # the store needs about 0.6 MB; the tmpfs holds 256 KiB. The mount lives only as long as the shell,
    # so what is left on it is listed from inside.
    script = ('mount -t tmpfs -o size=256k tmpfs "$1" || exit 99; '
              '"$2" -m neuroposter features -w "$3" --name "$1/feat" --weights random --batch-size 8; rc=$?; '
              'echo "LEFT:$(ls -A "$1" | tr "\\n" " ")" >&2; exit $rc')
    env = {**os.environ, "NEUROPOSTER_NO_PROGRESS": "1", "NEUROPOSTER_OFFLINE": "1"}
    r = subprocess.run(["unshare", "-rm", "sh", "-c", script, "sh", str(mnt), sys.executable, str(ws)],
                       capture_output=True, text=True, timeout=300, env=env, cwd=tmp_path)
    assert r.returncode == 1, r.stderr
    lines = [line for line in r.stderr.splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith("neuroposter: error:")]
    assert len(errors) == 1 and f"no space left on device: {mnt}/feat (about" in errors[0], r.stderr
    assert "Traceback" not in r.stderr
    left = [line for line in lines if line.startswith("LEFT:")][0][5:].split()
    assert all(name.endswith(".lock") for name in left), left  # no .tmp, no .partial, no half store
    _assert_unchanged(before, ws)


# -- a moved workspace ---------------------------------------------------------------------------


def test_moved_workspace_reads_its_own_inputs(ws, tmp_path, capsys):
    """The copy is a moved workspace: encode reads the copy's store, which finds the copy's dataset."""
    from neuroposter.features import open_store
    from neuroposter.manifest import input_path, read_manifest

    moved = tmp_path / "elsewhere" / "ws2"
    moved.parent.mkdir()
    ws.rename(moved)
    assert _cli(["encode", "-w", moved, "--name", "again", *_ENCODE]) == 0
    capsys.readouterr()
    enc = moved / "encoded" / "again"
    assert input_path(enc, read_manifest(enc), "features") == moved / "features" / "default"
    assert open_store(moved / "features" / "default").dataset_path == moved / "datasets" / "default"
