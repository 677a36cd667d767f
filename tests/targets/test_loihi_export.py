"""The Loihi export end to end on a tiny SDT and a tiny spiking MLP (run and encoded set stubbed)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from neuroposter.targets.base import ExportRequest

from neuroposter.profiling.profiles import load_profile

LOIHI2 = load_profile("loihi2")

pytestmark = [pytest.mark.lava, pytest.mark.slow]


def test_export_sdt_bundle_and_rerun(monkeypatch, tmp_path, stub_run) -> None:
    from neuroposter.models.sdt import SDTConfig, SpikeDrivenTransformer
    from neuroposter.targets.loihi import export
    from neuroposter.targets.loihi.run import main

    torch.manual_seed(0)
    model = SpikeDrivenTransformer(SDTConfig(d_in=8, n_tokens=3, d_model=8, depth=1, heads=2, mlp_hidden=8,
                                             n_classes=3))
    x = (np.random.default_rng(1).random((4, 5, 3, 8)) < 0.4).astype(np.uint8)
    stub_run(model, "sdt", x)
    out = tmp_path / "export" / "loihi" / "sdt"
    # Lava on 4 of the 5 samples; the deployed network vs the trained model on all 5 (the whole split, by default)
    res = export(ExportRequest("loihi", tmp_path / "runs" / "sdt", out, tmp_path,
                               {"samples": 4, "min_trained_agreement": 0.0}))
    assert res.ok, res.lines
    s = json.loads((out / "summary.json").read_text())
    assert set(s["verification"]) == {"deployed_vs_trained", "simulator_vs_reference"}
    ver = s["verification"]["simulator_vs_reference"]
    assert ver["output_exact"] and ver["prediction_agreement"] == 1.0 and ver["spike_agreement_min"] == 1.0
    assert ver["samples"] == 4 and len(ver["indices"]) == 4
    vt = s["verification"]["deployed_vs_trained"]
    assert vt["samples"] == 5 == s["samples"] and set(vt["intervals"]) >= {"set_agreement", "micro_f1", "map"}
    assert [g["check"] for g in s["gates"]] == ["deployed_vs_trained", "simulator_vs_reference"]
    assert s["quantization"]["layers"] and s["quantization"]["spikes_int_vs_float_graph"]["samples"] == 4
    for f in ("graph_int.nir", "graph.nir", "inputs.npz", "mapping.json", "manifest.json", "README.md"):
        assert (out / f).is_file(), f
    with np.load(out / "inputs.npz") as z:
        assert z["x"].shape[1] == 4 and z["deployed_mean_logits"].shape == (5, 3)
        # the stored whole-split logits reproduce the summary's figures
        from neuroposter.targets.verify import set_agreement

        assert set_agreement(z["deployed_mean_logits"], z["trained_mean_logits"]) == vt["set_agreement"]
    assert json.loads((out / "mapping.json").read_text())["fits"] is True
    assert main([str(out), "--samples", "2"]) == 0


def test_export_fails_below_min_agreement(monkeypatch, tmp_path, stub_run) -> None:
    import neuroposter.targets.loihi.target as loihi
    from neuroposter.errors import UsageError
    from neuroposter.models.sdt import SDTConfig, SpikeDrivenTransformer
    from neuroposter.targets.loihi import export

    torch.manual_seed(0)
    model = SpikeDrivenTransformer(SDTConfig(d_in=8, n_tokens=3, d_model=8, depth=1, heads=2, mlp_hidden=8,
                                             n_classes=3))
    x = (np.random.default_rng(1).random((4, 3, 3, 8)) < 0.4).astype(np.uint8)
    stub_run(model, "sdt", x)
    with pytest.raises(UsageError, match="min-agreement"):   # an agreement above 1 can never be met
        export(ExportRequest("loihi", tmp_path / "r", tmp_path / "o", tmp_path, {"samples": 3, "min_agreement": 1.01}))
    assert not (tmp_path / "o").exists()
    real = loihi.verify_plan
    monkeypatch.setattr(loihi, "verify_plan", lambda *a, **k: {**real(*a, **k), "prediction_agreement": 0.5})
    res = export(ExportRequest("loihi", tmp_path / "r", tmp_path / "o", tmp_path,
                               {"samples": 3, "min_trained_agreement": 0.0}))
    assert not res.ok and res.failed and "--min-agreement" in res.summary["reason"]
    assert "--min-trained-agreement" not in res.summary["reason"]
    assert res.out_dir == tmp_path / "o.failed" and not (tmp_path / "o").exists()
    assert json.loads((tmp_path / "o.failed" / "manifest.json").read_text())["status"] == "failed"
    assert any("o.failed" in line for line in res.lines)


def test_export_fails_when_the_deployed_network_flips_the_trained_decisions(monkeypatch, tmp_path, stub_run) -> None:
    """Lava equals the integer reference bit for bit, but the deployed network decides otherwise than the trained
    model: the export fails on the deployed-vs-trained bound (not on Lava's), naming metric, value and flag."""
    import neuroposter.targets.loihi.target as loihi
    from neuroposter.models.sdt import SDTConfig, SpikeDrivenTransformer
    from neuroposter.targets.loihi import export

    torch.manual_seed(0)
    model = SpikeDrivenTransformer(SDTConfig(d_in=8, n_tokens=3, d_model=8, depth=1, heads=2, mlp_hidden=8,
                                             n_classes=3))
    x = (np.random.default_rng(1).random((4, 6, 3, 8)) < 0.4).astype(np.uint8)
    stub_run(model, "sdt", x)
    real = loihi.reference_mean_logits
    # a quantisation that flips every decision (its logits negated, never exactly 0)
    monkeypatch.setattr(loihi, "reference_mean_logits", lambda *a, **k: -(real(*a, **k)) - 1e-3)
    res = export(ExportRequest("loihi", tmp_path / "r", tmp_path / "o", tmp_path, {"samples": 2}))
    assert not res.ok and res.failed and res.out_dir == tmp_path / "o.failed"
    s = res.summary
    assert s["verification"]["deployed_vs_trained"]["set_agreement"] == 0.0
    assert s["verification"]["deployed_vs_trained"]["samples"] == 6
    assert s["verification"]["simulator_vs_reference"]["output_exact"]       # Lava is still bit-exact
    failed = [g for g in s["gates"] if not g["ok"]]
    assert [(g["check"], g["metric"], g["min"]) for g in failed] == [("deployed_vs_trained", "set_agreement", 0.95)]
    reason = s["reason"]
    assert "genre set on 0.000 of 6 test samples" in reason and "--min-trained-agreement 0.95" in reason
    assert "neuroposter train --target loihi" in reason and any(line.startswith("  FAILED:") for line in res.lines)
    # the bound is the user's: 0 accepts it
    ok = export(ExportRequest("loihi", tmp_path / "r", tmp_path / "o2", tmp_path,
                              {"samples": 2, "min_trained_agreement": 0}))
    assert ok.ok and ok.summary["min_trained_agreement"] == 0.0


def test_export_snn_mlp_with_netx(monkeypatch, tmp_path, stub_run) -> None:
    from neuroposter.models import build_model
    from neuroposter.targets.loihi import export

    torch.manual_seed(0)
    try:
        model = build_model("snn-mlp", d_in=12, hidden1=10, hidden2=8, n_classes=3)
    except TypeError:
        pytest.skip("snn-mlp constructor signature differs")
    x = (np.random.default_rng(2).random((4, 4, 1, 12)) < 0.4).astype(np.uint8)
    stub_run(model, "snn-mlp", x)
    out = tmp_path / "mlp"
    res = export(ExportRequest("loihi", tmp_path / "r", out, tmp_path, {"samples": 4, "min_trained_agreement": 0}))
    assert res.ok, res.lines
    assert (out / "network.net").is_file()
    assert res.summary["netx"]["ok"] and res.summary["netx"]["output_exact"]


def test_rerun_entry_point_reports_a_bad_bundle_in_one_line(tmp_path, capsys) -> None:
    import nir

    from neuroposter.ir.graph_io import write_graph
    from neuroposter.targets.loihi.run import main

    assert main([str(tmp_path / "nowhere")]) == 2
    assert "not a folder" in capsys.readouterr().err
    bundle = tmp_path / "b"
    bundle.mkdir()
    assert main([str(bundle)]) == 2
    assert "missing graph_int.nir, inputs.npz" in capsys.readouterr().err
    (bundle / "graph_int.nir").write_text("garbage")
    np.savez(bundle / "inputs.npz", x=np.zeros((2, 1, 3), np.uint8), reference_output=np.zeros((2, 1, 2)))
    assert main([str(bundle)]) == 2
    err = capsys.readouterr().err
    assert "graph_int.nir: not a readable NIR graph" in err and "Traceback" not in err and err.count("\n") == 1
    # a float (not quantised) graph where the integer graph belongs: refused by name, no traceback
    g = nir.NIRGraph.from_list(nir.Affine(np.ones((2, 3)), np.zeros(2)))
    write_graph(bundle / "graph_int.nir", g)
    assert main([str(bundle)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("python -m neuroposter.targets.loihi.run: error:") and err.count("\n") == 1
    (bundle / "inputs.npz").write_bytes(b"not a zip")
    assert main([str(bundle)]) == 2
    assert "inputs.npz: not readable" in capsys.readouterr().err


def test_netx_on_a_full_disk_is_one_line_and_leaves_no_temporary(monkeypatch, tmp_path) -> None:
    import collections
    import os
    import shutil
    import tempfile

    from neuroposter.errors import ResourceError
    from neuroposter.testing.graphs import chain_graph, random_spikes
    from neuroposter.targets.loihi.netx_export import export_and_check, netx_size_estimate

    from neuroposter.targets.loihi.fixed_point import quantize_loihi

    g = chain_graph()
    assert netx_size_estimate(quantize_loihi(g, LOIHI2, netx=True)[0]) > 8 * 12 * 10
    usage = collections.namedtuple("usage", "total used free")
    monkeypatch.setattr(shutil, "disk_usage", lambda p: usage(10**9, 10**9 - 100, 100))
    before = set(os.listdir(tempfile.gettempdir()))
    with pytest.raises(ResourceError, match="no space left on device.*netx HDF5"):
        export_and_check(g, random_spikes(4, 2, (12,), p=0.5), LOIHI2)
    with pytest.raises(ResourceError, match="no space left on device"):
        export_and_check(g, random_spikes(4, 2, (12,), p=0.5), LOIHI2, path=str(tmp_path / "n.net"))
    assert not (tmp_path / "n.net").exists()
    assert not {n for n in set(os.listdir(tempfile.gettempdir())) - before if n.startswith("neuroposter-")}


def test_netx_write_failure_removes_its_temporary(monkeypatch) -> None:
    import os
    import tempfile

    from neuroposter.targets.loihi import netx_export
    from neuroposter.testing.graphs import chain_graph, random_spikes

    def broken(graph_int, path, *, t_sample=1):
        open(path, "wb").write(b"partial")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(netx_export, "write_netx", broken)
    before = set(os.listdir(tempfile.gettempdir()))
    from neuroposter.errors import ResourceError

    with pytest.raises(ResourceError, match="no space left on device"):
        netx_export.export_and_check(chain_graph(), random_spikes(4, 2, (12,), p=0.5), LOIHI2)
    assert not {n for n in set(os.listdir(tempfile.gettempdir())) - before if n.startswith("neuroposter-")}


def test_lava_run_failure_removes_the_spike_recordings(monkeypatch) -> None:
    import os
    import tempfile

    from neuroposter.targets.loihi.fixed_point import quantize_loihi
    from neuroposter.targets.loihi import builder
    from neuroposter.testing.graphs import chain_graph, random_spikes

    plan = builder.plan_network(quantize_loihi(chain_graph(), LOIHI2)[0], max_delay=LOIHI2.limits.max_delay)
    real = builder.build_lava

    def build_then_break(*args, **kwargs):
        net = real(*args, **kwargs)
        assert net.record_dir and os.path.isdir(net.record_dir)
        first = next(iter(net.processes.values()))
        monkeypatch.setattr(type(first), "run", lambda self, **kw: (_ for _ in ()).throw(RuntimeError("boom")))
        return net

    monkeypatch.setattr(builder, "build_lava", build_then_break)
    before = set(os.listdir(tempfile.gettempdir()))
    with pytest.raises(RuntimeError, match="boom"):
        builder.run_lava(plan, random_spikes(4, 2, (12,), p=0.5))
    assert not {n for n in set(os.listdir(tempfile.gettempdir())) - before if n.startswith("neuroposter-")}
