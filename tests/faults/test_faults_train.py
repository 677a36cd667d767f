"""Fault tests of ``neuroposter train`` through the real CLI on a tiny workspace (issue #10).

Nothing lost: names and paths that are not a run (``.``, the workspace, a raw poster folder, a folder
of runs, an input, a folder inside a run) are refused with exit 2 whatever ``--force`` says, and
every file that was there hashes the same afterwards; an existing run is replaced only with
``--force``; a second writer of the same run fails at once. Nothing silently wrong: a swapped
checkpoint is refused by its readers; a full disk is one line and leaves no temporaries;
``--resume`` after a kill gives the uninterrupted result; ``resume: "no"`` in a config means false.

The workspace (24 synthetic posters, imported, features, pooled spikes, one snn-mlp run) is built
once per session through the CLI (about 10 s) and copied for each test; each test then takes well under
a second, except the kill-and-resume one (a subprocess and three trainings: marked slow).
"""

from __future__ import annotations

import collections
import hashlib
import os
import shutil
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
import yaml

from neuroposter.cli import main

# what the snapshot leaves out: lock files (an empty file a lock creates beside an artifact; creating
# one changes nothing) and the verification cache (re-written when a reader re-hashes a file)
_IGNORED = (".lock", ".verified.json")
TRAIN = ["train", "--model", "snn-mlp", "--epochs", "1", "--device", "cpu", "--threads", "1"]


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def snapshot(*roots: Path) -> dict[str, str]:
    """relpath -> sha256 of every file under ``roots`` (lock files and the verification cache aside)."""
    out = {}
    for root in roots:
        for p in sorted(root.rglob("*")):
            if p.is_file() and not p.name.endswith(_IGNORED):
                out[str(p.relative_to(root.parent))] = _sha(p)
    return out


def _run(capsys: pytest.CaptureFixture[str], argv: list[str]) -> tuple[int, str]:
    """``main(argv)`` -> (exit code, stderr); argparse usage errors give their SystemExit code."""
    capsys.readouterr()
    try:
        code = main(argv)
    except SystemExit as exc:
        code = int(exc.code or 0)
    return code, capsys.readouterr().err


def _one_line(err: str) -> str:
    lines = [line for line in err.strip().splitlines() if line.strip()]
    assert len(lines) == 1, err
    assert lines[0].startswith("neuroposter: error: "), lines[0]
    return lines[0]


@pytest.fixture(scope="session")
def built(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny workspace built once through the CLI: synth 24, import, features, pooled spikes, one run."""
    os.environ.setdefault("NEUROPOSTER_NO_PROGRESS", "1")
    ws = tmp_path_factory.mktemp("train_faults") / "ws"
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        for argv in (["data", "synth", "--n", "24"], ["data", "import"], ["features"],
                     ["encode", "--form", "pooled"], TRAIN):
            assert main([*argv, "--workspace", str(ws)]) == 0, argv
    finally:
        torch.set_num_threads(threads)
    return ws


@pytest.fixture
def ws(built: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A private copy of the built workspace; the current folder is ``tmp_path`` (``./export`` lands there)."""
    dst = tmp_path / "ws"
    shutil.copytree(built, dst, symlinks=True)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("NEUROPOSTER_NO_PROGRESS", "1")
    torch.set_num_threads(1)
    return dst


def _train(ws: Path, *extra: str) -> list[str]:
    return [*TRAIN, "--workspace", str(ws), *extra]


def _no_temporaries(root: Path) -> None:
    left = [p for p in root.rglob("*") if p.name.endswith((".tmp", ".old", ".part"))]
    assert not left, left


# -- nothing lost: names and paths ---------------------------------------------------------------


@pytest.mark.parametrize("force", [False, True])
@pytest.mark.parametrize("name", [".", "..", "{ws}", "{ws}/raw/synth", "{ws}/raw", "{ws}/runs", "{ws}/encoded/default",
                                  "{ws}/encoded", "{ws}/runs/snn-mlp/inner", "{ws}/datasets/default"])
def test_a_name_that_is_not_a_run_is_refused_and_destroys_nothing(
        ws: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], name: str, force: bool) -> None:
    before = snapshot(ws)
    given = name.format(ws=ws)
    code, err = _run(capsys, _train(ws, "--name", given, *(["--force"] if force else [])))
    assert code == 2, err
    line = _one_line(err)
    assert given in line and ("not a valid artifact name" in line or "choose another --name" in line), line
    assert snapshot(ws) == before
    assert not [p for p in ws.rglob("*.partial")]          # refused before any training
    _no_temporaries(tmp_path)


def test_an_existing_run_needs_force_and_force_replaces_only_it(ws: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from neuroposter.manifest import input_path, read_manifest

    run = ws / "runs" / "snn-mlp"
    before = snapshot(ws)
    code, err = _run(capsys, _train(ws, "--seed", "1"))
    assert code == 2, err
    line = _one_line(err)
    assert "already holds a run" in line and "--force" in line and "--name" in line
    assert snapshot(ws) == before and not (ws / "runs" / ".snn-mlp.partial").exists()

    code, err = _run(capsys, _train(ws, "--seed", "1", "--force"))
    assert code == 0, err
    after = snapshot(ws)
    inputs = {k: v for k, v in before.items() if not k.startswith("ws/runs/")}
    assert {k: after[k] for k in inputs} == inputs                     # the inputs are untouched
    assert after["ws/runs/snn-mlp/checkpoint.pt"] != before["ws/runs/snn-mlp/checkpoint.pt"]
    assert yaml.safe_load((run / "resolved_config.yaml").read_text())["seed"] == 1
    m = read_manifest(run)
    assert not os.path.isabs(m["inputs"]["encoded"]["path"])            # movable
    assert input_path(run, m, "encoded") == ws / "encoded" / "default"
    assert sorted(p.name for p in (ws / "runs").iterdir()) == [".snn-mlp.lock", "snn-mlp"]
    _no_temporaries(ws)


# -- one writer at a time ------------------------------------------------------------------------


@pytest.mark.parametrize("name, force", [("snn-mlp", True), ("fresh", False)])
def test_a_second_writer_of_the_same_run_fails_at_once(ws: Path, capsys: pytest.CaptureFixture[str],
                                                       name: str, force: bool) -> None:
    run = ws / "runs" / name
    holder = subprocess.Popen([sys.executable, "-c", textwrap.dedent(f"""
        import sys
        from neuroposter.artifact import artifact_lock
        with artifact_lock({str(run)!r}):
            print("locked", flush=True)
            sys.stdin.read()
        """)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "locked"
        before = snapshot(ws)
        code, err = _run(capsys, _train(ws, "--name", name, *(["--force"] if force else [])))
        assert code == 1, err
        line = _one_line(err)
        assert "being written by another neuroposter process" in line and str(run) in line
        assert snapshot(ws) == before and not (ws / "runs" / f".{name}.partial").exists()
    finally:
        holder.communicate("", timeout=60)
    # the holder is gone: the same command now goes through
    code, err = _run(capsys, _train(ws, "--name", name, *(["--force"] if force else [])))
    assert code == 0, err


# -- nothing silently wrong ----------------------------------------------------------------------


def test_a_swapped_checkpoint_is_refused_by_its_readers(ws: Path, tmp_path: Path,
                                                        capsys: pytest.CaptureFixture[str]) -> None:
    from neuroposter.errors import ManifestError
    from neuroposter.train import load_run

    ckpt = ws / "runs" / "snn-mlp" / "checkpoint.pt"
    state = torch.load(ckpt, weights_only=True)
    key = next(k for k, v in state.items() if v.is_floating_point())
    state[key] = state[key] + 0.5                 # same shapes, same size: it would load silently
    torch.save(state, ckpt)
    before = snapshot(ws)
    with pytest.raises(ManifestError, match=r"checkpoint.pt has changed since it was written.*neuroposter train"):
        load_run(ws / "runs" / "snn-mlp")
    code, err = _run(capsys, ["export", "--target", "nir", "--run", "snn-mlp", "--samples", "2",
                              "--workspace", str(ws)])
    assert code == 1, err
    line = _one_line(err)
    assert str(ckpt) in line and "has changed" in line and "neuroposter train" in line, line
    assert snapshot(ws) == before
    assert not (tmp_path / "export" / "nir" / "snn-mlp").exists()


def _full_disk(monkeypatch: pytest.MonkeyPatch, when: str) -> dict[str, bool]:
    """Simulates a disk that fills up: ``torch.save`` of a checkpoint goes to /dev/full (the real
    ENOSPC failure of torch's writer) and, from then on, the disk reports no free space.
    ``when="now"``: the disk is full from the start."""
    real_save, real_usage = torch.save, shutil.disk_usage
    state = {"full": when == "now"}

    def save(obj, f, *args, **kwargs):
        if "checkpoint.pt" in str(f):
            state["full"] = True
        if state["full"]:
            return real_save(obj, "/dev/full", *args, **kwargs)
        return real_save(obj, f, *args, **kwargs)

    def usage(path):
        u = real_usage(path)
        return collections.namedtuple("usage", "total used free")(u.total, u.total, 0) if state["full"] else u

    monkeypatch.setattr(torch, "save", save)
    monkeypatch.setattr(shutil, "disk_usage", usage)
    return state


def test_a_full_disk_while_saving_the_checkpoint_is_one_line_and_resume_finishes(
        ws: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    before = snapshot(ws)
    state = _full_disk(monkeypatch, "at the checkpoint")
    code, err = _run(capsys, _train(ws, "--name", "full"))
    assert state["full"] and code == 1, err
    line = _one_line(err)
    assert line.startswith(f"neuroposter: error: no space left on device: {ws / 'runs' / 'full' / 'checkpoint.pt'}")
    assert "inline_container" not in line and "enforce fail" not in line and "--resume" in line
    after = snapshot(ws)
    assert {k: after.get(k) for k in before} == before                 # nothing that was there changed
    assert set(after) - set(before) == {"ws/runs/.full.partial/identity.json",   # the training state alone
                                        "ws/runs/.full.partial/train_state.pt"}
    assert not (ws / "runs" / "full").exists()
    _no_temporaries(tmp_path)
    assert (ws / "runs" / ".full.partial" / "train_state.pt").is_file()   # kept for --resume
    monkeypatch.undo()
    code, err = _run(capsys, _train(ws, "--name", "full", "--resume"))
    assert code == 0, err
    assert (ws / "runs" / "full" / "checkpoint.pt").is_file() and not (ws / "runs" / ".full.partial").exists()


def test_a_full_disk_is_refused_before_training(ws: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    before = snapshot(ws)
    _full_disk(monkeypatch, "now")
    code, err = _run(capsys, _train(ws, "--name", "full"))
    assert code == 1, err
    assert _one_line(err).startswith("neuroposter: error: no space left on device: ")
    assert snapshot(ws) == before
    assert not (ws / "runs" / "full").exists() and not (ws / "runs" / ".full.partial").exists()
    _no_temporaries(tmp_path)


@pytest.mark.slow
def test_resume_after_a_kill_gives_the_uninterrupted_result(ws: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A real SIGKILL right after the second epoch's training state is saved; --resume then finishes
    it, bit for bit equal to a run that was never interrupted."""
    epochs = ["--epochs", "4", "--seed", "3"]
    script = textwrap.dedent(f"""
        import os, signal, sys
        import neuroposter.train.loop as loop
        real, saved = loop.save_torch, []
        def save(obj, path, **kw):
            real(obj, path, **kw)
            saved.append(path)
            if len(saved) == 2:
                os.kill(os.getpid(), signal.SIGKILL)
        loop.save_torch = save
        from neuroposter.cli import main
        sys.exit(main({[*_train(ws, "--name", "killed"), *epochs]!r}))
        """)
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300,
                          env={**os.environ, "NEUROPOSTER_NO_PROGRESS": "1"})
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    assert (ws / "runs" / ".killed.partial" / "train_state.pt").is_file() and not (ws / "runs" / "killed").exists()
    # without --resume a fresh run would start over; with it, the interrupted one continues
    code, err = _run(capsys, [*_train(ws, "--name", "killed", "--resume"), *epochs])
    assert code == 0, err
    code, err = _run(capsys, [*_train(ws, "--name", "straight"), *epochs])
    assert code == 0, err
    a = torch.load(ws / "runs" / "killed" / "checkpoint.pt", weights_only=True)
    b = torch.load(ws / "runs" / "straight" / "checkpoint.pt", weights_only=True)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    ma = yaml.safe_load((ws / "runs" / "killed" / "metrics.json").read_text())
    mb = yaml.safe_load((ws / "runs" / "straight" / "metrics.json").read_text())
    assert ma["test"] == mb["test"] and ma["epochs_run"] == mb["epochs_run"] == 4
    _no_temporaries(ws)


# -- options -------------------------------------------------------------------------------------


@pytest.mark.parametrize("value", ["inf", "-inf", "nan", "0", "-1", "1e400"])
def test_a_learning_rate_that_is_not_a_positive_finite_number_is_a_usage_error(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], value: str) -> None:
    code, err = _run(capsys, _train(tmp_path / "ws", "--lr", value))
    assert code == 2
    assert "--lr" in _one_line(err)
    assert not (tmp_path / "ws").exists()


@pytest.mark.parametrize("text, expected", [('"no"', False), ("no", False), ('"off"', False), ("false", False),
                                            ('"yes"', True)])
def test_resume_in_a_config_file_means_what_it_says(ws: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                   text: str, expected: bool) -> None:
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text(f"train:\n  resume: {text}\n")
    code, err = _run(capsys, _train(ws, "--name", "cfg", "--config", str(cfg)))
    assert code == 0, err
    assert yaml.safe_load((ws / "runs" / "cfg" / "resolved_config.yaml").read_text())["resume"] is expected
