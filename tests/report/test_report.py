"""End-to-end report on a tiny fake workspace (fake runs, metrics, hand-made records, a tiny ONNX bundle)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import nir
import numpy as np
import pandas as pd
import pytest
import torch

from neuroposter.profiling.counts import count_snn
from neuroposter.profiling.onnx_counts import count_onnx

METRICS = {"micro_f1": 0.4, "macro_f1": 0.3, "samples_f1": 0.35, "map": 0.45, "hamming": 0.2, "p_at_1": 0.5}


def _run(ws: Path, name: str, model: str, scale: float) -> None:
    d = ws / "runs" / name
    d.mkdir(parents=True)
    test = {k: v * scale for k, v in METRICS.items()}
    (d / "manifest.json").write_text(json.dumps({"kind": "run", "key": f"key-{name}", "model": model,
                                                 "created": "2025-01-01T00:00:00+00:00", "inputs": {}}))
    (d / "model.json").write_text(json.dumps({"model": model, "kwargs": {}}))
    (d / "metrics.json").write_text(json.dumps({"model": model, "test": test, **test,
                                                "baselines": {"prior": {k: v * 0.5 for k, v in METRICS.items()}},
                                                "thresholds": [0.5]}))


def _snn_counts(rng):
    D, N, H = 6, 4, 3
    lif = lambda shape: nir.LIF(tau=np.full(shape, 2.0), r=np.ones(shape), v_leak=np.zeros(shape),  # noqa: E731
                                v_threshold=np.ones(shape))
    g = nir.NIRGraph(nodes={
        "input": nir.Input(input_type={"input": np.array([D, N])}),
        "embed": nir.Conv1d(input_shape=N, weight=rng.normal(size=(H, D, 1)), stride=1, padding=0, dilation=1,
                            groups=1, bias=np.zeros(H)),
        "sn": lif((H, N)),
        "flat": nir.Flatten(start_dim=0, end_dim=-1, input_type={"input": np.array([H, N])}),
        "head": nir.Affine(weight=rng.normal(size=(2, H * N)), bias=np.zeros(2)),
        "output": nir.Output(output_type={"output": np.array([2])})},
        edges=[("input", "embed"), ("embed", "sn"), ("sn", "flat"), ("flat", "head"), ("head", "output")],
        type_check=False)
    x = (rng.random((4, 5, D, N)) < 0.3).astype(np.float32)
    rec = {"sn": (rng.random((4, 5, H, N)) < 0.2).astype(np.float32)}
    return count_snn(g, rec, x=x, name="sdt", meta={"source": "hand-made NIR graph + records (test)"})


class _Tiny(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = torch.nn.Conv2d(3, 4, 3, padding=1)
        self.fc = torch.nn.Linear(4 * 8 * 8, 5)

    def forward(self, x):
        return self.fc(torch.relu(self.conv(x)).flatten(1))


@pytest.fixture
def fake_ws(tmp_path):
    rng = np.random.default_rng(0)
    ws = tmp_path / "ws"
    _run(ws, "sdt", "sdt", 1.0)
    _run(ws, "cnn", "cnn", 1.1)
    exports = tmp_path / "export"
    (exports / "onnx" / "cnn").mkdir(parents=True)
    torch.onnx.export(_Tiny().eval(), torch.zeros(1, 3, 8, 8), str(exports / "onnx" / "cnn" / "model.onnx"),
                      input_names=["image"], output_names=["logits"], dynamic_axes={"image": {0: "batch"}},
                      opset_version=17)
    (exports / "truenorth" / "sdt").mkdir(parents=True)
    (exports / "truenorth" / "sdt" / "summary.json").write_text(json.dumps(
        {"fits": False, "reason": "fan-in 320 > 256 at embed"}))
    (exports / "xylo" / "sdt").mkdir(parents=True)
    (exports / "xylo" / "sdt" / "summary.json").write_text(json.dumps({"verdict": "fits"}))
    frontend = count_onnx(exports / "onnx" / "cnn" / "model.onnx", name="frontend", source="tiny stand-in")
    return ws, exports, {"sdt": _snn_counts(rng)}, frontend


def test_report_end_to_end(fake_ws):
    from neuroposter.report import build_report

    ws, exports, counts, frontend = fake_ws
    res = build_report(ws, name="t", exports=exports, counts=counts, frontend=frontend, latency=True,
                       profiles=["loihi", "loihi2", "truenorth", "spinnaker2", "a100_sxm", "cpu_i7_4960x"])
    out = ws / "reports" / "t"
    assert res.out_dir == out
    for f in ("report.html", "report.md", "energy.csv", "accuracy.csv", "provenance.csv", "manifest.json",
              "counts.json", "latency.csv"):
        assert (out / f).is_file(), f
    html = (out / "report.html").read_text()
    imgs = re.findall(r"<img src='([^']+)'", html)
    assert "accuracy_vs_energy.png" in imgs and "firing_rates.png" in imgs and "mapping_verdicts.png" in imgs
    for img in imgs:
        assert (out / img).is_file() and (out / img).stat().st_size > 1000, img
    md = (out / "report.md").read_text()
    assert "![" in md and "breakdown_sdt_paper.png" in md
    assert "constant-predictor baselines" in md and "baseline: prior" in md
    e = pd.read_csv(out / "energy.csv")
    sdt_paper = e[(e.run == "sdt") & (e.view == "sdt_paper") & (e.component == "pipeline")]
    assert set(sdt_paper.first_layer) == {"once", "xT"}
    # pipeline = model + front end
    m = e[(e.run == "sdt") & (e.evaluation == "memory/lemaire_45nm")].set_index("component")["energy_mj"]
    assert m["pipeline"] == pytest.approx(m["model"] + m["frontend"])
    assert not e[(e.run == "cnn")]["component"].eq("frontend").any()   # the CNN consumes images itself
    # unpublished Loihi 2 constants: unavailable, not invented
    l2 = e[(e.run == "sdt") & (e.profile == "loihi2") & (e.component == "model")]
    assert not l2.available.any() and l2.energy_mj.isna().all()
    # the all-in TrueNorth figure is used alone
    tn = e[(e.run == "sdt") & (e.profile == "truenorth") & (e.component == "model")]
    assert tn.available.all()
    prov = pd.read_csv(out / "provenance.csv")
    assert prov["item"].str.contains("profile loihi").any() and prov["item"].str.contains("bundle truenorth/sdt").any()
    assert "does not fit" in html and "include and exclude" in md


def test_report_cli_without_counts_still_writes(fake_ws, capsys):
    from neuroposter.cli import main

    ws, exports, _, _ = fake_ws
    rc = main(["report", "-w", str(ws), "--name", "cli", "--exports", str(exports), "--no-frontend",
               "--no-latency", "--samples", "2", "--profiles", "loihi", "a100_sxm"])
    assert rc == 0
    out = capsys.readouterr().out
    assert "report written" in out and "warning: sdt: no op counts" in out
    assert (ws / "reports" / "cli" / "report.html").is_file()
    assert (ws / "reports" / "cli" / "resolved_config.yaml").is_file()


def test_list_profiles_cli(capsys):
    from neuroposter.cli import main

    assert main(["report", "--list-profiles"]) == 0
    assert "loihi2" in capsys.readouterr().out
