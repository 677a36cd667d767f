"""The nir target end to end on a run folder: bundle, manifest, summary, verification, CLI."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from neuroposter._io import atomic_write_json
from neuroposter.cli import main
from neuroposter.ir import read_graph
from neuroposter.manifest import write_manifest
from neuroposter.models.sdt import SDTConfig, SpikeDrivenTransformer
from neuroposter.targets import ExportRequest, get_exporter
from neuroposter.targets import inputs, nir_target

CFG = SDTConfig(d_in=96, n_tokens=8, d_model=16, depth=1, heads=2, mlp_hidden=32, n_classes=5)
T = 4


@pytest.fixture(autouse=True)
def _one_thread() -> None:
    torch.set_num_threads(1)


def _make_run(run_dir, model, name: str, kwargs: dict) -> None:
    run_dir.mkdir(parents=True)
    torch.save(model.state_dict(), run_dir / "checkpoint.pt")
    atomic_write_json(run_dir / "model.json", {"model": name, "kwargs": kwargs})
    write_manifest(run_dir, "run", inputs={"encoded": {"path": str(run_dir.parent / "enc"), "key": "k"}},
                   key="runkey", extra={"model": name})


@pytest.fixture
def workspace(tmp_path, monkeypatch):
    torch.manual_seed(0)
    model = SpikeDrivenTransformer(CFG)
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm1d):
                m.running_var.uniform_(0.1, 0.5, generator=g)
                m.bias.uniform_(0.3, 1.0, generator=g)
    ws = tmp_path / "ws"
    _make_run(ws / "runs" / "sdt", model, "sdt", CFG.to_dict())
    spikes = (torch.rand(T, 10, CFG.n_tokens, CFG.d_in, generator=g) < 0.2).float()

    def fake_inputs(loaded, run_dir, *, samples, split="test", seed=None):  # stands in for the encoded set
        k = min(samples, 10)
        return inputs.EvalInputs(spikes[:, :k].numpy().astype(np.uint8), np.zeros((k, CFG.n_classes)), np.arange(k),
                                 "encoded", Path("fake"), "fake", split, T)

    monkeypatch.setattr(inputs, "evaluation_inputs", fake_inputs)
    return ws


def test_nir_export_bundle(workspace, tmp_path) -> None:
    out = tmp_path / "bundle"
    res = get_exporter("nir")(ExportRequest("nir", workspace / "runs" / "sdt", out, workspace, {"samples": 6}))
    assert res.ok, res.lines
    assert {p.name for p in out.iterdir()} >= {"graph.nir", "manifest.json", "summary.json"}
    summary = json.loads((out / "summary.json").read_text())
    v = summary["verification"]
    assert v["vs_norse"]["samples"] == 6 and v["vs_norse"]["spike_agreement"] == 1.0
    assert v["vs_norse"]["label_agreement"] == 1.0 and v["vs_norse"]["prediction_agreement"] == 1.0
    assert v["per_hop_vs_same_step"]["spike_agreement"] == 1.0 and summary["latency_L"] == 9
    assert summary["subgraphs"] == {"sdsa": 1} and summary["neurons"] > 0
    assert summary["synapses_stored"] < summary["synapses_expanded"]
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["kind"] == "export" and manifest["target"] == "nir"
    assert len(manifest["artifacts"]["graph.nir"]) == 64
    assert manifest["inputs"]["run"]["checkpoint_sha256"] and manifest["inputs"]["run"]["key"] == "runkey"
    graph = read_graph(out / "graph.nir")
    assert graph.metadata["T"] == T and graph.metadata["source_run"].endswith("sdt")
    assert any("latency L = 9" in line for line in res.lines)


def test_nir_export_writes_the_portable_graph_and_runs_the_consumers(workspace, tmp_path) -> None:
    """The nested SDT graph gets graph_flat.nir; every installed consumer that can run it is run on the verification
    samples and agrees with the reference simulator; the README gives each one-line load."""
    from neuroposter.ir.interop import is_nested

    out = tmp_path / "bundle"
    assert get_exporter("nir")(ExportRequest("nir", workspace / "runs" / "sdt", out, workspace, {"samples": 4})).ok
    assert is_nested(read_graph(out / "graph.nir")) and not is_nested(read_graph(out / "graph_flat.nir"))
    summary = json.loads((out / "summary.json").read_text())
    assert summary["graph"]["flat_file"] == "graph_flat.nir" and summary["graph"]["dt"] == 1.0
    cons = summary["consumers"]
    assert set(cons) == {"norse", "snntorch", "nirtorch"}
    assert not cons["norse"]["run"] and "depth-first" in cons["norse"]["reason"]
    ran = [k for k, c in cons.items() if c["run"]]
    assert "nirtorch" in ran
    for k in ran:
        assert cons[k]["samples"] == 4 and cons[k]["prediction_agreement"] == 1.0 and cons[k]["file"] == "graph_flat.nir"
        assert cons[k]["max_abs_step_logit_diff"] < 1e-4
    readme = (out / "README.md").read_text()
    assert 'norse.torch.from_nir(nir.read("graph_flat.nir"), dt=1.0)' in readme and "nirtorch.nir_to_torch(" in readme
    manifest = json.loads((out / "manifest.json").read_text())
    assert {"graph_flat.nir", "README.md"} <= set(manifest["files"])


def test_nir_export_stores_op_counts_of_its_graph(workspace, tmp_path) -> None:
    """op_counts.json: the bundle's graph simulated on the first count_samples test samples (not the verification
    ones), counted at 8-bit weights / 16-bit state, hashed by the manifest."""
    from neuroposter.ir import simulate
    from neuroposter.ir.lower import to_graph_input
    from neuroposter.profiling.counts import count_snn
    from neuroposter.profiling.stored import read_op_counts

    out = tmp_path / "bundle"
    res = get_exporter("nir")(ExportRequest("nir", workspace / "runs" / "sdt", out, workspace,
                                            {"samples": 3, "count_samples": 5}))
    assert res.ok and any("op counts" in line and "5 test samples" in line for line in res.lines)
    entry = read_op_counts(out)["model"]
    c = entry.counts
    assert (c.kind, c.T, c.samples, c.weight_bits, c.state_bits, c.name) == ("snn", T, 5, 8, 16, "sdt")
    assert entry.info == {"samples_requested": 5} and "simulated on 5 test samples of fake (T=4" in entry.provenance
    graph = read_graph(out / "graph.nir")
    spikes = torch.from_numpy(inputs.evaluation_inputs(None, None, samples=5).x.astype(np.float32))
    x = to_graph_input(spikes, graph)
    want = count_snn(graph, simulate(graph, x, mode="same_step", arithmetic="float", record=True), x=x)
    assert c.totals() == want.totals() and c.synops > 0
    manifest = json.loads((out / "manifest.json").read_text())
    assert "op_counts.json" in manifest["files"] and manifest["config"]["count_samples"] == 5
    # by default 32 samples are counted (the whole split when smaller: 10 here), whatever --samples is
    out2 = tmp_path / "bundle2"
    assert get_exporter("nir")(ExportRequest("nir", workspace / "runs" / "sdt", out2, workspace, {"samples": 2})).ok
    entry = read_op_counts(out2)["model"]
    assert entry.counts.samples == 10 and entry.info == {"samples_requested": 32}


def test_nir_export_refuses_a_bad_count_samples(workspace, tmp_path) -> None:
    from neuroposter.errors import UsageError

    with pytest.raises(UsageError, match="--opt count_samples must be an integer"):
        get_exporter("nir")(ExportRequest("nir", workspace / "runs" / "sdt", tmp_path / "b", workspace,
                                          {"samples": 2, "count_samples": 0}))
    assert not (tmp_path / "b").exists()


def test_nir_export_refuses_an_impossible_agreement_threshold(workspace, tmp_path) -> None:
    from neuroposter.errors import UsageError

    with pytest.raises(UsageError, match="min-agreement"):
        get_exporter("nir")(ExportRequest("nir", workspace / "runs" / "sdt", tmp_path / "b", workspace,
                                          {"samples": 2, "min_agreement": 1.01}))
    assert not (tmp_path / "b").exists()


def test_nir_failed_verification_keeps_the_good_bundle(workspace, tmp_path, monkeypatch) -> None:
    out = tmp_path / "b"
    req = ExportRequest("nir", workspace / "runs" / "sdt", out, workspace, {"samples": 2})
    assert get_exporter("nir")(req).ok
    good = (out / "manifest.json").read_bytes()
    real = nir_target.NirTarget.run

    def worse(self, ctx, graph):  # a lowering that disagrees with the model on some spikes
        r = real(self, ctx, graph)
        r.norse_spikes = {k: 1 - v for k, v in r.norse_spikes.items()}
        return r

    monkeypatch.setattr(nir_target.NirTarget, "run", worse)
    res = get_exporter("nir")(ExportRequest("nir", workspace / "runs" / "sdt", out, workspace, {"samples": 2},
                                            force=True))
    assert not res.ok and res.failed and res.out_dir == tmp_path / "b.failed"
    assert any("FAILED" in line for line in res.lines) and "b.failed" in res.lines[-1]
    assert (out / "manifest.json").read_bytes() == good          # the good bundle is untouched
    failed = json.loads((tmp_path / "b.failed" / "manifest.json").read_text())
    assert failed["status"] == "failed" and "vs_norse.spike_agreement 0.0000" in failed["failure"]


def test_cli_export_nir(workspace, tmp_path, capsys, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    code = main(["export", "--target", "nir", "--samples", "3", "-w", str(workspace)])
    out = capsys.readouterr().out
    assert code == 0, out
    assert (tmp_path / "export" / "nir" / "sdt" / "graph.nir").is_file()
    assert (tmp_path / "export" / "nir" / "sdt" / "resolved_config.yaml").is_file()
    assert "same-step spike agreement 100.0000%" in out


def test_cli_export_refuses_ann_run_for_nir(workspace, tmp_path, capsys) -> None:
    from neuroposter.models.ann_transformer import ANNTransformer, ANNTransformerConfig

    cfg = ANNTransformerConfig(d_in=12, n_tokens=3, d_model=8, depth=1, heads=2, mlp_hidden=8, n_classes=3)
    _make_run(workspace / "runs" / "ann", ANNTransformer(cfg), "ann-transformer", cfg.to_dict())
    code = main(["export", "--target", "nir", "--run", "ann", "-w", str(workspace), "--out", str(tmp_path / "x")])
    assert code == 1 and "use --target onnx" in capsys.readouterr().err


def test_export_of_a_run_given_by_path_never_writes_over_the_run(tmp_path, capsys):
    from neuroposter.cli import main

    run = tmp_path / "elsewhere" / "runs" / "sdt"
    run.mkdir(parents=True)
    (run / "checkpoint.pt").write_bytes(b"keep me")
    code = main(["export", "--target", "nir", "--run", str(run), "--out", str(run / "bundle"),
                 "--workspace", str(tmp_path / "ws")])
    assert code == 2 and "overlap" in capsys.readouterr().err
    assert (run / "checkpoint.pt").read_bytes() == b"keep me"
    # without --out the bundle goes to EXPORT_ROOT/<target>/<run folder name>, not to the run's own path
    main(["export", "--target", "nir", "--run", str(run), "--export-root", str(tmp_path / "exp"),
          "--workspace", str(tmp_path / "ws")])
    assert (run / "checkpoint.pt").read_bytes() == b"keep me"
