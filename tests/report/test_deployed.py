"""The report's deployed-accuracy table: read from chip bundles' verification, refusals left out."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import pandas as pd

from neuroposter.report.deployed import deployed_display, deployed_rows, deployed_text


def _bundle(tmp: Path, target: str, run: str, *, set_agreement: float, mAP: float, ok: bool = True,
            bound: float = 0.95) -> SimpleNamespace:
    d = tmp / target / run
    d.mkdir(parents=True)
    entry = {"samples": 115, "set_agreement": set_agreement, "top1_agreement": 1.0,
             "map": {"deployed": mAP, "reference": 0.75, "diff": mAP - 0.75},
             "micro_f1": {"deployed": 0.6, "reference": 0.62, "diff": -0.02},
             "intervals": {"set_agreement": [set_agreement - 0.05, min(1.0, set_agreement + 0.02)],
                           "map": {"deployed": [mAP - 0.1, mAP + 0.1]}}}
    summ = {"ok": ok, "inputs": {"split": "test"}, "verification": {"deployed_vs_trained": entry},
            "gates": [{"check": "deployed_vs_trained", "metric": "set_agreement", "value": set_agreement,
                       "min": bound, "ok": set_agreement >= bound}]}
    (d / "summary.json").write_text(json.dumps(summ))
    return SimpleNamespace(path=d, target=target, run=run)


def _run(name: str, deploy: dict | None = None, init: str | None = None) -> SimpleNamespace:
    mj = {"model": "sdt", **({"deploy": deploy} if deploy else {})}
    metrics = {"qat": {"init_from": {"run": f"/w/runs/{init}"}}} if init else {}
    return SimpleNamespace(name=name, model_json=mj, metrics=metrics)


def test_rows_text_and_display(tmp_path: Path) -> None:
    runs = [_run("sdt"), _run("sdt-loihi", {"target": "loihi"}, init="sdt")]
    bundles = [_bundle(tmp_path, "loihi", "sdt", set_agreement=0.85, mAP=0.74, bound=0.0),
               _bundle(tmp_path, "loihi", "sdt-loihi", set_agreement=1.0, mAP=0.76),
               _bundle(tmp_path, "truenorth", "sdt", set_agreement=0.17, mAP=0.5, ok=False),   # refused
               _bundle(tmp_path, "nir", "sdt", set_agreement=1.0, mAP=0.74)]
    head = pd.DataFrame([{"run": "sdt", "device_head_mj": 0.16, "device_pipeline_mj": 1.5},
                         {"run": "sdt-loihi", "device_head_mj": 0.15, "device_pipeline_mj": 1.5}])
    views = [SimpleNamespace(key="device")]
    rows = deployed_rows(bundles, runs, head, views)
    assert list(rows["run"]) == ["sdt", "sdt-loihi"]                   # refusal and nir left out
    assert list(rows["trained_with"]) == ["float", "loihi arithmetic (QAT, from sdt)"]
    assert rows["device_head_mj"].tolist() == [0.16, 0.15]
    shown = deployed_display(rows, views)
    assert shown["bound"].tolist() == ["off", ">= 0.95: holds"]
    assert shown["same genre set"].iloc[0] == "0.850 [0.800-0.870]"
    assert shown["device mJ (model / pipeline)"].iloc[1] == "0.15 / 1.5"
    text = deployed_text(rows)
    assert len(text) == 1 and "genre set on 1.000" in text[0] and "float-trained sdt" in text[0]
    assert "kept on 0.850" in text[0]


def test_no_chip_bundles_is_an_empty_table(tmp_path: Path) -> None:
    rows = deployed_rows([], [_run("sdt")], pd.DataFrame(), [])
    assert rows.empty and deployed_text(rows) == [] and deployed_display(rows, []).empty
