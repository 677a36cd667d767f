"""Op counts stored in a bundle (``op_counts.json``): lossless round trip, written with the bundle's hashes, read
by the report -- which refuses nothing silently: a missing bundle or front end is a note naming the command
that makes the counts, a changed counts file is refused, a sample count other than the one asked for too."""

from __future__ import annotations

import json
from pathlib import Path

import nir
import numpy as np
import pandas as pd
import pytest
import torch

from neuroposter.errors import DataError, ManifestError, UsageError
from neuroposter.manifest import write_manifest
from neuroposter.profiling.counts import LayerCounts, OpCounts, count_snn
from neuroposter.profiling.onnx_counts import backbone_cut, count_onnx
from neuroposter.profiling.stored import (FORMAT_VERSION, OP_COUNTS_NAME, StoredCounts, read_op_counts,
                                          onnx_counts, write_op_counts)

METRICS = {"micro_f1": 0.4, "macro_f1": 0.3, "samples_f1": 0.35, "map": 0.45, "hamming": 0.2, "p_at_1": 0.5}
PROFILES = ["loihi", "jetson_agx_orin"]


def _snn_counts(samples: int = 5) -> OpCounts:
    """Counts of a small hand-made NIR graph (conv -> LIF -> affine) on random events."""
    rng = np.random.default_rng(0)
    D, N, H = 6, 4, 3
    shape = (H, N)
    g = nir.NIRGraph(nodes={
        "input": nir.Input(input_type={"input": np.array([D, N])}),
        "embed": nir.Conv1d(input_shape=N, weight=rng.normal(size=(H, D, 1)), stride=1, padding=0, dilation=1,
                            groups=1, bias=np.zeros(H)),
        "sn": nir.LIF(tau=np.full(shape, 2.0), r=np.ones(shape), v_leak=np.zeros(shape), v_threshold=np.ones(shape)),
        "flat": nir.Flatten(start_dim=0, end_dim=-1, input_type={"input": np.array([H, N])}),
        "head": nir.Affine(weight=rng.normal(size=(2, H * N)), bias=np.zeros(2)),
        "output": nir.Output(output_type={"output": np.array([2])})},
        edges=[("input", "embed"), ("embed", "sn"), ("sn", "flat"), ("flat", "head"), ("head", "output")],
        type_check=False)
    x = (rng.random((4, samples, D, N)) < 0.3).astype(np.float32)
    rec = {"sn": (rng.random((4, samples, H, N)) < 0.2).astype(np.float32)}
    return count_snn(g, rec, x=x, name="sdt", meta={"source": "hand-made", "samples": samples})


class _ImageModel(torch.nn.Module):
    """An image model whose ``backbone`` module the ONNX exporter names ``/backbone/...`` (like the CNN)."""

    def __init__(self) -> None:
        super().__init__()
        self.backbone = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3, padding=1), torch.nn.ReLU())
        self.fc = torch.nn.Linear(4, 5)

    def forward(self, x):
        return self.fc(self.backbone(x).mean((2, 3)))


def _onnx(path: Path, h: int = 8, w: int = 6) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.onnx.export(_ImageModel().eval(), torch.zeros(1, 3, h, w), str(path), input_names=["images"],
                      output_names=["logits"], dynamic_axes={"images": {0: "batch"}}, opset_version=17)
    return path


# -- the stored format -----------------------------------------------------------------------------------


@pytest.mark.parametrize("which", ["snn", "onnx"])
def test_from_dict_inverts_to_dict(which, tmp_path):
    c = _snn_counts() if which == "snn" else count_onnx(_onnx(tmp_path / "m.onnx"), name="cnn", source="x")
    back = OpCounts.from_dict(c.to_dict())
    assert back == c                                   # every field, every layer
    assert back.totals() == c.totals() and back.neurobench() == c.neurobench()
    assert back.with_precision(4, 8) == c.with_precision(4, 8)
    assert back.with_precision(4, 8).totals() == c.with_precision(4, 8).totals()
    # through the JSON file too (lists become tuples again, floats are exact)
    write_op_counts(tmp_path, {"model": StoredCounts(c, "made here", {"samples_requested": 7})})
    entry = read_op_counts(tmp_path)["model"]
    assert entry.counts == c and entry.provenance == "made here" and entry.info == {"samples_requested": 7}
    assert json.dumps(entry.counts.to_dict()) == json.dumps(json.loads(json.dumps(c.to_dict())))


def test_layer_from_dict_refuses_unknown_or_missing_fields():
    lc = LayerCounts(name="a", op_type="Conv", kind="mac", dense_ops=3.0, per_step=(1.0, 2.0), in_shape=(2, 3))
    assert LayerCounts.from_dict(lc.to_dict()) == lc
    with pytest.raises(ValueError, match="unknown fields"):
        LayerCounts.from_dict({**lc.to_dict(), "bogus": 1})
    with pytest.raises(ValueError, match="missing fields"):
        LayerCounts.from_dict({"name": "a"})


def test_read_op_counts_refuses_other_formats(tmp_path):
    with pytest.raises(DataError, match="no stored op counts"):
        read_op_counts(tmp_path)
    write_op_counts(tmp_path, {"model": StoredCounts(_snn_counts(), "p")})
    data = json.loads((tmp_path / OP_COUNTS_NAME).read_text())
    (tmp_path / OP_COUNTS_NAME).write_text(json.dumps({**data, "format_version": FORMAT_VERSION + 1}))
    with pytest.raises(DataError, match="format version"):
        read_op_counts(tmp_path)
    (tmp_path / OP_COUNTS_NAME).write_text(json.dumps({**data, "entries": {"model": {"provenance": "p"}}}))
    with pytest.raises(DataError, match="malformed"):
        read_op_counts(tmp_path)


def test_onnx_counts_store_the_model_and_its_backbone(tmp_path):
    f = _onnx(tmp_path / "b" / "model.onnx", h=8, w=6)
    entries = onnx_counts(f, name="cnn", location=Path("export/onnx/cnn/model.onnx"))
    write_op_counts(tmp_path / "b", entries)
    assert read_op_counts(tmp_path / "b").keys() == {"model", "frontend"}
    model, fe = entries["model"].counts, entries["frontend"].counts
    assert model.weight_bits == 32 and model.totals() == count_onnx(f, name="cnn").totals()
    assert entries["model"].provenance.startswith("ONNX bundle export/onnx/cnn/model.onnx (sha256 ")
    # the backbone: a 3x3 conv 3 -> 4 channels at 8x6 (padding 1) = 4*8*6*3*3*3 MACs, nothing of the head
    assert fe.macs == 4 * 8 * 6 * 3 * 3 * 3 and model.macs > fe.macs
    assert entries["frontend"].info == {"image_size": [8, 6]} and "8x6 input" in entries["frontend"].provenance
    # a model without a backbone stores no front end
    g = tmp_path / "c" / "model.onnx"
    g.parent.mkdir()
    torch.onnx.export(torch.nn.Linear(4, 2).eval(), torch.zeros(1, 4), str(g), opset_version=17)
    assert backbone_cut(g) is None
    assert set(onnx_counts(g, name="x", location=g)) == {"model"}


# -- the report reads them -------------------------------------------------------------------------------


def _run(ws: Path, name: str, model: str, features: Path | None = None) -> Path:
    d = ws / "runs" / name
    d.mkdir(parents=True)
    (d / "model.json").write_text(json.dumps({"model": model, "kwargs": {}}))
    (d / "metrics.json").write_text(json.dumps({"model": model, "test": METRICS, **METRICS}))
    (d / "checkpoint.pt").write_bytes(b"weights of " + name.encode())
    inputs = {"features": {"path": str(features), "key": "fkey"}} if features is not None else {}
    write_manifest(d, "run", key=f"key-{name}", inputs=inputs, extra={"model": model})
    return d


def _bundle(d: Path, target: str, run_dir: Path, *, counts: OpCounts | None = None,
            samples_requested: int | None = None) -> Path:
    """An export bundle as the targets write it: summary, stored counts, then the manifest hashing them."""
    d.mkdir(parents=True, exist_ok=True)
    (d / "summary.json").write_text(json.dumps({"ok": True}))
    if (d / "model.onnx").is_file():
        write_op_counts(d, onnx_counts(d / "model.onnx", name=run_dir.name, location=d / "model.onnx"))
    elif counts is not None:
        write_op_counts(d, {"model": StoredCounts(counts, f"stored counts of {run_dir.name}",
                                                  {"samples_requested": samples_requested or counts.samples})})
    ckpt = json.loads((run_dir / "manifest.json").read_text())["files"]["checkpoint.pt"]["sha256"]
    write_manifest(d, "export", inputs={"run": {"path": str(run_dir), "key": f"key-{run_dir.name}",
                                                "checkpoint_sha256": ckpt}},
                   extra={"target": target, "source_run": run_dir.name})
    return d


@pytest.fixture
def ws(tmp_path):
    """sdt (nir bundle with stored counts on 5 samples) and cnn (onnx bundle with a backbone at 8x6), both
    trained on a feature store computed at 8x6."""
    root = tmp_path / "ws"
    feats = root / "features" / "default"
    feats.mkdir(parents=True)
    write_manifest(feats, "features", key="fkey", extra={"input_size": [8, 6]})
    sdt = _run(root, "sdt", "sdt", feats)
    cnn = _run(root, "cnn", "cnn", feats)
    exports = tmp_path / "export"
    _bundle(exports / "nir" / "sdt", "nir", sdt, counts=_snn_counts(5), samples_requested=32)
    _onnx(exports / "onnx" / "cnn" / "model.onnx", 8, 6)
    _bundle(exports / "onnx" / "cnn", "onnx", cnn)
    return root, exports


def _build(root: Path, exports: Path, **kw):
    from neuroposter.report import build_report

    return build_report(root, exports=exports, latency=False, bootstrap=0, profiles=PROFILES, **kw)


def test_the_report_prices_the_stored_counts(ws):
    root, exports = ws
    res = _build(root, exports, name="a")
    out = root / "reports" / "a"
    stored = json.loads((out / "counts.json").read_text())
    as_json = lambda c: json.loads(json.dumps(c.to_dict()))  # noqa: E731
    assert stored["sdt"] == as_json(_snn_counts(5))
    cnn = read_op_counts(exports / "onnx" / "cnn")
    assert stored["cnn"] == as_json(cnn["model"].counts) and stored["frontend"] == as_json(cnn["frontend"].counts)
    e = pd.read_csv(out / "energy.csv")
    assert (e[(e.run == "sdt")].component == "frontend").any()    # the front end from the cnn bundle
    prov = pd.read_csv(out / "provenance.csv").set_index("item")
    assert prov.loc["counts sdt", "where"] == "stored counts of sdt"
    assert prov.loc["counts cnn", "where"].startswith("ONNX bundle ")
    assert prov.loc["front end", "where"].startswith("DenseNet-169 front end: backbone sub-graph")
    assert not any("no op counts" in w for w in res.warnings)
    # --samples checks the stored counts: 5 were made (of 32 asked for: the whole test split), so 5 and more pass
    for ok in (5, 6, 1000):
        _build(root, exports, name=f"s{ok}", samples=ok)
    with pytest.raises(UsageError, match="made on 5 test samples, not the 4 asked for") as err:
        _build(root, exports, name="s4", samples=4)
    assert "neuroposter export --target nir --run sdt --force" in str(err.value)
    assert "--opt count_samples=4" in str(err.value)
    assert not (root / "reports" / "s4").exists()


def test_stored_samples_fewer_than_asked_only_when_the_split_is_that_small(ws):
    root, exports = ws
    _bundle(exports / "nir" / "sdt", "nir", root / "runs" / "sdt", counts=_snn_counts(5), samples_requested=5)
    _build(root, exports, name="a", samples=5)
    with pytest.raises(UsageError, match="made on 5 test samples, not the 6"):
        _build(root, exports, name="b", samples=6)   # 5 were asked for: the split may hold more


def test_a_run_without_its_bundle_is_a_note_naming_the_export_command(ws):
    root, exports = ws
    _run(root, "snn-mlp", "snn-mlp")
    _run(root, "vit", "vit")
    res = _build(root, exports, name="a")
    notes = {w.split(":")[0]: w for w in res.warnings if "no op counts" in w}
    assert set(notes) == {"snn-mlp", "vit"}
    assert f"neuroposter export --target nir --run snn-mlp --workspace {root}" in notes["snn-mlp"]
    assert f"neuroposter export --target onnx --run vit --workspace {root}" in notes["vit"]
    out = root / "reports" / "a"
    prov = pd.read_csv(out / "provenance.csv").set_index("item")
    assert "neuroposter export --target nir --run snn-mlp" in prov.loc["counts snn-mlp", "note"]
    assert set(pd.read_csv(out / "energy.csv")["run"]) == {"sdt", "cnn"}   # the rest still renders
    assert "no op counts" in (out / "report.md").read_text()


def test_a_bundle_without_stored_counts_names_the_rebuild_command(ws):
    root, exports = ws
    nir_bundle = exports / "nir" / "sdt"
    (nir_bundle / OP_COUNTS_NAME).unlink()
    _bundle(nir_bundle, "nir", root / "runs" / "sdt")   # re-sealed without counts (an older bundle)
    res = _build(root, exports, name="a")
    note = next(w for w in res.warnings if w.startswith("sdt: no op counts"))
    assert "stores no op counts" in note and "neuroposter export --target nir --run sdt --force" in note


def test_no_front_end_counts_is_a_warning_and_totals_exclude_it(ws):
    root, exports = ws
    import shutil

    shutil.rmtree(exports / "onnx" / "cnn")
    res = _build(root, exports, name="a")
    msg = next(w for w in res.warnings if w.startswith("front end not counted"))
    assert "neuroposter export --target onnx --run cnn" in msg and "feature-model totals exclude it" in msg
    e = pd.read_csv(root / "reports" / "a" / "energy.csv")
    assert not (e.component == "frontend").any()
    assert "feature-model totals exclude it" in (root / "reports" / "a" / "report.md").read_text()


def test_front_end_of_another_image_size_is_not_used(ws):
    root, exports = ws
    _onnx(exports / "onnx" / "cnn" / "model.onnx", 16, 6)
    _bundle(exports / "onnx" / "cnn", "onnx", root / "runs" / "cnn")
    res = _build(root, exports, name="a")
    assert any(w.startswith("front end not counted") and "8x6" in w for w in res.warnings)


@pytest.mark.parametrize("target", ["nir", "onnx"])
def test_edited_counts_file_is_refused_like_any_bundle_file(ws, target):
    root, exports = ws
    run = "sdt" if target == "nir" else "cnn"
    f = exports / target / run / OP_COUNTS_NAME
    data = json.loads(f.read_text())
    data["entries"]["model"]["counts"]["layers"][0]["effective_acs"] = 0.0
    f.write_text(json.dumps(data))
    with pytest.raises(ManifestError, match="changed") as err:
        _build(root, exports, name="a")
    assert OP_COUNTS_NAME in str(err.value) and f"neuroposter export --target {target} --run {run}" in str(err.value)
    assert not (root / "reports" / "a").exists()
