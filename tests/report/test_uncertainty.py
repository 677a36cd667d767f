"""Bootstrap intervals in the report: accuracy_ci.csv, the accuracy-section table and the headline sentences."""

from __future__ import annotations

import json
import re
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest

from neuroposter.manifest import write_manifest
from neuroposter.train.bootstrap import paired_bootstrap
from neuroposter.train.metrics import constant_baselines, multilabel_metrics

B = 200
N, G = 80, 5


def _labels(seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    y = (rng.random((N, G)) < 0.35).astype(np.uint8)
    y[0] = 1
    return y


def _write_run(ws: Path, name: str, model: str, labels: np.ndarray, scores: np.ndarray,
               thresholds: np.ndarray | None) -> None:
    d = ws / "runs" / name
    d.mkdir(parents=True)
    test = multilabel_metrics(labels, scores, thresholds)
    metrics = {"model": model, "test": test, **test, "baselines": constant_baselines(labels, labels),
               "split_sizes": {"train": N, "val": N, "test": N}}
    if thresholds is not None:
        metrics["thresholds"] = [float(t) for t in thresholds]
    (d / "model.json").write_text(json.dumps({"model": model, "kwargs": {}}))
    (d / "metrics.json").write_text(json.dumps(metrics))
    np.savez(d / "predictions_test.npz", scores=scores.astype(np.float32), labels=labels.astype(np.uint8))
    write_manifest(d, "run", key=f"key-{name}", config={"train": {"seed": 0}}, extra={"model": model})


@pytest.fixture
def ci_ws(tmp_path):
    """sdt and its twin of similar quality, a clearly worse cnn (scores unrelated to the labels), and a vit whose
    test labels are in another order (not the same test set)."""
    rng = np.random.default_rng(1)
    y = _labels()
    ws = tmp_path / "ws"
    t = np.full(G, 0.45)
    good = lambda: np.clip(0.45 * y + 0.28 + rng.normal(0, 0.12, y.shape), 0, 1)  # noqa: E731
    _write_run(ws, "sdt", "sdt", y, good(), t)
    _write_run(ws, "ann-transformer", "ann-transformer", y, good(), t)
    _write_run(ws, "cnn", "cnn", y, np.clip(0.5 + rng.normal(0, 0.2, y.shape), 0, 1), t)
    perm = rng.permutation(N)
    _write_run(ws, "vit", "vit", y[perm], good()[perm], None)
    return ws, None


def _build(ws, exports, name="ci"):
    from neuroposter.report import build_report

    return build_report(ws, name=name, exports=exports, frontend=None, latency=False,
                        profiles=["loihi"], bootstrap=B, bootstrap_seed=7)


def test_headline_states_the_ci_numbers_of_accuracy_ci_csv(ci_ws):
    ws, exports = ci_ws
    res = _build(ws, exports)
    out = ws / "reports" / "ci"
    ci = pd.read_csv(out / "accuracy_ci.csv").set_index("run")
    assert "accuracy_ci.csv" in res.files and "accuracy_ci.png" in res.files
    assert list(ci.index) == ["ann-transformer", "cnn", "sdt", "vit"]
    assert (ci["bootstrap_B"] == B).all() and (ci["bootstrap_seed"] == 7).all() and (ci["reference"] == "sdt").all()
    assert ci.loc["sdt", "paired"] == "reference"
    assert ci.loc["ann-transformer", "paired"] == "yes" and ci.loc["cnn", "paired"] == "yes"
    assert ci.loc["vit", "paired"].startswith("no: test labels differ")
    assert ci.loc["vit", ["diff_map", "diff_map_low", "diff_map_high"]].isna().all()
    assert not np.isnan(ci.loc["vit", "map_low"])                 # its own interval is still there
    assert np.isnan(ci.loc["vit", "micro_f1_tuned_low"])          # no thresholds: no tuned interval
    # the CSV equals a direct paired bootstrap of the stored predictions
    z = {r: np.load(ws / "runs" / r / "predictions_test.npz") for r in ("sdt", "cnn")}
    direct = paired_bootstrap(z["sdt"]["labels"], z["sdt"]["scores"], z["cnn"]["labels"], z["cnn"]["scores"],
                              np.full(G, 0.45), np.full(G, 0.45), B=B, seed=7)
    for m, iv in direct.diff.items():
        assert (ci.loc["cnn", f"diff_{m}"], ci.loc["cnn", f"diff_{m}_low"], ci.loc["cnn", f"diff_{m}_high"]) == \
            pytest.approx((iv.point, iv.low, iv.high), abs=1e-9)
    assert ci.loc["sdt", "map"] == pytest.approx(json.loads((ws / "runs/sdt/metrics.json").read_text())["map"])
    # sdt is clearly better than the random cnn: the interval excludes 0
    assert ci.loc["cnn", "diff_map_low"] > 0 and bool(ci.loc["cnn", "diff_map_excludes_0"])

    text = " ".join(res.summary)
    assert "test-set sampling noise only, NOT seed-to-seed training noise" in text
    assert "Seed noise NOT assessed" in text                      # the seed-noise sentence is kept
    assert f"B = {B} resamples, seed 7" in text and f"over the {N} test posters" in text
    titles = {"map": "mAP", "micro_f1": "micro-F1@0.5", "micro_f1_tuned": "micro-F1 (tuned thr.)"}
    for run in ("ann-transformer", "cnn"):
        assert f"sdt - {run}: " in text
        for m, title in titles.items():
            r = ci.loc[run]
            verdict = "excludes" if bool(r[f"diff_{m}_excludes_0"]) else "includes"
            assert (f"{title} {r[f'diff_{m}']:+.3f} [95% CI {r[f'diff_{m}_low']:+.3f}, "
                    f"{r[f'diff_{m}_high']:+.3f}] (CI {verdict} 0)") in text, (run, m)
    assert "sdt - vit: no paired difference (test labels differ" in text
    fair = next(s for s in res.summary if s.startswith("Test-set sampling uncertainty of the fair pair"))
    assert "sdt - ann-transformer" in fair and "sdt - cnn" not in fair

    # the accuracy section shows the table (same numbers) and the forest plot
    html = (out / "report.html").read_text()
    md = (out / "report.md").read_text()
    acc = md[md.index("## Accuracy (test set)"):md.index("## Energy per view and profile")]
    assert "accuracy_ci.png" in acc and "NOT seed-to-seed training noise" in acc
    r = ci.loc["cnn"]
    assert f"{r['diff_map']:+.3f} [{r['diff_map_low']:+.3f}, {r['diff_map_high']:+.3f}] excl. 0" in acc
    assert f"{r['map']:.3f} [{r['map_low']:.3f}, {r['map_high']:.3f}]" in acc
    assert "unpaired: n/a" in acc and "(reference)" in acc
    assert "accuracy_ci.png" in re.findall(r"<img src='([^']+)'", html)
    assert (out / "accuracy_ci.png").stat().st_size > 1000
    assert any("vit: unpaired" in w or "sdt vs vit: unpaired" in w for w in res.warnings)


def test_accuracy_ci_without_predictions_is_unavailable(tmp_path):
    from neuroposter.report.uncertainty import accuracy_ci, ci_display

    def run(name, model):
        return SimpleNamespace(name=name, model=model, path=tmp_path / name, metrics={"thresholds": [0.5] * G})
    y = _labels()
    (tmp_path / "sdt").mkdir()
    np.savez(tmp_path / "sdt" / "predictions_test.npz", scores=np.full(y.shape, 0.4, np.float32), labels=y)
    ci, warnings = accuracy_ci([run("sdt", "sdt"), run("cnn", "cnn")], B=20, seed=0)
    ci = ci.set_index("run")
    assert ci.loc["cnn", "paired"] == "no: predictions of cnn unavailable"
    assert ci.loc["cnn", ["map", "map_low", "diff_map"]].isna().all()
    assert any("cnn: no bootstrap intervals" in w for w in warnings)
    disp = ci_display(ci.reset_index())
    assert disp.iloc[1].tolist()[1:] == ["n/a"] * 6
    # no reference model at all: nothing is paired
    ci2, _ = accuracy_ci([run("sdt", "sdt")], reference_model="nope", B=20)
    assert ci2.loc[0, "paired"].startswith("no: no nope run")
