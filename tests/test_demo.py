"""The whole pipeline, as a user runs it: `neuroposter demo --size tiny` end to end."""

from __future__ import annotations

import json

import pytest

from neuroposter.cli import main

MODELS = ("sdt", "snn-mlp", "ann-transformer", "cnn", "vit")
METRIC_KEYS = ("micro_f1", "macro_f1", "samples_f1", "map", "hamming", "p_at_1")


@pytest.mark.slow
def test_tiny_demo_runs_every_stage(tmp_path, capsys):
    ws, exp = tmp_path / "ws", tmp_path / "export"
    assert main(["demo", "--size", "tiny", "--workspace", str(ws), "--export-root", str(exp)]) == 0
    out = capsys.readouterr().out
    assert "stage times" in out and "energy profiling report" in out
    assert "constant: most_frequent" in out and all(f"  {m} " in out for m in MODELS)

    for d in (ws / "datasets/default", ws / "features/default", ws / "encoded/default", ws / "encoded/pooled"):
        assert json.loads((d / "manifest.json").read_text())["kind"]
    report = json.loads((ws / "datasets/default/data_report.json").read_text())
    assert report["rows_kept"] == 48

    for model in MODELS:
        metrics = json.loads((ws / "runs" / model / "metrics.json").read_text())
        assert all(k in metrics and k in metrics["test"] for k in METRIC_KEYS)
        assert metrics["baselines"], model
        assert (ws / "runs" / model / "checkpoint.pt").is_file()

    for bundle in ("nir/sdt", "nir/snn-mlp", "onnx/cnn", "onnx/vit", "onnx/ann-transformer", "loihi/sdt",
                   "loihi/snn-mlp"):
        summary = json.loads((exp / bundle / "summary.json").read_text())
        assert summary.get("ok", True) is not False, (bundle, summary.get("reason"))
        assert (exp / bundle / "manifest.json").is_file()
    loihi = json.loads((exp / "loihi/sdt/summary.json").read_text())
    assert json.dumps(loihi).count("prediction_agreement") >= 2
    # every chip runs a model: the SDT partitioned where an exact mapping exists, else a variant fitted to the chip
    deployed = {}
    for chip in ("spinnaker", "spinnaker2", "truenorth", "xylo", "speck"):
        summary = json.loads((exp / chip / "sdt/summary.json").read_text())
        assert summary["ok"] or summary["reason"], chip  # exported, or refused naming the limit
        bundle = exp / chip / ("sdt" if summary["ok"] else f"fit-{chip}")
        s = json.loads((bundle / "summary.json").read_text())
        assert s["ok"] and s["mapping"]["fits"] and s["mapping"]["verdict"].startswith("fits on"), (chip, s.get("reason"))
        assert (bundle / "op_counts.json").is_file() and (bundle / "graph_q.nir").is_file()
        deployed[chip] = bundle.name
    assert deployed == {"spinnaker": "sdt", "spinnaker2": "sdt", "truenorth": "fit-truenorth", "xylo": "fit-xylo",
                        "speck": "fit-speck"}
    xylo = json.loads((exp / "xylo/fit-xylo/summary.json").read_text())["verification"]["vendor"]
    assert xylo["simulator"].startswith("xylosim") and xylo["exact"]

    html = (ws / "reports/default/report.html").read_text()
    assert "<img" in html and (ws / "reports/default/energy.csv").is_file()
    import csv

    chips = list(csv.DictReader((ws / "reports/default/chips.csv").open()))
    assert {r["chip"] for r in chips} >= {"loihi", "spinnaker", "spinnaker2", "truenorth", "xylo", "speck"}
    assert (ws / "reports/default/chips_accuracy_vs_energy.png").is_file()

    # the Python API example runs on the demo's workspace
    import subprocess
    import sys
    from pathlib import Path

    example = Path(__file__).resolve().parents[1] / "examples" / "python_api.py"
    proc = subprocess.run([sys.executable, str(example), "--workspace", str(ws), "--samples", "4"],
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "synaptic ops" in proc.stdout and "mJ" in proc.stdout
