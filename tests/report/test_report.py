"""End-to-end report on a tiny fake workspace (fake runs, metrics, hand-made records, a tiny ONNX bundle with its
stored op counts)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import nir
import numpy as np
import pandas as pd
import pytest
import torch

from neuroposter.manifest import write_manifest
from neuroposter.profiling.counts import count_snn
from neuroposter.profiling.onnx_counts import count_onnx
from neuroposter.profiling.stored import onnx_counts, write_op_counts

METRICS = {"micro_f1": 0.4, "macro_f1": 0.3, "samples_f1": 0.35, "map": 0.45, "hamming": 0.2, "p_at_1": 0.5}


def _run(ws: Path, name: str, model: str, scale: float) -> None:
    d = ws / "runs" / name
    d.mkdir(parents=True)
    test = {k: v * scale for k, v in METRICS.items()}
    (d / "model.json").write_text(json.dumps({"model": model, "kwargs": {}}))
    (d / "metrics.json").write_text(json.dumps({"model": model, "test": test, **test,
                                                "baselines": {"prior": {k: v * 0.5 for k, v in METRICS.items()}},
                                                "thresholds": [0.5]}))
    write_manifest(d, "run", key=f"key-{name}", extra={"model": model})


def _bundle(d: Path, target: str, run_dir: Path) -> None:
    """Marks ``d`` (already holding its files) as the export bundle of ``run_dir``, as the export targets do
    (an ONNX bundle stores its op counts first, so the manifest hashes them)."""
    if (d / "model.onnx").is_file():
        write_op_counts(d, onnx_counts(d / "model.onnx", name=run_dir.name, location=d / "model.onnx"))
    write_manifest(d, "export", inputs={"run": {"path": str(run_dir), "key": f"key-{run_dir.name}"}},
                   extra={"target": target, "source_run": run_dir.name})


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
    _bundle(exports / "onnx" / "cnn", "onnx", ws / "runs" / "cnn")
    (exports / "truenorth" / "sdt").mkdir(parents=True)
    (exports / "truenorth" / "sdt" / "summary.json").write_text(json.dumps(
        {"fits": False, "reason": "fan-in 320 > 256 at embed"}))
    _bundle(exports / "truenorth" / "sdt", "truenorth", ws / "runs" / "sdt")
    (exports / "xylo" / "sdt").mkdir(parents=True)
    (exports / "xylo" / "sdt" / "summary.json").write_text(json.dumps({"verdict": "fits"}))
    _bundle(exports / "xylo" / "sdt", "xylo", ws / "runs" / "sdt")
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
    # the sdt run has no nir bundle: no counts, and the warning names the command that makes them
    assert "report written" in out and "warning: sdt: no op counts" in out
    assert "neuroposter export --target nir --run sdt" in out
    e = pd.read_csv(ws / "reports" / "cli" / "energy.csv")
    assert set(e["run"]) == {"cnn"}   # the cnn is priced from its bundle's stored counts
    assert (ws / "reports" / "cli" / "report.html").is_file()
    assert (ws / "reports" / "cli" / "resolved_config.yaml").is_file()


def test_list_profiles_cli(capsys):
    from neuroposter.cli import main

    assert main(["report", "--list-profiles"]) == 0
    assert "loihi2" in capsys.readouterr().out


@pytest.fixture
def twin_ws(fake_ws):
    """The fake workspace plus an ``ann-transformer`` run (the SDT's ANN twin) with its own tiny ONNX bundle."""
    ws, exports, counts, frontend = fake_ws
    _run(ws, "ann-transformer", "ann-transformer", 1.2)
    (exports / "onnx" / "ann-transformer").mkdir(parents=True)
    (exports / "onnx" / "ann-transformer" / "model.onnx").write_bytes(
        (exports / "onnx" / "cnn" / "model.onnx").read_bytes())
    _bundle(exports / "onnx" / "ann-transformer", "onnx", ws / "runs" / "ann-transformer")
    return ws, exports, counts, frontend


def _row(e, run, evaluation, component):
    r = e[(e.run == run) & (e.evaluation == evaluation) & (e.component == component)]
    assert len(r) == 1, (run, evaluation, component)
    return r.iloc[0]


def test_headline_equals_energy_rows_and_ratio(twin_ws):
    from neuroposter.report import build_report
    from neuroposter.report.headline import key_views

    ws, exports, counts, frontend = twin_ws
    res = build_report(ws, name="h", exports=exports, counts=counts, frontend=frontend, latency=False,
                       profiles=["loihi", "jetson_agx_orin", "truenorth"])
    out = ws / "reports" / "h"
    e = pd.read_csv(out / "energy.csv")
    h = pd.read_csv(out / "headline.csv").set_index("run")
    assert list(h.index) == ["ann-transformer", "cnn", "sdt"]   # one row per run
    views = key_views(e, "jetson_agx_orin")
    assert [v.key for v in views] == ["sdt_paper", "int8", "memory", "device"]
    assert h.loc["sdt", "device_evaluation"] == "device/loihi"
    assert h.loc["ann-transformer", "device_evaluation"] == "device/jetson_agx_orin"
    assert h.loc["sdt", "sdt_paper_evaluation"] == "sdt_paper/horowitz_45nm_fp32 (first layer once)"
    for run in h.index:
        for v in views:
            ev = h.loc[run, f"{v.key}_evaluation"]
            for col, comp in (("head", "model"), ("pipeline", "pipeline")):
                assert h.loc[run, f"{v.key}_{col}_mj"] == pytest.approx(_row(e, run, ev, comp)["energy_mj"], rel=1e-12)
    # accuracy beside the best constant baseline
    assert h.loc["sdt", "map"] == pytest.approx(METRICS["map"])
    assert h.loc["sdt", "baseline_map"] == pytest.approx(METRICS["map"] * 0.5)
    assert h.loc["sdt", "baseline_map_name"] == "prior"
    # the generated text: SDT / ANN-twin ratio per view, from the energy rows
    text = " ".join(res.summary)
    for v in views[:3]:
        ev = v.snn
        ratio = _row(e, "sdt", ev, "model")["energy_mj"] / _row(e, "ann-transformer", ev, "model")["energy_mj"]
        assert f"{v.title}: model alone {ratio:.3g}x" in text
        pr = _row(e, "sdt", ev, "pipeline")["energy_mj"] / _row(e, "ann-transformer", ev, "pipeline")["energy_mj"]
        assert f"pipeline with front end {pr:.3g}x" in text
    fe, pipe = (_row(e, "sdt", views[2].snn, c)["energy_mj"] for c in ("frontend", "pipeline"))
    assert f"{100 * fe / pipe:.5g} % (memory)" in text
    assert "Seed noise NOT assessed" in text   # one seed per model: no noise claim is made
    md = (out / "report.md").read_text()
    # the answer first, then the details (Markdown keeps the folded sections as normal sections after it)
    assert (md.index("## Should I deploy the spiking model") < md.index("## Every run in the headline views")
            < md.index("## Energy per view and profile") < md.index("## Provenance"))


def test_seed_noise_is_assessed_with_several_seeds():
    from types import SimpleNamespace

    from neuroposter.report.headline import headline_text

    def run(name, model, seed, m):
        return SimpleNamespace(name=name, model=model, kind="snn" if model == "sdt" else "ann",
                               metrics={"test": {"map": m}, "split_sizes": {"test": 100}},
                               manifest={"config": {"train": {"seed": seed, "epochs": 12}}})
    runs = [run("sdt-0", "sdt", 0, 0.50), run("sdt-1", "sdt", 1, 0.52), run("sdt-2", "sdt", 2, 0.51),
            run("ann-0", "ann-transformer", 0, 0.70), run("ann-1", "ann-transformer", 1, 0.71),
            run("ann-2", "ann-transformer", 2, 0.69)]
    head = pd.DataFrame([{"run": r.name, "model": r.model, "kind": r.kind, "map": r.metrics["test"]["map"],
                          "baseline_map": 0.2} for r in runs])
    text = " ".join(headline_text(head, [], runs))
    assert "3 seeds" in text and "is larger than twice its standard error" in text
    runs[3].metrics["test"]["map"], runs[4].metrics["test"]["map"] = 0.40, 0.62
    head.loc[3, "map"] = 0.40
    text = " ".join(headline_text(head, [], runs))
    assert "is not larger than twice its standard error" in text


def test_energy_pivot_cells():
    from neuroposter.report.tables import energy_pivot

    e = pd.DataFrame([
        {"run": "a", "component": "model", "view": "memory", "evaluation": "memory/x", "energy_mj": 1.0,
         "low_mj": 0.5, "high_mj": 2.0, "available": True},
        {"run": "a", "component": "model", "view": "device", "evaluation": "device/y", "energy_mj": 3.0,
         "low_mj": 3.0, "high_mj": None, "available": True},
        {"run": "b", "component": "model", "view": "memory", "evaluation": "memory/x", "energy_mj": 4.0,
         "low_mj": 4.0, "high_mj": 4.0, "available": True},
        {"run": "b", "component": "model", "view": "device", "evaluation": "device/y", "energy_mj": None,
         "low_mj": None, "high_mj": None, "available": False}])
    p = energy_pivot(e, "model").set_index("run")
    assert p.loc["a", "memory/x"] == "1 (0.5-2)" and p.loc["b", "memory/x"] == "4"
    assert p.loc["a", "device/y"] == ">=\u00a03" and p.loc["b", "device/y"] == "n/a"
    assert list(energy_pivot(e, "model", ["device"], strip_view=True).columns) == ["run", "y"]


def test_html_references_every_figure(twin_ws):
    from neuroposter.report import build_report

    ws, exports, counts, frontend = twin_ws
    res = build_report(ws, name="f", exports=exports, counts=counts, frontend=frontend, latency=False,
                       profiles=["loihi", "jetson_agx_orin"])
    out = ws / "reports" / "f"
    html = (out / "report.html").read_text()
    md = (out / "report.md").read_text()
    imgs = re.findall(r"<img src='([^']+)'", html)
    pngs = sorted(p.name for p in out.glob("*.png"))
    assert sorted(imgs) == pngs                       # every figure written is shown, every figure shown exists
    assert sorted(re.findall(r"!\[[^\]]*\]\(([^)]+)\)", md)) == pngs
    assert sorted(f for f in res.files if f.endswith(".png")) == pngs
    for f in ("accuracy_vs_energy.png", "accuracy_vs_energy_all_profiles.png", "head_vs_frontend.png",
              "breakdown_device_loihi.png"):
        assert f in pngs
    for img in imgs:
        assert (out / img).stat().st_size > 1000
    assert "no data for" not in html
    # every CSV carries the data provenance columns and still reads with plain pandas
    from neuroposter.report.banner import PROVENANCE_COLUMNS

    csvs = [f for f in res.files if f.endswith(".csv")]
    assert {"models.csv", "break_even.csv", "seeds.csv", "headline.csv", "energy.csv"} <= set(csvs)
    for f in csvs:
        assert list(pd.read_csv(out / f).columns[-4:]) == PROVENANCE_COLUMNS, f
    # the answer (banner, verdict, compact table, figure) comes before the first folded section
    first = html.index("<details>")
    assert html.index("class='banner'") < html.index("Should I deploy the spiking model") < \
        html.index("<table") < html.index("accuracy_vs_energy.png") < first
    assert res.verdict and __import__("html").escape(res.verdict[0]) in html
    # every section but the answer is folded, and the Markdown lists the folded ones after the answer
    assert len(re.findall(r"<h2 id='(s\d+)'", html)) == len(re.findall(r"<details><summary><h2 id='s\d+'", html)) + 1
    assert len(re.findall(r"^\d+\. \[", md, flags=re.M)) == len(re.findall(r"^## ", md, flags=re.M)) - 1


def test_front_end_rows_trace_to_their_own_profile_and_counts(fake_ws):
    """On a neuromorphic chip the front end is priced on an ANN profile: its rows must cite that profile."""
    from types import SimpleNamespace

    from neuroposter.profiling.profiles import load_profile
    from neuroposter.report.tables import Evaluation, energy_table

    _, _, counts, frontend = fake_ws
    profs = {n: load_profile(n) for n in ("loihi", "jetson_agx_orin", "lemaire_45nm")}
    run = SimpleNamespace(name="sdt", model="sdt", counts=counts["sdt"], counts_source="SNN counts of sdt")
    e, _ = energy_table([run], [Evaluation("device", "loihi"), Evaluation("memory", "lemaire_45nm")], profs,
                        frontend, ("sdt",), "jetson_agx_orin")
    dev = e[e.evaluation == "device/loihi"].set_index("component")
    jet, loihi = profs["jetson_agx_orin"], profs["loihi"]
    assert dev.loc["frontend", "priced_on"] == "jetson_agx_orin"
    assert dev.loc["frontend", "evidence"] == jet.evidence and dev.loc["frontend", "scope"] == jet.scope
    assert dev.loc["frontend", "profile_source"] == "; ".join(jet.sources)
    assert dev.loc["frontend", "counts_source"] == "tiny stand-in"
    assert dev.loc["model", "profile_source"] == "; ".join(loihi.sources)
    assert dev.loc["model", "counts_source"] == "SNN counts of sdt"
    pipe = dev.loc["pipeline"]  # rests on both profiles and both count sources
    assert "; ".join(loihi.sources) in pipe.profile_source and "; ".join(jet.sources) in pipe.profile_source
    assert "SNN counts of sdt" in pipe.counts_source and "tiny stand-in" in pipe.counts_source
    mem = e[e.evaluation == "memory/lemaire_45nm"].set_index("component")
    assert mem.loc["frontend", "counts_source"] == "tiny stand-in"
    assert mem.loc["frontend", "profile_source"] == mem.loc["model", "profile_source"]


def test_paper_constants_are_read_from_the_profile_not_the_code():
    import dataclasses

    from neuroposter.profiling.profiles import load_profile
    from neuroposter.report.headline import key_views
    from neuroposter.report.tables import PAPER_PROFILE, paper_constants

    p = load_profile(PAPER_PROFILE)
    assert paper_constants() == f"E_MAC {p.energy['e_mac_pj']:g} / E_AC {p.energy['e_ac_pj']:g} pJ"
    other = dataclasses.replace(p, energy={**p.energy, "e_mac_pj": 3.1, "e_ac_pj": 0.1})
    assert paper_constants(other) == "E_MAC 3.1 / E_AC 0.1 pJ"
    assert paper_constants() in key_views(pd.DataFrame(columns=["evaluation"]), "jetson_agx_orin")[0].title


def test_device_view_text_names_the_profiles_of_this_report():
    from neuroposter.report.sections import device_profiles_where

    e = pd.DataFrame([
        {"view": "device", "component": "model", "profile": "truenorth", "scope": "all-in", "available": True},
        {"view": "device", "component": "model", "profile": "mychip", "scope": "per-term", "available": False},
        {"view": "device", "component": "frontend", "profile": "loihi2", "scope": "per-term", "available": False},
        {"view": "memory", "component": "model", "profile": "lemaire_45nm", "scope": "per-term", "available": False},
    ])
    assert device_profiles_where(e, scope="all-in") == "truenorth"
    assert device_profiles_where(e, available=False) == "mychip"
    assert device_profiles_where(e.iloc[:0], available=False) == "none in this report"
