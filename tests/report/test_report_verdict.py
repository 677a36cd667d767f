"""The verdict (numbers in -> sentences out, break-even against a hand computation), the data banner, and the
same-budget seed pooling."""

from __future__ import annotations

import json
import statistics
from pathlib import Path
from types import SimpleNamespace

import pandas as pd
import pytest

from neuroposter.profiling.counts import LayerCounts, OpCounts
from neuroposter.profiling.profiles import load_profile
from neuroposter.report.headline import KeyView
from neuroposter.report.tables import PAPER_PROFILE

LABEL = "sdt_paper/horowitz_45nm_fp32 (first layer once)"
VIEW = KeyView("sdt_paper", "SDT-paper long title", LABEL, "sdt_paper/horowitz_45nm_fp32", "SDT-paper view")
T = 4


def _counts() -> OpCounts:
    """A hand-made SNN: encoding layer (1e9 dense ops over T), one neuron layer at a 10 % firing rate, a second
    connection layer with 5e8 synops."""
    return OpCounts("sdt", "snn", T, 8, (
        LayerCounts("enc", "Conv1d", "synapse", dense_ops=1e9, effective_acs=3e8),
        LayerCounts("sn", "LIF", "neuron", n_neurons=50, spikes=2e7, updates_dense=2e8, updates_effective=1.2e8),
        LayerCounts("fc", "Affine", "synapse", dense_ops=4e9, effective_acs=5e8)))


def _hand_energy_mj(scale: float) -> float:
    """The SDT-paper view by hand: the encoding layer's dense ops per step x E_MAC, once; every other synop x
    E_AC, scaled with the firing rate."""
    p = load_profile(PAPER_PROFILE)
    return (1e9 / T * p.energy["e_mac_pj"] + scale * 5e8 * p.energy["e_ac_pj"]) * 1e-9


def _models(alt_energy: dict[str, float], fe: float, cnn_paired=(+0.01, -0.05, +0.07)) -> pd.DataFrame:
    e1 = _hand_energy_mj(1.0)
    rows = [{"model": "sdt", "run": "sdt", "kind": "snn", "map": 0.60, "map_low": 0.50, "map_high": 0.70,
             "paired": "reference", "ci_reference": "sdt", "diff_map": None, "diff_map_low": None,
             "diff_map_high": None, "n_seeds": 1, "map_seed_mean": 0.6, "map_seed_sd": None, "baseline_map": 0.2,
             "baseline_map_name": "prior", "sdt_paper_head_mj": e1, "sdt_paper_frontend_mj": fe,
             "sdt_paper_pipeline_mj": fe + e1, "sdt_paper_lower_bound": False, "sdt_paper_evaluation": LABEL,
             "runs_on": "loihi (sdt)"}]
    diffs = {"cnn": cnn_paired, "vit": (-0.02, -0.10, +0.05), "ann-transformer": (0.0, -0.06, +0.06)}
    for m, e in alt_energy.items():
        d = diffs[m]
        rows.append({"model": m, "run": m, "kind": "ann", "map": 0.60 - d[0], "map_low": 0.5, "map_high": 0.7,
                     "paired": "yes", "ci_reference": "sdt", "diff_map": d[0], "diff_map_low": d[1],
                     "diff_map_high": d[2], "n_seeds": 1, "map_seed_mean": None, "map_seed_sd": None,
                     "baseline_map": 0.2, "baseline_map_name": "prior",
                     "sdt_paper_head_mj": e - (fe if m == "ann-transformer" else 0.0),
                     "sdt_paper_frontend_mj": fe if m == "ann-transformer" else None, "sdt_paper_pipeline_mj": e,
                     "sdt_paper_lower_bound": False, "sdt_paper_evaluation": "sdt_paper/horowitz_45nm_fp32",
                     "runs_on": ""})
    return pd.DataFrame(rows)


def _break_even(models):
    from neuroposter.report.verdict import break_even_table

    run = SimpleNamespace(name="sdt", counts=_counts())
    return break_even_table(models, [run], [VIEW], {PAPER_PROFILE: load_profile(PAPER_PROFILE)}, "sdt")


def test_break_even_firing_rate_equals_a_hand_computation():
    from neuroposter.report.verdict import verdict_text

    e0, e1, fe = _hand_energy_mj(0.0), _hand_energy_mj(1.0), 1.0
    alt = fe + e0 + 0.4 * (e1 - e0)            # the pipeline breaks even at 40 % of the measured activity
    models = _models({"ann-transformer": alt, "cnn": 3 * (fe + e1)}, fe)
    be = _break_even(models).iloc[0]
    assert be["snn_floor_mj"] == pytest.approx(e0, rel=1e-9) and be["snn_model_mj"] == pytest.approx(e1, rel=1e-9)
    assert be["snn_firing_rate"] == pytest.approx(2e7 / 2e8)
    assert be["status"] == "break-even" and be["alt_model"] == "ann-transformer"
    assert be["rate_break_even"] == pytest.approx(0.4 * 0.1, rel=1e-9)          # 4 % of spikes per neuron-step
    assert be["frontend_break_even_mj"] == pytest.approx(alt - e1, rel=1e-9)
    text = verdict_text(models, _break_even(models), pd.DataFrame(), snn="sdt", frontend_counted=True,
                        frontend_is_cnn_backbone=False)
    assert text[0].startswith("No, not on this evidence")
    assert "not distinguishable from the cnn's and the ann-transformer's" in text[0]
    view = next(t for t in text if t.startswith("SDT-paper view:"))
    assert "mean firing rate below 4 % (it runs at 10 %)" in view
    assert f"{e1:.3g} mJ alone" in view and f"{fe + e1:.3g} mJ with the front end" in view


def _hand_energy_at_steps_mj(steps: int) -> float:
    """The SDT-paper view by hand at ``steps`` timesteps and the measured activity per step: the encoding layer is
    computed once per inference (this label), every other synop is made per step."""
    p = load_profile(PAPER_PROFILE)
    return (1e9 / T * p.energy["e_mac_pj"] + 5e8 / T * steps * p.energy["e_ac_pj"]) * 1e-9


def test_break_even_timesteps_equal_a_hand_computation():
    from neuroposter.report.verdict import more_steps, verdict_text

    fe = 1.0
    alt = fe + _hand_energy_at_steps_mj(2) + 1e-12     # the pipeline costs no more than the alternative up to T = 2
    models = _models({"ann-transformer": alt, "cnn": 3 * (fe + _hand_energy_mj(1.0))}, fe)
    be = _break_even(models).iloc[0]
    assert be["status"] == "break-even" and be["snn_steps"] == T
    assert be["steps_break_even"] == 2
    assert fe + _hand_energy_at_steps_mj(3) > alt                      # and not at T = 3
    view = next(t for t in verdict_text(models, _break_even(models), pd.DataFrame(), snn="sdt",
                                        frontend_counted=True, frontend_is_cnn_backbone=False)
                if t.startswith("SDT-paper view:"))
    assert "or at most T = 2 timesteps at the same activity per step (it runs 4)" in view
    # an alternative cheaper than the pipeline at T = 1: no number of steps would do
    models = _models({"ann-transformer": fe + _hand_energy_at_steps_mj(1) * 0.99, "cnn": 3 * fe}, fe)
    be = _break_even(models).iloc[0]
    assert pd.isna(be["steps_break_even"])
    # more_steps keeps weights and multiplies every per-step count
    c2 = more_steps(_counts(), 3)
    assert c2.T == 3 * T and c2.layers[1].spikes == 3 * 2e7 and c2.layers[1].n_neurons == 50
    assert c2.layers[2].effective_acs == 3 * 5e8


def test_zero_spikes_cannot_beat_an_alternative_cheaper_than_the_front_end():
    from neuroposter.report.verdict import verdict_text

    e1, fe = _hand_energy_mj(1.0), 1.0
    models = _models({"vit": fe / 10, "ann-transformer": fe + 2 * e1}, fe)
    be = _break_even(models).iloc[0]
    assert be["status"] == "impossible" and be["alt_model"] == "vit"
    assert pd.isna(be["rate_break_even"])
    assert be["frontend_break_even_mj"] == pytest.approx(fe / 10 - e1, rel=1e-9)
    text = " ".join(verdict_text(models, _break_even(models), pd.DataFrame(), snn="sdt", frontend_counted=True,
                                 frontend_is_cnn_backbone=False))
    assert "so no firing rate breaks even" in text
    assert f"even at zero spikes it costs {fe + _hand_energy_mj(0.0):.3g} mJ" in text
    assert "The head alone is cheaper than the ann-transformer's head" in text


def test_a_significantly_worse_ann_is_no_alternative_and_a_cheaper_pipeline_says_yes():
    from neuroposter.report.verdict import accuracy_relation, verdict_text

    e1, fe = _hand_energy_mj(1.0), 1.0
    # the cnn is cheap but clearly worse (paired CI of sdt - cnn excludes 0): it is not an alternative
    models = _models({"cnn": fe / 100, "ann-transformer": 3 * (fe + e1)}, fe, cnn_paired=(+0.2, +0.1, +0.3))
    assert accuracy_relation(models, "sdt", "cnn")[0] == "lower"
    be = _break_even(models).iloc[0]
    assert be["alt_model"] == "ann-transformer" and be["status"] == "cheaper"
    text = verdict_text(models, _break_even(models), pd.DataFrame(), snn="sdt", frontend_counted=True,
                        frontend_is_cnn_backbone=False)
    assert text[0].startswith("Yes where energy is counted as in: SDT-paper view")
    assert "above the cnn's" in text[0]


def test_a_saving_within_one_percent_is_about_the_same_not_a_yes():
    """The demo's case: the SDT pipeline and its twin's share the front end, which is nearly all of both; a 0.5 %
    saving is 'about the same', and the answer says no meaningful saving."""
    from neuroposter.report.verdict import NEGLIGIBLE_SAVING, verdict_text

    e1, fe = _hand_energy_mj(1.0), 1.0
    alt = (fe + e1) / (1 - 0.005)                      # the twin's pipeline: the SDT's is 0.5 % cheaper
    models = _models({"ann-transformer": alt, "cnn": 3 * (fe + e1)}, fe)
    be = _break_even(models).iloc[0]
    assert be["saving"] == pytest.approx(0.005, rel=1e-9) and 0.005 < NEGLIGIBLE_SAVING
    assert be["status"] == "same"
    text = verdict_text(models, _break_even(models), pd.DataFrame(), snn="sdt", frontend_counted=True,
                        frontend_is_cnn_backbone=False)
    assert text[0].startswith("No meaningful saving") and "within 1 %" in text[0]
    view = next(t for t in text if t.startswith("SDT-paper view:"))
    assert "about the same as the ann-transformer" in view and "(0.5 % less" in view
    # 2 % cheaper is a real saving
    models = _models({"ann-transformer": (fe + e1) / (1 - 0.02), "cnn": 3 * (fe + e1)}, fe)
    assert _break_even(models).iloc[0]["status"] == "cheaper"


def test_no_sdt_run_says_so():
    from neuroposter.report.verdict import verdict_text

    models = _models({"vit": 1.0}, 1e-3)
    assert verdict_text(models[models.model != "sdt"], pd.DataFrame(), pd.DataFrame(), snn="sdt",
                        frontend_counted=True, frontend_is_cnn_backbone=False)[0].startswith("No sdt run")


def _write_manifest(d: Path, kind: str, **kw):
    from neuroposter.manifest import write_manifest

    d.mkdir(parents=True, exist_ok=True)
    write_manifest(d, kind, **kw)


@pytest.mark.parametrize("synthetic", [True, False])
def test_banner_reads_posters_weights_and_split_from_the_manifests(tmp_path, synthetic):
    from neuroposter.report.banner import PROVENANCE_COLUMNS, banner_text, data_provenance, with_provenance

    raw = tmp_path / "raw"
    raw.mkdir()
    (raw / "MovieGenre.csv").write_text("imdbId,Title,Genre,Poster\n")
    if synthetic:
        _write_manifest(raw, "raw", extra={"generator": "synth"})
    ds = tmp_path / "datasets" / "d"
    ds.mkdir(parents=True)
    (ds / "data_report.json").write_text(json.dumps({"split_sizes": {"train": 30, "val": 7, "test": 7}}))
    _write_manifest(ds, "dataset", inputs={"csv": {"path": str(raw / "MovieGenre.csv")}},
                    extra={"genres": ["Drama", "Comedy", "Horror"]})
    feats = tmp_path / "features" / "f"
    _write_manifest(feats, "features", inputs={"dataset": {"path": str(ds)}},
                    extra={"weights": "random", "weights_note": "fell back to random"})
    run = SimpleNamespace(name="sdt", path=tmp_path / "runs" / "sdt", metrics={},
                          manifest={"inputs": {"features": {"path": str(feats)}}})
    p = data_provenance([run])
    assert (p.posters, p.weights, p.n_test, p.genres) == ("synthetic" if synthetic else "kaggle", "random", 7,
                                                          ["Drama", "Comedy", "Horror"])
    text = banner_text(p)
    assert ("SYNTHETIC posters" in text) == synthetic and ("Kaggle" in text) != synthetic
    assert "RANDOM DenseNet-169 weights" in text and "7 test posters, 3 genres" in text
    out = with_provenance(pd.DataFrame({"x": [1, 2]}), p)
    out.to_csv(tmp_path / "t.csv", index=False)
    back = pd.read_csv(tmp_path / "t.csv")
    assert list(back.columns) == ["x", *PROVENANCE_COLUMNS] and list(back["x"]) == [1, 2]
    assert set(back["data_frontend_weights"]) == {"random"} and set(back["data_test_posters"]) == {7}


def test_banner_without_manifests_says_unknown():
    from neuroposter.report.banner import banner_text, data_provenance

    run = SimpleNamespace(name="a", path=Path("/nonexistent/run"), manifest={}, metrics={})
    p = data_provenance([run])
    assert p.posters == "unknown" and p.weights == "unknown"
    assert "posters: unknown" in banner_text(p) and "weights are unknown" in banner_text(p)


def _run(name, model, seed, epochs, mAP, qat=None):
    cfg = {"train": {"seed": seed, "epochs": epochs}}
    if qat is not None:
        cfg["qat"] = {"train": {"epochs": qat}}
    return SimpleNamespace(name=name, model=model, kind="snn" if model == "sdt" else "ann", fitted=False,
                           model_json={}, path=Path("/nonexistent"), metrics={"test": {"map": mAP}},
                           manifest={"config": cfg})


def test_seed_statistics_pool_only_runs_of_the_same_budget():
    from neuroposter.report.headline import headline_text
    from neuroposter.report.seeds import pooled_metric, seed_groups

    runs = [_run("sdt", "sdt", 0, 12, 0.50), _run("sdt-s1", "sdt", 1, 12, 0.54), _run("sdt-long", "sdt", 2, 40, 0.70),
            _run("sdt-loihi", "sdt", 0, 12, 0.66, qat=2), _run("sdt-dup", "sdt", 1, 12, 0.99),
            _run("ann-transformer", "ann-transformer", 0, 12, 0.60),
            _run("ann-s1", "ann-transformer", 1, 12, 0.62)]
    g = seed_groups(runs).set_index("run")
    assert list(g.index[g["pooled"]]) == ["sdt", "sdt-s1", "ann-transformer", "ann-s1"]
    assert g.loc["sdt-long", "reason"] == "another training budget (40 epochs, not 12 epochs)"
    assert g.loc["sdt-loihi", "reason"] == "another training budget (12 epochs + 2 QAT epochs, not 12 epochs)"
    assert g.loc["sdt-dup", "reason"] == "seed 1 already pooled (run sdt-s1)"
    vals, seeds = pooled_metric(seed_groups(runs), runs, "sdt")
    assert vals == [0.50, 0.54] and seeds == [0, 1]
    head = pd.DataFrame([{"run": r.name, "model": r.model, "kind": r.kind, "map": r.metrics["test"]["map"],
                          "baseline_map": 0.2} for r in runs])
    text = " ".join(headline_text(head, [], runs))
    sd = statistics.stdev([0.50, 0.54])
    assert f"sdt: 2 seeds, sd {sd:.3f}" in text                   # the 0.70 and 0.99 runs are not pooled
    assert "sdt-long (another training budget (40 epochs, not 12 epochs))" in text


def test_html_answers_first_and_folds_the_rest(tmp_path):
    """The HTML parses; the data banner, the verdict, the compact table and the figure come before the first
    <details>; Markdown keeps the folded sections after the answer."""
    from html.parser import HTMLParser

    from neuroposter.report.writers import Section, to_html, to_markdown

    answer = Section("Should I deploy?").items(["No.", "Accuracy ..."]).table(pd.DataFrame({"model": ["sdt"]}))
    answer.figure("accuracy_vs_energy.png", "mAP vs energy")
    rest = [Section("Energy", collapsed=True).p("long"), Section("Provenance", collapsed=True).p("x")]
    page = to_html("t", "Data: SYNTHETIC posters", [answer, *rest])

    class Check(HTMLParser):
        def __init__(self):
            super().__init__()
            self.stack, self.order = [], []

        def handle_starttag(self, tag, attrs):
            if tag not in ("meta", "img", "br", "hr"):
                self.stack.append(tag)
            self.order.append(tag + ("." + dict(attrs).get("class", "") if dict(attrs).get("class") else ""))

        def handle_endtag(self, tag):
            assert self.stack and self.stack[-1] == tag, (tag, self.stack[-3:])
            self.stack.pop()

    c = Check()
    c.feed(page)
    assert c.stack == []                                          # every element is closed in order
    first = c.order.index("details")
    table = next(i for i, t in enumerate(c.order) if t.startswith("table"))
    assert c.order.index("div.banner") < c.order.index("ul.answer") < table < c.order.index("img") < first
    assert c.order.count("details") == 2
    md = to_markdown("t", "Data: SYNTHETIC posters", [answer, *rest])
    assert md.index("> **Data: SYNTHETIC") < md.index("## Should I deploy?") < md.index("More detail") < \
        md.index("## Energy") < md.index("## Provenance")


def test_a_fine_tune_reports_the_float_budget_of_the_run_it_started_from(tmp_path):
    """A quantisation-aware fine-tune (`train --init-from sdt`) records the train defaults as its own float budget;
    its float phase is the source run's training, found beside it in the runs folder."""
    from neuroposter.report.seeds import budget_text, training_budget

    runs = tmp_path / "runs"
    (runs / "sdt").mkdir(parents=True)
    (runs / "sdt" / "manifest.json").write_text(json.dumps({"config": {"train": {"epochs": 60}}}))
    qat = {"config": {"train": {"epochs": 40}, "qat": {"train": {"epochs": 30},
                                                      "init_from": {"run": "elsewhere/runs/sdt", "key": "k"}}}}
    run = SimpleNamespace(manifest=qat, path=runs / "sdt-loihi")
    assert budget_text(training_budget(run)) == "60 epochs + 30 QAT epochs"
    run.manifest["config"]["qat"]["init_from"]["run"] = "elsewhere/runs/gone"      # source not here: its own record
    assert budget_text(training_budget(run)) == "40 epochs + 30 QAT epochs"


def test_runs_with_another_patience_are_not_pooled():
    """Early stopping's patience decides how long a run trains: a run with another patience has another budget."""
    from neuroposter.report.seeds import seed_groups

    runs = [_run("sdt", "sdt", 0, 60, 0.50), _run("sdt-s1", "sdt", 1, 60, 0.52), _run("sdt-s2", "sdt", 2, 60, 0.58)]
    runs[0].manifest["config"]["train"]["patience"] = 4
    runs[1].manifest["config"]["train"]["patience"] = 4
    runs[2].manifest["config"]["train"]["patience"] = 5
    g = seed_groups(runs).set_index("run")
    assert list(g.index[g["pooled"]]) == ["sdt", "sdt-s1"]
    assert g.loc["sdt-s2", "reason"] == "another training budget (60 epochs, patience 5, not 60 epochs, patience 4)"


def test_which_model_wins_where_is_the_cheapest_of_those_as_accurate_as_the_best():
    """Per view, among the models whose mAP interval overlaps the best model's, the cheapest pipeline (front end
    included) wins; a model clearly less accurate is no contender however cheap; the cheapest spiking pipeline
    is named beside an ANN winner."""
    from neuroposter.report.verdict import verdict_text, winners

    fe = 1.0
    models = _models({"cnn": 3.0, "vit": 0.5, "ann-transformer": fe + 0.2}, fe)
    pixels = {c: None for c in models.columns}
    pixels.update(model="sdt-pixels", run="sdt-pixels", kind="snn", map=0.58, map_low=0.45, map_high=0.66,
                  sdt_paper_head_mj=0.8, sdt_paper_pipeline_mj=0.8, sdt_paper_frontend_mj=None,
                  sdt_paper_evaluation=LABEL)
    cheap_bad = dict(pixels, model="tiny", run="tiny", kind="ann", map=0.30, map_low=0.25, map_high=0.35,
                     sdt_paper_pipeline_mj=0.001)
    models = pd.DataFrame([*models.to_dict("records"), pixels, cheap_bad])
    w = winners(models, [VIEW]).iloc[0]
    assert w["best_model"] == "vit"                              # mAP 0.62: the most accurate
    assert "tiny" not in w["contenders"].split(", ")            # interval [0.25, 0.35] misses vit's [0.5, 0.7]
    assert w["winner"] == "vit" and w["winner_mj"] == pytest.approx(0.5)
    assert w["spiking"] == "sdt-pixels" and w["spiking_mj"] == pytest.approx(0.8)
    text = verdict_text(models, _break_even(models), pd.DataFrame(), snn="sdt", frontend_counted=True,
                        frontend_is_cnn_backbone=False, views=[VIEW])
    assert text[1].startswith("Which model wins where")
    assert "SDT-paper view: vit (0.5 mJ), cheapest spiking pipeline sdt-pixels (0.8 mJ)" in text[1]
