"""The report's side-by-side pipelines: which bundle stands for a pipeline, its deployed accuracy and energy, and
which pipeline wins where."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import pandas as pd

from neuroposter.report.pipelines import (PIPELINES, deployed_bundle, pipeline_rows, pipeline_winners,
                                          pipelines_display, pipelines_text)


def _bundle(tmp: Path, target: str, run: str, *, mAP: float | None = None, bound: float | None = 0.95,
            agreement: float = 1.0, ok: bool = True) -> SimpleNamespace:
    d = tmp / target / run
    d.mkdir(parents=True)
    summ: dict = {"ok": ok}
    if mAP is not None:
        summ["verification"] = {"deployed_vs_trained": {
            "set_agreement": agreement, "map": {"deployed": mAP},
            "intervals": {"map": {"deployed": [mAP - 0.04, mAP + 0.04]}}}}
        if bound is not None:
            summ["gates"] = [{"check": "deployed_vs_trained", "min": bound, "ok": agreement >= bound}]
    (d / "summary.json").write_text(json.dumps(summ))
    return SimpleNamespace(path=d, target=target, run=run)


def _run(name: str, model: str, qat: bool = False) -> SimpleNamespace:
    return SimpleNamespace(name=name, model=model, model_json={"deploy": {"target": "loihi"}} if qat else {},
                           metrics={}, fitted=False)


def _head(rows: list[tuple[str, float, float]]) -> pd.DataFrame:
    return pd.DataFrame([{"run": r, "map": m, "baseline_map": 0.27, "sdt_paper_pipeline_mj": e,
                          "sdt_paper_pipeline_lower_bound": False, "sdt_paper_priced_on": "p"} for r, m, e in rows])


VIEWS = [SimpleNamespace(key="sdt_paper", title="SDT-paper fp32", short="SDT-paper view (p)")]


def test_the_device_chip_bundle_that_passed_its_bound_stands_for_the_pipeline(tmp_path: Path) -> None:
    runs = [_run("sdt", "sdt"), _run("sdt-loihi", "sdt", qat=True), _run("sdt-spinnaker2", "sdt", qat=True)]
    bundles = [_bundle(tmp_path, "nir", "sdt"),
               _bundle(tmp_path, "loihi", "sdt", mAP=0.74, bound=0.0, agreement=0.9),      # gate off
               _bundle(tmp_path, "spinnaker2", "sdt-spinnaker2", mAP=0.77),
               _bundle(tmp_path, "loihi", "sdt-loihi", mAP=0.79),
               _bundle(tmp_path, "truenorth", "sdt", mAP=0.5, ok=False)]                      # refused
    b, _ = deployed_bundle(bundles, runs, "sdt")
    assert (b.target, b.run) == ("loihi", "sdt-loihi")
    # without the Loihi bundle of the QAT run: another chip that passed its bound comes before a gate that was off
    b, _ = deployed_bundle([x for x in bundles if x.run != "sdt-loihi"], runs, "sdt")
    assert (b.target, b.run) == ("spinnaker2", "sdt-spinnaker2")
    # only the NIR bundle: it stands (its graph equals the model), a refused chip bundle never does
    b, _ = deployed_bundle([bundles[0], bundles[-1]], runs, "sdt")
    assert b.target == "nir"
    assert deployed_bundle([bundles[-1]], runs, "sdt") is None


def test_rows_take_deployed_accuracy_and_the_deployed_runs_energy(tmp_path: Path) -> None:
    runs = [_run("sdt", "sdt"), _run("sdt-loihi", "sdt", qat=True), _run("sdt-pixels", "sdt-pixels"),
            _run("cnn", "cnn"), _run("vit", "vit")]
    bundles = [_bundle(tmp_path, "loihi", "sdt-loihi", mAP=0.79), _bundle(tmp_path, "nir", "sdt-pixels"),
               _bundle(tmp_path, "onnx", "cnn", mAP=0.78, bound=None), _bundle(tmp_path, "onnx", "vit", mAP=0.70)]
    head = _head([("sdt", 0.74, 14.5), ("sdt-loihi", 0.79, 14.4), ("sdt-pixels", 0.76, 0.0045), ("cnn", 0.78, 14.5),
                  ("vit", 0.70, 0.034)])
    ci = pd.DataFrame([{"run": "sdt-pixels", "map_low": 0.71, "map_high": 0.81}])
    rows = pipeline_rows(bundles, runs, head, ci, VIEWS)
    assert list(rows["model"]) == [p.model for p in PIPELINES if p.model != "sdt-frontend"]   # order; absent left out
    r = rows.set_index("model")
    assert r.loc["sdt", "run"] == "sdt-loihi" and r.loc["sdt", "map"] == 0.79
    assert r.loc["sdt", "sdt_paper_mj"] == 14.4                         # the deployed run's energy, not the float's
    assert r.loc["sdt-pixels", "target"] == "nir"                        # NIR: the run's own mAP and bootstrap interval
    assert (r.loc["sdt-pixels", "map"], r.loc["sdt-pixels", "map_lo"]) == (0.76, 0.71)
    assert r.loc["vit", "map_hi"] == 0.70 + 0.04
    shown = pipelines_display(rows, VIEWS)
    assert shown["SDT-paper view, mJ"].tolist() == ["14.4", "0.0045", "14.5", "0.034"]


def test_winner_is_the_cheapest_pipeline_not_distinguishable_from_the_best() -> None:
    def row(name: str, m: float, lo: float, hi: float, e: float | None) -> dict:
        return {"pipeline": name, "map": m, "map_lo": lo, "map_hi": hi, "sdt_paper_mj": e,
                "sdt_paper_lower_bound": False}

    rows = pd.DataFrame([row("best", 0.80, 0.76, 0.84, 10.0), row("close", 0.75, 0.70, 0.77, 1.0),
                         row("far", 0.60, 0.55, 0.75, 0.001), row("unpriced", 0.79, 0.75, 0.83, None)])
    w = pipeline_winners(rows, VIEWS).iloc[0]
    assert w["best"] == "best" and w["contenders"] == "best; close; unpriced"
    assert (w["winner"], w["winner_mj"]) == ("close", 1.0)              # "far" is cheaper but worse
    text = pipelines_text(rows, VIEWS)
    assert "the most accurate is the best (0.800 [0.760, 0.840]" in text and "the close in the SDT-paper view (1 mJ)" in text
    assert "not distinguishable from the close, unpriced" in text
    assert pipeline_winners(rows.iloc[0:0], VIEWS).empty and pipelines_text(rows.iloc[0:0], VIEWS) is None


def test_a_pipeline_without_a_run_is_named_with_the_command_that_makes_it() -> None:
    from neuroposter.report.pipelines import missing_pipelines

    rows = pd.DataFrame([{"model": p.model} for p in PIPELINES if p.model != "sdt-frontend"])
    text = missing_pipelines(rows)
    assert "spiking front end" in text and "--init-from sdt" in text and "pixel SDT" not in text
    assert missing_pipelines(pd.DataFrame([{"model": p.model} for p in PIPELINES])) is None
