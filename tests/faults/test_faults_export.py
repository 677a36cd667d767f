"""`neuroposter export` under hostile use: nothing lost, nothing silently wrong (issue #10).

End to end through the real CLI, in process, on a tiny workspace built once per session through the
CLI (24 synthetic posters, random DenseNet weights, a 1-epoch SDT) and then *moved*, so every
absolute path its manifests recorded is gone: each test works on its own copy and only relative
paths can be used. A snapshot (relative path -> SHA-256 of every file of the workspace and the
export folder) is compared before and after each refused or failed command.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import pytest

from neuroposter.cli import main

# bookkeeping that a read may refresh (verification cache) or a writer leaves (empty lock files)
_NOT_DATA = (".verified.json",)


def _snapshot(*roots: Path) -> dict[str, str]:
    out = {}
    for root in roots:
        if not root.exists():
            continue
        for dirpath, _, files in os.walk(root):
            for f in files:
                if f in _NOT_DATA or (f.startswith(".") and f.endswith(".lock")):
                    continue
                p = Path(dirpath) / f
                out[f"{root.name}/{p.relative_to(root)}"] = hashlib.sha256(p.read_bytes()).hexdigest()
    return out


def _cli(capsys, *argv: str) -> tuple[int, str, str]:
    """Runs the CLI in process; argparse usage errors (SystemExit) become their exit code."""
    try:
        code = main(list(argv))
    except SystemExit as exc:
        code = int(exc.code or 0)
    cap = capsys.readouterr()
    return code, cap.out, cap.err


def _one_error_line(err: str) -> str:
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("neuroposter: error: "), err
    assert "Traceback" not in err
    return lines[0]


@dataclass
class Site:
    root: Path
    ws: Path
    export: Path

    @property
    def bundle(self) -> Path:
        return self.export / "nir" / "sdt"

    def snap(self) -> dict[str, str]:
        return _snapshot(self.ws, self.export)

    def args(self, *extra: str) -> list[str]:
        return ["export", "--target", "nir", "--samples", "2", "-w", str(self.ws), "--export-root", str(self.export),
                *extra]


@pytest.fixture(scope="session")
def built(tmp_path_factory) -> Path:
    """ws/ (dataset, features, encoded set, a 1-epoch SDT run) and export/nir/sdt, built with the CLI."""
    import torch

    torch.set_num_threads(1)
    base = tmp_path_factory.mktemp("export-faults")
    build = base / "build"
    ws, export = build / "ws", build / "export"
    steps = [
        ["data", "synth", "--n", "24", "-w", str(ws)],
        ["data", "import", "-w", str(ws)],
        ["features", "--weights", "random", "-w", str(ws)],
        ["encode", "-w", str(ws)],
        ["train", "--model", "sdt", "--epochs", "1", "--threads", "1", "-w", str(ws)],
        ["export", "--target", "nir", "--samples", "2", "-w", str(ws), "--export-root", str(export)],
    ]
    for argv in steps:
        assert main(argv) == 0, argv
    stored = base / "stored"
    os.replace(build, stored)      # the recorded absolute paths (build/...) no longer exist
    return stored


@pytest.fixture
def site(built, tmp_path, monkeypatch) -> Site:
    root = tmp_path / "site"
    shutil.copytree(built, root, symlinks=True)
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    monkeypatch.chdir(cwd)
    return Site(root, root / "ws", root / "export")


# -- destinations that are not a bundle are never replaced -----------------------------------------------


@pytest.mark.parametrize("where", ["raw", "raw/synth", "workspace", "run", "inside-run", "encoded", "runs",
                                   "other-files", "inside-bundle", "parent-of-workspace"])
def test_out_onto_data_is_refused_and_nothing_changes(site, capsys, where) -> None:
    other = site.root / "notes"
    other.mkdir()
    (other / "todo.txt").write_text("keep me\n")
    out = {"raw": site.ws / "raw", "raw/synth": site.ws / "raw" / "synth", "workspace": site.ws,
           "run": site.ws / "runs" / "sdt", "inside-run": site.ws / "runs" / "sdt" / "bundle",
           "encoded": site.ws / "encoded" / "default", "runs": site.ws / "runs", "other-files": other,
           "inside-bundle": site.bundle / "nested", "parent-of-workspace": site.root}[where]
    before = site.snap() | _snapshot(other)
    code, _, err = _cli(capsys, *site.args("--out", str(out), "--force"))
    assert code == 2
    line = _one_error_line(err)
    assert "--out" in line and str(out) in line
    assert site.snap() | _snapshot(other) == before
    assert not out.exists() or out.is_dir()
    assert not list(site.root.rglob("*.failed")) and not list(site.root.rglob(".*.tmp"))


def test_raw_posters_survive_export_out_raw(site, capsys) -> None:
    csv = site.ws / "raw" / "synth" / "MovieGenre.csv"
    posters = sorted((site.ws / "raw" / "synth" / "posters").iterdir())
    data = csv.read_bytes()
    code, _, err = _cli(capsys, *site.args("--out", str(site.ws / "raw")))
    assert code == 2 and "raw" in _one_error_line(err)
    assert csv.read_bytes() == data and sorted((site.ws / "raw" / "synth" / "posters").iterdir()) == posters


# -- an existing bundle is replaced only with --force ------------------------------------------------------


def test_reexport_needs_force_and_force_replaces(site, capsys) -> None:
    before = site.snap()
    code, _, err = _cli(capsys, *site.args())
    assert code == 2 and "--force" in _one_error_line(err)
    assert site.snap() == before

    old = json.loads((site.bundle / "manifest.json").read_text())
    code, out, err = _cli(capsys, *site.args("--samples", "3", "--force"))
    assert code == 0, err
    assert "OK: every agreement" in out
    new = json.loads((site.bundle / "manifest.json").read_text())
    assert new["config"]["samples"] == 3 and old["config"]["samples"] == 2
    # resolved_config.yaml is part of the bundle: written before the swap and hashed in the manifest
    assert "resolved_config.yaml" in new["files"]
    assert "force: true" in (site.bundle / "resolved_config.yaml").read_text()
    after = site.snap()
    changed = {k for k in before if before[k] != after.get(k)} | (set(after) - set(before))
    assert all(k.startswith("export/nir/sdt/") or k == "ws/exports.json" for k in changed), changed
    assert not list(site.export.rglob(".*.tmp"))


def test_every_bundle_is_recorded_in_its_workspace(site, capsys) -> None:
    out = site.root / "elsewhere" / "bundle"
    code, _, err = _cli(capsys, *site.args("--out", str(out)))
    assert code == 0, err
    from neuroposter.workspace import Workspace

    found = {p.resolve() for p in Workspace.at(site.ws).exports()}
    assert out.resolve() in found and site.bundle.resolve() in found


# -- verification thresholds and failed verifications ------------------------------------------------------


@pytest.mark.parametrize("flag", [("--min-agreement", "2"), ("--min-agreement", "-0.1"), ("--min-agreement", "nan"),
                                  ("--opt", "min_agreement=2"), ("--samples", "0"), ("--samples", "-5"),
                                  ("--opt", "samples=0")])
def test_out_of_range_options_are_usage_errors(site, capsys, flag) -> None:
    before = site.snap()
    code, _, err = _cli(capsys, *site.args(*flag, "--force"))
    assert code == 2
    name = flag[1].split("=")[0].replace("_", "-") if flag[0] == "--opt" else flag[0].lstrip("-")
    assert name in _one_error_line(err)
    assert site.snap() == before and not list(site.root.rglob("*.failed"))


def test_failed_verification_keeps_the_good_bundle(site, capsys, monkeypatch) -> None:
    from neuroposter.targets import nir_target

    real = nir_target.NirTarget.run

    def disagreeing(self, ctx, graph):  # as if the lowered graph disagreed with the model on every spike
        r = real(self, ctx, graph)
        r.norse_spikes = {k: 1 - v for k, v in r.norse_spikes.items()}
        return r

    monkeypatch.setattr(nir_target.NirTarget, "run", disagreeing)
    before = site.snap()
    code, out, err = _cli(capsys, *site.args("--force"))
    assert code == 1
    line = _one_error_line(err)
    failed = site.export / "nir" / "sdt.failed"
    assert "verification failed" in line and str(failed) in line and "vs_norse.spike_agreement 0.0000" in line
    assert "FAILED" in out
    assert {k: v for k, v in site.snap().items() if not k.startswith("export/nir/sdt.failed/")} == before
    manifest = json.loads((failed / "manifest.json").read_text())
    assert manifest["status"] == "failed" and "spike_agreement" in manifest["failure"]
    assert (failed / "resolved_config.yaml").is_file()
    # a failed bundle is never taken for a good one
    from neuroposter.errors import ManifestError
    from neuroposter.manifest import require_manifest

    with pytest.raises(ManifestError, match="failed export"):
        require_manifest(failed, "export", rerun="neuroposter export")
    registry = json.loads((site.ws / "exports.json").read_text())["bundles"]
    assert not any(b.endswith(".failed") for b in registry)


# -- one writer at a time ---------------------------------------------------------------------------------


def test_a_second_writer_is_told_at_once(site, capsys) -> None:
    holder = ("import sys, time\nfrom neuroposter.artifact import artifact_lock\n"
              "with artifact_lock(sys.argv[1]):\n    print('locked', flush=True)\n    time.sleep(120)\n")
    proc = subprocess.Popen([sys.executable, "-c", holder, str(site.bundle)], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "locked"
        before = site.snap()
        code, _, err = _cli(capsys, *site.args("--force"))
        assert code == 1
        assert "being written by another neuroposter process" in _one_error_line(err)
        assert site.snap() == before
    finally:
        proc.kill()
        proc.wait()


# -- inputs are what the manifests say --------------------------------------------------------------------


def test_a_swapped_checkpoint_is_refused(site, capsys) -> None:
    import torch

    ckpt = site.ws / "runs" / "sdt" / "checkpoint.pt"
    state = torch.load(ckpt, weights_only=True)
    key = next(k for k, v in state.items() if v.is_floating_point())
    state[key] = state[key] + 1.0
    torch.save(state, ckpt)
    before = site.snap()
    code, _, err = _cli(capsys, *site.args("--force"))
    assert code == 1
    line = _one_error_line(err)
    assert "checkpoint.pt" in line and "neuroposter train" in line
    assert site.snap() == before


def test_a_moved_workspace_exports_from_its_own_inputs(site, capsys, tmp_path, monkeypatch) -> None:
    moved = tmp_path / "far" / "away"
    moved.parent.mkdir(parents=True)
    os.replace(site.root, moved)
    cwd = tmp_path / "somewhere-else"
    cwd.mkdir()
    monkeypatch.chdir(cwd)
    ws, export = moved / "ws", moved / "export"
    code, out, err = _cli(capsys, "export", "--target", "nir", "--samples", "all", "-w", str(ws),
                          "--export-root", str(export), "--force")
    assert code == 0, err
    summary = json.loads((export / "nir" / "sdt" / "summary.json").read_text())
    assert Path(summary["inputs"]["path"]).resolve() == (ws / "encoded" / "default").resolve()
    n_test = json.loads((ws / "encoded" / "default" / "manifest.json").read_text())
    assert summary["verification"]["vs_norse"]["samples"] == 3       # the whole (real) test split of 24 posters
    assert n_test["kind"] == "encoded"
    manifest = json.loads((export / "nir" / "sdt" / "manifest.json").read_text())
    assert not os.path.isabs(manifest["inputs"]["run"]["path"])
    assert not os.path.isabs(manifest["inputs"]["encoded"]["path"])
    assert not list(cwd.iterdir())                       # nothing written into the current folder


def test_a_missing_encoded_set_is_named_not_replaced(site, capsys) -> None:
    shutil.rmtree(site.ws / "encoded" / "default")
    before = site.snap()
    code, _, err = _cli(capsys, *site.args("--force"))
    assert code == 1
    line = _one_error_line(err)
    assert "encoded set" in line and str(Path("encoded") / "default") in line and "neuroposter encode" in line
    assert site.snap() == before


def test_a_rebuilt_encoded_set_is_not_taken_for_the_trained_one(site, capsys) -> None:
    from neuroposter._io import atomic_write_json, read_json
    from neuroposter.manifest import record_files

    enc = site.ws / "encoded" / "default"
    m = read_json(enc / "manifest.json")
    m["key"] = "0" * 64                                   # as if re-encoded with other settings
    atomic_write_json(enc / "manifest.json", m)
    record_files(enc)
    before = site.snap()
    code, _, err = _cli(capsys, *site.args("--force"))
    assert code == 1
    line = _one_error_line(err)
    assert "changed since run" in line and "neuroposter train" in line
    assert site.snap() == before


# -- a chip's refusal is a verdict, not a failure -----------------------------------------------------------


def test_a_chip_refusal_is_a_recorded_verdict(site, capsys) -> None:
    from neuroposter.cli.demo import _refused

    argv = ["export", "--target", "xylo", "--run", "sdt", "--export-root", str(site.export), "--samples", "2",
            "-w", str(site.ws)]
    code, out, _ = _cli(capsys, *argv)
    assert code == 3 and "REFUSED" in out             # a refusal verdict has its own exit code
    summary = json.loads((site.export / "xylo" / "sdt" / "summary.json").read_text())
    assert summary["ok"] is False and "cannot host" in summary["reason"]
    assert not (site.export / "xylo" / "sdt.failed").exists()
    assert _refused(argv)
    run = json.loads((site.bundle / "manifest.json").read_text())["inputs"]["run"]
    manifest = json.loads((site.export / "xylo" / "sdt" / "manifest.json").read_text())
    assert manifest["inputs"]["run"]["key"] == run["key"]            # report can tell it is current
    assert manifest["inputs"]["run"]["checkpoint_sha256"] == run["checkpoint_sha256"]
    registry = json.loads((site.ws / "exports.json").read_text())["bundles"]
    assert any(b.endswith("xylo/sdt") for b in registry)


# -- resources ---------------------------------------------------------------------------------------------


@pytest.mark.slow
def test_loihi_on_a_full_disk_says_so_and_leaves_no_temporary(site, capsys, monkeypatch) -> None:
    import collections

    usage = collections.namedtuple("usage", "total used free")
    real = shutil.disk_usage
    monkeypatch.setattr(shutil, "disk_usage", lambda p: usage(real(p).total, real(p).total - 4096, 4096))
    tmp_before = set(os.listdir(tempfile.gettempdir()))
    before = site.snap()
    code, _, err = _cli(capsys, "export", "--target", "loihi", "--samples", "2", "-w", str(site.ws),
                        "--export-root", str(site.export))
    assert code == 1
    assert "no space left on device" in _one_error_line(err)
    assert site.snap() == before
    assert not list(site.export.rglob(".*.tmp")) and not (site.export / "loihi" / "sdt").exists()
    new = {n for n in set(os.listdir(tempfile.gettempdir())) - tmp_before if n.startswith("neuroposter-")}
    assert not new


@pytest.mark.slow
def test_loihi_failed_verification_keeps_the_good_bundle(site, capsys, monkeypatch) -> None:
    import neuroposter.targets.loihi.target as loihi

    args = ["export", "--target", "loihi", "--samples", "2", "--min-trained-agreement", "0", "-w", str(site.ws),
            "--export-root", str(site.export)]
    code, _, err = _cli(capsys, *args)
    assert code == 0, err
    before = site.snap()
    real = loihi.verify_plan
    monkeypatch.setattr(loihi, "verify_plan", lambda *a, **k: {**real(*a, **k), "prediction_agreement": 0.0})
    code, _, err = _cli(capsys, *args, "--force")
    assert code == 1 and "loihi/sdt.failed" in _one_error_line(err)
    assert {k: v for k, v in site.snap().items() if "sdt.failed/" not in k} == before
    assert json.loads((site.export / "loihi" / "sdt.failed" / "manifest.json").read_text())["status"] == "failed"


@pytest.mark.slow
def test_onnx_on_a_moved_workspace_uses_the_real_posters(site, capsys, tmp_path, monkeypatch) -> None:
    """Was: random 224x224 inputs and `OK` when the workspace had moved; now the real 268x182 posters."""
    code, _, err = _cli(capsys, "train", "--model", "cnn", "--epochs", "1", "--threads", "1", "-w", str(site.ws))
    assert code == 0, err
    moved = tmp_path / "moved"
    os.replace(site.root, moved)
    cwd = tmp_path / "cwd2"
    cwd.mkdir()
    monkeypatch.chdir(cwd)
    code, out, err = _cli(capsys, "export", "--target", "onnx", "--samples", "2", "-w", str(moved / "ws"),
                          "--export-root", str(moved / "export"))
    assert code == 0, err
    summary = json.loads((moved / "export" / "onnx" / "cnn" / "summary.json").read_text())
    assert summary["graph_inputs"]["images"][2:] == [268, 182]
    assert summary["inputs_source"].startswith("test posters of") and str(moved) in summary["inputs_source"]
    assert summary["verification"]["deployed_vs_trained"]["samples"] == 3    # the whole test split, not --samples
    # and with the feature store gone: one line naming it, no random stand-ins
    shutil.rmtree(moved / "ws" / "features" / "default")
    code, _, err = _cli(capsys, "export", "--target", "onnx", "--samples", "2", "-w", str(moved / "ws"),
                        "--out", str(moved / "export" / "onnx" / "cnn2"))
    assert code == 1
    line = _one_error_line(err)
    assert "feature store" in line and "neuroposter features" in line
    assert not (moved / "export" / "onnx" / "cnn2").exists()
