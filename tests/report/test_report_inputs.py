"""What the report reads and where it writes: verified runs and bundles from the workspace's registry, stale and
changed inputs refused, junk ignored with a warning, the report written as a guarded artifact, extreme values."""

from __future__ import annotations

import json
import math
import os
import shutil
from pathlib import Path

import pandas as pd
import pytest

from neuroposter.errors import ManifestError, UsageError
from neuroposter.manifest import write_manifest
from neuroposter.workspace import Workspace

METRICS = {"micro_f1": 0.4, "macro_f1": 0.3, "samples_f1": 0.35, "map": 0.45, "hamming": 0.2, "p_at_1": 0.5}
PROFILES = ["loihi", "truenorth"]


def _run(ws: Path, name: str, model: str) -> Path:
    d = ws / "runs" / name
    d.mkdir(parents=True)
    (d / "model.json").write_text(json.dumps({"model": model, "kwargs": {}}))
    (d / "metrics.json").write_text(json.dumps({"model": model, "test": METRICS, **METRICS,
                                                "baselines": {"prior": {k: v / 2 for k, v in METRICS.items()}}}))
    (d / "checkpoint.pt").write_bytes(b"weights of " + name.encode())
    write_manifest(d, "run", key=f"key-{name}", extra={"model": model})
    return d


def _bundle(d: Path, target: str, run_dir: Path, verdict: dict, *, key: str | None = None) -> Path:
    d.mkdir(parents=True)
    (d / "summary.json").write_text(json.dumps(verdict))
    ckpt = json.loads((run_dir / "manifest.json").read_text())["files"]["checkpoint.pt"]["sha256"]
    write_manifest(d, "export", inputs={"run": {"path": str(run_dir), "key": key or f"key-{run_dir.name}",
                                                "checkpoint_sha256": ckpt}},
                   extra={"target": target, "source_run": run_dir.name})
    return d


@pytest.fixture
def ws(tmp_path, monkeypatch):
    """A workspace with an sdt run and two chip bundles recorded in its exports.json (outside the workspace)."""
    monkeypatch.chdir(tmp_path)
    root = tmp_path / "proj" / "workspace"
    sdt = _run(root, "sdt", "sdt")
    w = Workspace(root)
    w.record_export(_bundle(tmp_path / "proj" / "export" / "truenorth" / "sdt", "truenorth", sdt,
                            {"ok": False, "reason": "fan-in 320 > 256 at embed"}))
    w.record_export(_bundle(tmp_path / "proj" / "export" / "xylo" / "sdt", "xylo", sdt, {"ok": True}))
    return root


def _report(root: Path, *extra: str) -> int:
    from neuroposter.cli import main

    return main(["report", "-w", str(root), "--no-frontend", "--no-latency", "--profiles", *PROFILES, *extra])


def _verdicts(root: Path, name: str = "default") -> dict[str, str]:
    prov = pd.read_csv(root / "reports" / name / "provenance.csv")
    rows = prov[prov["item"].str.startswith("bundle ")]
    return dict(zip(rows["item"], rows["note"]))


def _err_line(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    assert err[0].startswith("neuroposter: error: ")
    return err[0]


def test_bundles_come_from_the_registry_from_any_folder(ws, tmp_path, monkeypatch, capsys):
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)   # no ./export here: the registry finds the bundles
    assert _report(ws) == 0
    assert _verdicts(ws) == {"bundle truenorth/sdt": "does not fit", "bundle xylo/sdt": "fits"}


def test_a_registered_bundle_that_is_gone_is_a_warning(ws, tmp_path, capsys):
    shutil.rmtree(tmp_path / "proj" / "export" / "xylo")
    assert _report(ws) == 0
    out = capsys.readouterr().out
    assert "warning: bundle" in out and "xylo" in out and "listed in" in out and "missing" in out
    assert list(_verdicts(ws)) == ["bundle truenorth/sdt"]


def test_existing_report_needs_force_and_unsafe_names_are_refused(ws, capsys):
    assert _report(ws) == 0
    capsys.readouterr()
    before = (ws / "reports" / "default" / "manifest.json").read_bytes()
    assert _report(ws) == 2
    line = _err_line(capsys)
    assert "already holds a report" in line and "--force" in line
    assert (ws / "reports" / "default" / "manifest.json").read_bytes() == before
    for bad in (".", "..", ""):
        assert _report(ws, "--name", bad) == 2
        assert "not a valid artifact name" in _err_line(capsys)
    # a path that is not a report (the workspace itself, its runs) is never replaced, even with --force
    for bad in (str(ws), str(ws / "runs"), str(ws / "runs" / "sdt")):
        assert _report(ws, "--name", bad, "--force") == 2
        _err_line(capsys)
    assert (ws / "runs" / "sdt" / "checkpoint.pt").is_file()
    assert _report(ws, "--force") == 0


def test_folders_that_are_not_runs_are_ignored_with_a_warning(ws, capsys):
    (ws / "runs" / "junk").mkdir()
    (ws / "runs" / "junk" / "metrics.json").write_text(json.dumps({"model": "sdt", "test": METRICS}))
    failed = ws / "runs" / "old.failed"
    failed.mkdir()
    write_manifest(failed, "run", key="k", extra={"model": "sdt", "status": "failed", "failure": "diverged"})
    assert _report(ws) == 0
    out = capsys.readouterr().out
    assert "junk: no manifest.json" in out and "old.failed: a failed run" in out
    acc = pd.read_csv(ws / "reports" / "default" / "accuracy.csv")
    assert set(acc["run"]) == {"sdt"}
    # named explicitly, the junk folder is an error, not a model
    assert _report(ws, "--name", "j", "--runs", "junk") == 1
    assert "junk: no manifest.json" in _err_line(capsys)


def test_failed_and_foreign_bundles_are_ignored_with_a_warning(ws, tmp_path, capsys):
    root = tmp_path / "proj" / "export"
    f = _bundle(root / "loihi" / "sdt.failed", "loihi", ws / "runs" / "sdt", {"ok": False})
    m = json.loads((f / "manifest.json").read_text())
    (f / "manifest.json").write_text(json.dumps({**m, "status": "failed", "failure": "agreement 0.5 < 0.99"}))
    (root / "onnx" / "junk").mkdir(parents=True)
    (root / "onnx" / "junk" / "model.onnx").write_bytes(b"not a model")
    assert _report(ws, "--exports", str(root)) == 0
    out = capsys.readouterr().out
    assert "sdt.failed is a failed export" in out and "junk: no manifest.json" in out
    assert sorted(_verdicts(ws)) == ["bundle truenorth/sdt", "bundle xylo/sdt"]


def test_stale_bundle_is_refused_with_the_export_command(ws, tmp_path, capsys):
    stale = tmp_path / "proj" / "export" / "speck" / "sdt"
    _bundle(stale, "speck", ws / "runs" / "sdt", {"ok": True}, key="key-of-an-older-sdt")
    Workspace(ws).record_export(stale)
    assert _report(ws) == 1
    line = _err_line(capsys)
    assert "speck/sdt is stale" in line
    assert "neuroposter export --target speck --run sdt --force" in line
    assert not (ws / "reports" / "default").exists()


def test_retrained_checkpoint_makes_a_bundle_stale(ws, capsys):
    run = ws / "runs" / "sdt"
    (run / "checkpoint.pt").write_bytes(b"retrained weights")
    write_manifest(run, "run", key="key-sdt", extra={"model": "sdt"})   # same key, new checkpoint
    assert _report(ws) == 1
    line = _err_line(capsys)
    assert "is stale" in line and "another checkpoint of run sdt" in line and "--force" in line


def test_edited_bundle_or_run_file_is_refused(ws, tmp_path, capsys):
    summary = tmp_path / "proj" / "export" / "xylo" / "sdt" / "summary.json"
    summary.write_text(json.dumps({"ok": False}))
    assert _report(ws) == 1
    line = _err_line(capsys)
    assert str(summary) in line and "changed" in line and "neuroposter export --target xylo --run sdt" in line
    summary.unlink()
    assert _report(ws) == 1
    assert "missing" in _err_line(capsys)


def test_samples_must_be_positive(ws, capsys):
    from neuroposter.report import build_report

    for bad in (0, -1, 1.5, True, "3"):
        with pytest.raises(UsageError, match="samples"):
            build_report(ws, samples=bad, frontend=None, latency=False, profiles=PROFILES)
    assert not (ws / "reports").exists()


def test_bundle_of_another_run_version_is_refused_by_build_report(ws, tmp_path):
    from neuroposter.report import build_report

    stale = tmp_path / "proj" / "export" / "spinnaker" / "sdt"
    _bundle(stale, "spinnaker", ws / "runs" / "sdt", {"ok": True}, key="older")
    with pytest.raises(ManifestError, match="stale"):
        build_report(ws, exports=[tmp_path / "proj" / "export"], frontend=None, latency=False, profiles=PROFILES)


def test_a_moved_workspace_reports_the_same(ws, tmp_path, monkeypatch, capsys):
    assert _report(ws) == 0
    moved = tmp_path / "moved"
    shutil.copytree(tmp_path / "proj", moved)
    monkeypatch.chdir(tmp_path)
    shutil.rmtree(tmp_path / "proj")           # nothing may still point into the old place
    assert _report(moved / "workspace", "--force") == 0
    assert _verdicts(moved / "workspace") == {"bundle truenorth/sdt": "does not fit", "bundle xylo/sdt": "fits"}


def test_non_finite_energies_are_unavailable_not_priced(monkeypatch):
    """An overflowing product (extreme constants x counts) is marked unavailable with a reason, never inf."""
    import dataclasses

    from types import SimpleNamespace

    from neuroposter.profiling.energy import estimate_energy
    from neuroposter.profiling.profiles import load_profile
    from neuroposter.report import tables

    def huge(c, prof, **kw):
        b = estimate_energy(c, prof, **kw)
        return dataclasses.replace(b, total_pj=math.inf, low_pj=1e308, high_pj=None) if b.available else b

    monkeypatch.setattr(tables, "estimate_energy", huge)
    from neuroposter.profiling.counts import OpCounts

    counts = OpCounts(name="sdt", kind="snn", T=4, samples=1, layers=())
    run = SimpleNamespace(name="sdt", model="sdt", counts=counts, counts_source="x")
    profs = {n: load_profile(n) for n in ("lemaire_45nm",)}
    e, _ = tables.energy_table([run], [tables.Evaluation("memory", "lemaire_45nm")], profs, None, (), "lemaire_45nm")
    assert not e["available"].any()
    assert e["energy_mj"].isna().all() and "not a finite number" in e["reason"].iloc[0]


def test_figures_survive_extreme_values(tmp_path):
    from types import SimpleNamespace

    from neuroposter.report import figures

    views = [SimpleNamespace(key="memory", title="memory-aware view")]
    head = pd.DataFrame([
        {"run": "a", "model": "sdt", "map": 0.5, "baseline_map": 0.2, "memory_head_mj": 1e300,
         "memory_pipeline_mj": math.inf, "memory_frontend_mj": 1e308, "memory_evaluation": "memory/x"},
        {"run": "b", "model": "cnn", "map": 0.6, "baseline_map": 0.2, "memory_head_mj": 0.0,
         "memory_pipeline_mj": 1e-300, "memory_frontend_mj": float("nan"), "memory_evaluation": "memory/x"},
        {"run": "c", "model": "vit", "map": 0.4, "baseline_map": 0.2, "memory_head_mj": 1e-3,
         "memory_pipeline_mj": 2e-3, "memory_frontend_mj": 1e-3, "memory_evaluation": "memory/x"}])
    models = head.assign(n_seeds=[1, 3, 1], map_seed_mean=[0.5, 0.6, 0.4], map_seed_sd=[None, math.inf, None],
                         map_low=[0.4, -math.inf, None], map_high=[0.6, 0.7, None])
    assert figures.accuracy_vs_energy(models, views, tmp_path / "a.png") == "a.png"
    assert figures.head_vs_frontend(head, views, tmp_path / "b.png") == "b.png"
    energy = pd.DataFrame([{"run": r, "component": "pipeline", "view": "memory", "evaluation": "memory/x",
                            "energy_mj": v, "available": True} for r, v in (("a", math.inf), ("b", 1e300),
                                                                           ("c", 0.0), ("d", 1e-3))])
    acc = pd.DataFrame([{"run": r, "predictor": r, "map": 0.5} for r in "abcd"])
    assert figures.accuracy_vs_energy_all(energy, acc, tmp_path / "c.png") == "c.png"
    for f in ("a.png", "b.png", "c.png"):
        assert (tmp_path / f).stat().st_size > 1000


def test_a_failing_figure_is_left_out_with_a_warning(ws, monkeypatch, capsys):
    from neuroposter.report import figures

    def boom(*a, **k):
        raise ValueError("Axis limits cannot be NaN or Inf")

    monkeypatch.setattr(figures, "mapping_verdicts_fig", boom)
    assert _report(ws) == 0
    out = capsys.readouterr().out
    assert "figure mapping_verdicts not drawn" in out
    html = (ws / "reports" / "default" / "report.html").read_text()
    assert "mapping_verdicts.png" not in html
    assert not (ws / "reports" / "default" / "mapping_verdicts.png").exists()


def test_demo_report_stage_passes_force():
    from neuroposter.cli.demo import SIZES, stages

    class A:
        workspace, export_root, seed = "workspace", "export", 0

    report = [s for s in stages(SIZES["tiny"]) if s.name == "report"][0]
    assert "--force" in report.argv(A(), SIZES["tiny"])


def test_export_command_names_the_bundle_location(tmp_path, monkeypatch):
    from neuroposter.report.collect import export_command

    monkeypatch.chdir(tmp_path)
    assert export_command("onnx", "cnn", Path("export/onnx/cnn")) == "neuroposter export --target onnx --run cnn --force"
    assert export_command("onnx", "cnn", Path("x/onnx/cnn"), Path("ws")) == (
        "neuroposter export --target onnx --run cnn --force --export-root x --workspace ws")
    assert export_command("nir", "sdt", Path("b")) == "neuroposter export --target nir --run sdt --force --out b"
    assert os.getcwd() == str(tmp_path)
