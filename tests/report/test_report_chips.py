"""The report's per-chip table and plot: what runs on each chip target, its accuracy beside the full model's and
the constant baseline, its energy from the bundle's own op counts priced with the chip's profile (the host part on
the host profile), the mapping -- and every chip without a deployment listed with its refusal."""

from __future__ import annotations

import json
import re
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
import yaml

from neuroposter.manifest import write_manifest
from neuroposter.profiling.counts import LayerCounts, OpCounts
from neuroposter.profiling.stored import StoredCounts, write_op_counts
from neuroposter.report.chips import chip_rows, chip_target_profiles, chips_display, chips_text

PROFILES = Path(__file__).resolve().parents[2] / "hardware_profiles"
HOST_PROFILE = "jetson_agx_orin"
FULL = {"map": 0.74, "micro_f1": 0.58}
BASELINES = {"most_frequent": {"map": 0.27, "micro_f1": 0.36}, "prior": {"map": 0.25, "micro_f1": 0.40}}


# -- independent expectations: the profile's YAML read here, not through neuroposter ------------------------------


def _constant(profile: str, key: str) -> tuple[float | None, float | None, float | None]:
    """``(point, low, high)`` in pJ of ``energy.<key>_pj`` / ``_nj`` in the profile's YAML (None: unpublished; a
    null value with a ``min`` is a lower bound: point = low = min, high None)."""
    energy = yaml.safe_load((PROFILES / f"{profile}.yaml").read_text())["energy"]
    for unit, scale in (("pj", 1.0), ("nj", 1000.0)):
        raw = energy.get(f"{key}_{unit}")
        if raw is None and f"{key}_{unit}" not in energy:
            continue
        if not isinstance(raw, dict):
            return (None, None, None) if raw is None else (raw * scale,) * 3
        v, lo, hi = raw.get("value"), raw.get("min"), raw.get("max", raw.get("value"))
        point = v if v is not None else lo
        return (None if point is None else point * scale, None if (lo if lo is not None else v) is None
                else (lo if lo is not None else v) * scale, None if hi is None else hi * scale)
    return None, None, None


# -- counts made by hand ------------------------------------------------------------------------------------------


def _counts(name: str, *, synops: float, dense: float, neurons: int, updates: float, driven: float, spikes: float,
            weights: int) -> OpCounts:
    """One synapse layer feeding one neuron layer, per inference (T = 4, 3 samples)."""
    return OpCounts(name=name, kind="snn", T=4, samples=3, weight_bits=8, state_bits=16, meta={}, layers=(
        LayerCounts(name=f"{name}.fc", op_type="Affine", kind="synapse", dense_ops=dense, effective_acs=synops,
                    n_weights=weights, weight_fetches=synops),
        LayerCounts(name=f"{name}.sn", op_type="LIF", kind="neuron", n_neurons=neurons, updates_dense=updates,
                    updates_effective=driven, spikes=spikes)))


CHIP_SPINNAKER = _counts("sdt@spinnaker", synops=1200.0, dense=9000.0, neurons=40, updates=160.0, driven=90.0,
                         spikes=33.0, weights=600)
CHIP_XYLO = _counts("fit@xylo", synops=300.0, dense=2000.0, neurons=71, updates=284.0, driven=200.0, spikes=50.0,
                    weights=1100)
HOST_XYLO = _counts("fit@host", synops=5000.0, dense=106496.0, neurons=16, updates=64.0, driven=64.0, spikes=20.0,
                    weights=26624)


def _bundle(root: Path, chip: str, run: str, *, ok: bool, profile: str, mAP: float = 0.7, reason: str = "",
            counts: dict[str, OpCounts] | None = None, totals: dict | None = None, placement: dict | None = None,
            verification: dict | None = None, precision: int | None = 8) -> SimpleNamespace:
    d = root / chip / run
    d.mkdir(parents=True)
    mapping = {"profile": profile, "fits": ok, "verdict": "fits" if ok else f"does not fit: {reason}",
               "totals": totals or {"neurons": 48768, "synapses": 25256960, "cores": 59, "chips": 4,
                                    "synapse_bytes_min": 50513920}}
    if placement is not None:
        mapping["placement"] = placement
    summ: dict = {"target": chip, "run": run, "profile": profile, "ok": ok, "precision": {"weight_bits": precision},
                  "mapping": {k: mapping[k] for k in ("fits", "verdict", "totals")}}
    if not ok:
        summ["reason"] = f"{chip} cannot host this network: {reason}"
    if ok or verification:
        summ["verification"] = {"deployed_vs_trained": {
            "samples": 115, "map": {"deployed": mAP, "reference": 0.74}, "micro_f1": {"deployed": 0.55, "reference": 0.58},
            "intervals": {"map": {"deployed": [mAP - 0.05, mAP + 0.04]},
                          "micro_f1": {"deployed": [0.5, 0.6]}}}, **(verification or {})}
    (d / "summary.json").write_text(json.dumps(summ))
    (d / "mapping.json").write_text(json.dumps(mapping))
    if counts:
        write_op_counts(d, {k: StoredCounts(c, f"hand-made {k} counts", {"samples_requested": 3})
                            for k, c in counts.items()})
    return SimpleNamespace(path=d, target=chip, run=run)


def _run(name: str, model: str, kwargs: dict | None = None, deploy: dict | None = None,
         baselines: bool = True) -> SimpleNamespace:
    mj = {"model": model, "kwargs": kwargs or {}, **({"deploy": deploy} if deploy else {})}
    metrics = {"test": dict(FULL) if model == "sdt" else {"map": 0.6, "micro_f1": 0.5}}
    if baselines:
        metrics["baselines"] = BASELINES
    return SimpleNamespace(name=name, model=model, model_json=mj, metrics=metrics)


@pytest.fixture
def chips_case(tmp_path: Path) -> tuple[pd.DataFrame, list]:
    runs = [_run("sdt", "sdt"),
            _run("fit-xylo", "chip-snn", {"d_in": 1664, "d_host": 16, "widths": [63], "n_classes": 8,
                                          "neuron": "xylo"}, baselines=False)]
    root = tmp_path / "export"
    bundles = [
        _bundle(root, "spinnaker", "sdt", ok=True, profile="spinnaker", mAP=0.73, counts={"model": CHIP_SPINNAKER},
                placement={"chips_used": 2, "system_chips": 48, "system": "SpiNN-5 board",
                           "synapse_bytes_per_chip": [30000000, 20513920]}),
        _bundle(root, "loihi", "sdt", ok=True, profile="loihi2", mAP=0.745, counts={"model": CHIP_SPINNAKER},
                totals={"neurons": 48768, "synapses": 23000120, "cores": 19, "chips": 1,
                        "synapse_bytes_min": 599963},
                verification={"simulator_vs_reference": {"simulator": "lava 0.10", "exact": True,
                                                         "mismatched_spikes": 0}}),
        _bundle(root, "xylo", "sdt", ok=False, profile="xylo", reason="neurons_per_chip: needs 48768 > 1000"),
        _bundle(root, "xylo", "fit-xylo", ok=True, profile="xylo", mAP=0.55,
                counts={"model": CHIP_XYLO, "host": HOST_XYLO},
                totals={"neurons": 71, "synapses": 1120, "cores": 1, "chips": 1, "synapse_bytes_min": 1120},
                verification={"xylosim": {"simulator": {"name": "xylosim", "version": "0.1"}, "exact": False,
                                          "mismatched_spikes": 3}}),
        _bundle(root, "truenorth", "sdt", ok=False, profile="truenorth", reason="fan_in: needs 2048 > 256"),
        _bundle(root, "nir", "sdt", ok=True, profile="loihi2"),               # not a chip: never in the table
    ]
    rows = chip_rows(bundles, runs, host_profile=HOST_PROFILE)
    return rows, bundles


def test_every_chip_target_has_a_block(chips_case) -> None:
    rows, _ = chips_case
    targets = chip_target_profiles()
    assert set(targets) == {"loihi", "spinnaker", "spinnaker2", "truenorth", "xylo", "speck"}
    assert targets["loihi"] == "loihi2" and targets["xylo"] == "xylo"
    assert list(dict.fromkeys(rows["chip"])) == list(targets)              # registry order, nir left out
    status = rows.groupby("chip")["status"].apply(set).to_dict()
    assert status["spinnaker2"] == status["speck"] == status["truenorth"] == {"nothing deployed"}
    assert status["xylo"] == {"deployed"}                                  # the fitted variant, the refusal aside


def test_accuracy_beside_full_model_and_baseline(chips_case) -> None:
    rows, _ = chips_case
    sp = rows[rows["chip"] == "spinnaker"].iloc[0]
    assert sp["run"] == "sdt" and sp["variant"] == "full model (sdt), partitioned"
    assert sp["deployed_map"] == 0.73 and sp["deployed_map_lo"] == pytest.approx(0.68)
    assert sp["full_run"] == "sdt" and sp["full_map"] == FULL["map"] and sp["full_micro_f1"] == FULL["micro_f1"]
    assert sp["baseline_map"] == 0.27 and sp["baseline_map_name"] == "most_frequent"
    assert sp["baseline_micro_f1"] == 0.40
    xy = rows[rows["chip"] == "xylo"].iloc[0]
    assert xy["run"] == "fit-xylo"
    assert xy["variant"] == "fitted variant (chip-snn: host 1664->16, 63-8, xylo neuron, int8)"
    assert xy["full_map"] == FULL["map"] and xy["baseline_map"] == 0.27    # the full run's baselines (none of its own)
    assert "sdt: " in xy["why"] and "48768 > 1000" in xy["why"]           # why a fitted variant runs there
    assert (xy["neurons"], xy["synapses"]) == (71, 1120)
    assert xy["weights"] == 1100 + 26624                                   # chip + host weights of the deployed graph


def test_energy_is_counts_times_the_profiles_constants(chips_case) -> None:
    rows, _ = chips_case
    sp = rows[rows["chip"] == "spinnaker"].iloc[0]
    e_syn, e_upd = _constant("spinnaker", "e_synop")[0], _constant("spinnaker", "e_neuron_update")[0]
    assert _constant("spinnaker", "e_neuron_update_idle") == (None, None, None)
    expect_pj = 1200.0 * e_syn + 160.0 * e_upd
    e_spike = _constant("spinnaker", "e_spike")[0]
    if e_spike is not None:
        expect_pj += 33.0 * e_spike
    assert sp["chip_energy"] == "priced" and sp["chip_mj"] == pytest.approx(expect_pj * 1e-9)
    assert sp["energy_mj"] == pytest.approx(expect_pj * 1e-9) and pd.isna(sp["host_mj"])
    # Xylo publishes no per-op energy: "unpublished", nothing guessed; the host part priced on the host profile
    xy = rows[rows["chip"] == "xylo"].iloc[0]
    assert _constant("xylo", "e_synop")[0] is None
    assert xy["chip_energy"] == "unpublished" and pd.isna(xy["chip_mj"]) and pd.isna(xy["energy_mj"])
    assert "e_synop_pj" in xy["chip_energy_reason"]
    point, low, high = _constant(HOST_PROFILE, "e_mac")
    # an SNN on an ANN platform runs densely: (dense synaptic ops + every neuron update) x e_mac
    assert xy["host_profile"] == HOST_PROFILE
    assert xy["host_mj"] == pytest.approx((106496.0 + 64.0) * point * 1e-9)
    assert xy["host_low_mj"] == pytest.approx((106496.0 + 64.0) * low * 1e-9)
    assert pd.isna(xy["host_high_mj"]) == (high is None)
    lo = rows[rows["chip"] == "loihi"].iloc[0]
    assert lo["profile"] == "loihi2" and lo["chip_energy"] == "unpublished"


def test_mapping_refusals_and_display(chips_case) -> None:
    rows, _ = chips_case
    sp = rows[rows["chip"] == "spinnaker"].iloc[0]
    assert (sp["chips_used"], sp["system_chips"], sp["system"], sp["cores"]) == (2, 48, "SpiNN-5 board", 59)
    lo = rows[rows["chip"] == "loihi"].iloc[0]
    # no placement recorded by the mapper: the system's chips come from the profile
    system = yaml.safe_load((PROFILES / "loihi2.yaml").read_text()).get("system") or {}
    assert lo["system_chips"] == system.get("chips", 1) and lo["chips_used"] == 1
    tn = rows[rows["chip"] == "truenorth"].iloc[0]
    assert tn["status"] == "nothing deployed" and "fan_in: needs 2048 > 256" in tn["why"]
    s2 = rows[rows["chip"] == "spinnaker2"].iloc[0]
    assert "no export bundle" in s2["why"] and "--target spinnaker2" in s2["why"]
    shown = chips_display(rows).set_index("chip")
    assert shown.loc["xylo [xylo]", "chip mJ / inference"] == "unpublished"
    assert shown.loc["xylo [xylo]", "host mJ / inference"].endswith(f"[{HOST_PROFILE}]")
    assert "xylosim 0.1: 3 spikes differ" in shown.loc["xylo [xylo]", "verified against"]
    assert "lava 0.10: spike-exact" in shown.loc["loihi [loihi2]", "verified against"]
    assert shown.loc["spinnaker [spinnaker]", "mapping"] == ("2 of 48 chips (SpiNN-5 board), 59 cores, synapse memory "
                                                             ">= 50.5 MB (at most 30 MB on one chip)")
    assert shown.loc["spinnaker [spinnaker]", "deployed mAP [95% CI]"] == "0.730 [0.680-0.770]"
    assert shown.loc["spinnaker [spinnaker]", "full model mAP"] == "0.740 (sdt)"
    assert shown.loc["truenorth [truenorth]", "model running there"] == "nothing deployed"
    text = chips_text(rows)
    assert any(t.startswith("truenorth: nothing deployed") for t in text)
    assert any("fit-xylo (fitted variant)" in t and "unpublished" in t for t in text)


def test_a_verified_bundle_without_counts_is_not_counted(tmp_path: Path) -> None:
    b = _bundle(tmp_path, "spinnaker", "sdt", ok=True, profile="spinnaker")
    rows = chip_rows([b], [_run("sdt", "sdt")], host_profile=HOST_PROFILE, targets={"spinnaker": "spinnaker"})
    r = rows.iloc[0]
    assert r["status"] == "deployed" and r["chip_energy"] == "not counted" and "export it again" in \
        r["chip_energy_reason"]
    assert chips_display(rows)["chip mJ / inference"].iloc[0] == "not counted"


def test_figure_is_drawn_with_an_unpublished_strip(chips_case, tmp_path: Path) -> None:
    from neuroposter.report.figures import chips_accuracy_vs_energy

    rows, _ = chips_case
    name = chips_accuracy_vs_energy(rows, tmp_path / "chips.png")
    assert name == "chips.png" and (tmp_path / "chips.png").stat().st_size > 5000
    assert chips_accuracy_vs_energy(rows[rows["status"] != "deployed"], tmp_path / "none.png") is None
    assert not (tmp_path / "none.png").exists()


def test_report_writes_the_chip_section_csv_and_figure(tmp_path: Path) -> None:
    """End to end: the per-chip section, chips.csv and the plot embedded in the HTML."""
    from neuroposter.report import build_report

    ws = tmp_path / "ws"
    for run in (_run("sdt", "sdt"), _run("fit-xylo", "chip-snn", {"d_in": 1664, "d_host": 16, "neuron": "xylo"})):
        d = ws / "runs" / run.name
        d.mkdir(parents=True)
        (d / "model.json").write_text(json.dumps(run.model_json))
        (d / "metrics.json").write_text(json.dumps({"model": run.model, **run.metrics}))
        write_manifest(d, "run", key=f"key-{run.name}", extra={"model": run.model})
    root = tmp_path / "export"
    made = [_bundle(root, "spinnaker", "sdt", ok=True, profile="spinnaker", mAP=0.73,
                    counts={"model": CHIP_SPINNAKER}),
            _bundle(root, "xylo", "fit-xylo", ok=True, profile="xylo", mAP=0.55,
                    counts={"model": CHIP_XYLO, "host": HOST_XYLO}),
            _bundle(root, "truenorth", "sdt", ok=False, profile="truenorth", reason="fan_in: needs 2048 > 256")]
    for b in made:
        write_manifest(b.path, "export", inputs={"run": {"path": str(ws / "runs" / b.run), "key": f"key-{b.run}"}},
                       extra={"target": b.target, "source_run": b.run})
    res = build_report(ws, name="c", exports=root, counts={"sdt": CHIP_SPINNAKER, "fit-xylo": CHIP_XYLO},
                       frontend=None, latency=False, bootstrap=0, profiles=["spinnaker", "xylo"])
    out = res.out_dir
    assert "chips.csv" in res.files and "chips_accuracy_vs_energy.png" in res.files
    csv = pd.read_csv(out / "chips.csv")
    assert set(csv["chip"]) == set(chip_target_profiles())
    assert csv.loc[csv["chip"] == "spinnaker", "chip_mj"].iloc[0] == pytest.approx(
        (1200.0 * _constant("spinnaker", "e_synop")[0] + 160.0 * _constant("spinnaker", "e_neuron_update")[0])
        * 1e-9)
    html = (out / "report.html").read_text()
    assert "chips_accuracy_vs_energy.png" in re.findall(r"<img src='([^']+)'", html)
    assert "Per chip: the model that runs there" in html and "nothing deployed" in html
    md = (out / "report.md").read_text()
    assert md.index("Deployed on a chip") < md.index("Per chip:") < md.index("Energy per view and profile")
    assert np.isfinite(csv["deployed_map"].dropna()).all()
