"""`neuroposter profile`: a spiking network exported to NIR by snnTorch loads, runs and is profiled; its op counts
equal a count made by hand from snnTorch's own spikes; bad inputs fail with one line and leave nothing behind."""

from __future__ import annotations

import contextlib
import csv
import io
import json
from pathlib import Path

import nir
import numpy as np
import pytest
import torch

from neuroposter.cli import main
from neuroposter.profiling.profiles import load_profile
from neuroposter.profiling.stored import read_op_counts

snn = pytest.importorskip("snntorch")

T, B, D_IN, H, C = 10, 5, 12, 16, 4


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """(folder, graph file, inputs file, snnTorch's spikes per layer, the weights) of a seeded snnTorch net."""
    import snntorch.utils
    from snntorch.export_nir import export_to_nir

    torch.manual_seed(5)
    net = torch.nn.Sequential(
        torch.nn.Linear(D_IN, H),
        snn.Leaky(beta=torch.full((H,), 0.8), threshold=torch.ones(H), init_hidden=True, reset_mechanism="zero"),
        torch.nn.Linear(H, C, bias=False),
        snn.Leaky(beta=torch.full((C,), 0.6), threshold=torch.ones(C), init_hidden=True, reset_mechanism="zero"),
    )
    with torch.no_grad():
        net[0].weight.mul_(4.0)
        net[2].weight.mul_(3.0).add_(0.4)
        net[2].weight[0, :3] = 0.0          # zero weights have no fan-out
    x = (torch.rand(T, B, D_IN, generator=torch.Generator().manual_seed(1)) < 0.4).float()
    snntorch.utils.reset(net)
    s1, s2 = [], []
    with torch.no_grad():
        for t in range(T):                  # snnTorch's own spikes, layer by layer
            s1.append(net[1](net[0](x[t])))
            s2.append(net[3](net[2](s1[-1])))
    spikes = {"1": torch.stack(s1).numpy(), "3": torch.stack(s2).numpy()}
    assert 0.05 < spikes["1"].mean() < 0.95 and 0.05 < spikes["3"].mean() < 0.95
    d = tmp_path_factory.mktemp("snntorch")
    with contextlib.redirect_stdout(io.StringIO()):
        nir.write(str(d / "net.nir"), export_to_nir(net, x[0], ignore_dims=[0]))
    np.save(d / "x.npy", x.numpy())
    weights = {"0": net[0].weight.detach().numpy(), "2": net[2].weight.detach().numpy()}
    return d, d / "net.nir", d / "x.npy", x.numpy(), spikes, weights


def _run(argv, capsys) -> tuple[int, str, str]:
    rc = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return rc, out, err


def _expected_acs(x: np.ndarray, spikes: dict[str, np.ndarray], weights: dict[str, np.ndarray]) -> dict[str, float]:
    """Synaptic ACs per inference by hand: each presynaptic spike x its fan-out (non-zero outgoing weights)."""
    fan0 = (weights["0"] != 0).sum(0)       # weight [out, in]: fan-out of input i = non-zeros in column i
    fan2 = (weights["2"] != 0).sum(0)
    return {"0": float((x * fan0).sum()) / B, "2": float((spikes["1"] * fan2).sum()) / B}


def test_profile_counts_a_snntorch_graph_and_writes_the_artifact(exported, tmp_path, capsys) -> None:
    _, graph, xfile, x, spikes, weights = exported
    out = tmp_path / "prof"
    rc, text, err = _run(["profile", graph, "--producer", "snntorch", "--inputs", xfile,
                          "--profiles", "spinnaker2,loihi2,loihi", "--out", out], capsys)
    assert rc == 0, err
    # the artifact, through the atomic writer
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["kind"] == "profile"
    assert {"graph.nir", "op_counts.json", "energy.csv", "summary.json"} <= set(manifest["files"])
    assert (out / "graph.nir").read_bytes() == graph.read_bytes()
    # op counts == an independent count from snnTorch's own spikes
    counts = read_op_counts(out)["model"].counts
    want = _expected_acs(x, spikes, weights)
    by_name = {lc.name: lc for lc in counts.layers}
    assert by_name["0"].effective_acs == pytest.approx(want["0"])
    assert by_name["2"].effective_acs == pytest.approx(want["2"])
    assert counts.acs == pytest.approx(want["0"] + want["2"]) and counts.macs == 0
    assert counts.neuron_updates_dense == (H + C) * T
    for name, s in spikes.items():
        assert by_name[name].spikes == pytest.approx(s.sum() / B)
        assert by_name[name].firing_rate == pytest.approx(s.mean())
    # energy: the profile's own constants x the hand counts
    sp2 = load_profile("spinnaker2").energy
    e_want = (want["0"] + want["2"]) * sp2["e_synop_pj"] + (H + C) * T * sp2["e_neuron_update_pj"]
    rows = {r["profile"]: r for r in csv.DictReader(io.StringIO((out / "energy.csv").read_text()))}
    assert list(rows) == ["spinnaker2", "loihi2", "loihi"]
    assert float(rows["spinnaker2"]["energy_pj"]) == pytest.approx(e_want)
    assert rows["loihi2"]["available"] == "False" and "not published" in rows["loihi2"]["reason"]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["graph"]["dt"] == 1e-4 and summary["graph"]["neurons"] == H + C
    assert summary["graph"]["synapses_stored"] == weights["0"].size + weights["2"].size
    assert summary["per_inference"]["acs"] == pytest.approx(want["0"] + want["2"])
    assert summary["energy"]["profiles"]["spinnaker2"]["energy_pj"] == pytest.approx(e_want)
    # what was printed: summary, spikes per layer, op counts, one energy line per profile saying what it includes
    lines = text.splitlines()
    assert f"{H + C} neurons" in lines[0] and "dt 0.0001" in lines[0]
    assert any(ln.split()[:2] == ["1", "LIF"] for ln in lines)
    assert f"synaptic ACs {want['0'] + want['2']:,.1f}" in text
    energy = [ln for ln in lines if ln.strip().split(" ")[0] in ("spinnaker2", "loihi2", "loihi")]
    assert len(energy) == 3
    assert "n/a" in energy[1] and "not published" in energy[1]
    assert "synops x e_synop" in energy[0]
    # an existing artifact is replaced only with --force
    rc, _, err = _run(["profile", graph, "--producer", "snntorch", "--inputs", xfile, "--out", out], capsys)
    assert rc == 2 and len(err.strip().splitlines()) == 1 and "--force" in err
    rc, _, err = _run(["profile", graph, "--producer", "snntorch", "--inputs", xfile, "--out", out, "--force",
                       "--profiles", "loihi"], capsys)
    assert rc == 0, err
    assert [r["profile"] for r in csv.DictReader(io.StringIO((out / "energy.csv").read_text()))] == ["loihi"]


def test_seeded_bernoulli_inputs_and_default_profiles(exported, capsys) -> None:
    _, graph, *_ = exported
    argv = ["profile", graph, "--producer", "snntorch", "--rate", "0.3", "--steps", "6", "--samples", "4",
            "--seed", "7"]
    rc, text, err = _run(argv, capsys)
    assert rc == 0, err
    assert "rate 0.3, seed 7) [6, 4, 12]" in text
    assert _run(argv, capsys)[1] == text                                  # the seed fixes the inputs
    assert _run([*argv[:-1], "8"], capsys)[1] != text
    # default: the neuromorphic profiles that publish per-op energy; the others are named as not shown
    assert "not shown (no per-op energy published):" in text and "loihi2" in text.splitlines()[-1]
    assert "n/a" not in text
    # the graph's dt matters: read with dt = 1 it is another network
    rc, text_dt1, err = _run([*argv, "--dt", "1"], capsys)
    assert rc == 0, err
    assert text_dt1 != _run([*argv[:-1], "7"], capsys)[1]


def _refused(argv, out: Path, capsys, code: int, match: str) -> None:
    rc, text, err = _run([*argv, "--out", out], capsys)
    assert rc == code, (rc, err)
    assert len(err.strip().splitlines()) == 1 and match in err, err
    assert not text
    assert not any(out.parent.iterdir()), list(out.parent.iterdir())    # no artifact, temporary or lock left


def test_missing_file_is_a_usage_error(tmp_path, capsys) -> None:
    (tmp_path / "o").mkdir()
    _refused(["profile", tmp_path / "none.nir"], tmp_path / "o" / "prof", capsys, 2, "no such file")


def test_a_file_that_is_not_nir_is_refused(tmp_path, capsys) -> None:
    bad = tmp_path / "bad.nir"
    bad.write_text("not a graph\n")
    (tmp_path / "o").mkdir()
    _refused(["profile", bad, "--dt", "1"], tmp_path / "o" / "prof", capsys, 1, "not a readable NIR file")


def test_wrong_input_shape_is_refused(exported, tmp_path, capsys) -> None:
    _, graph, *_ = exported
    np.save(tmp_path / "x.npy", np.zeros((T, B, D_IN + 1)))
    (tmp_path / "o").mkdir()
    _refused(["profile", graph, "--producer", "snntorch", "--inputs", tmp_path / "x.npy"], tmp_path / "o" / "prof",
             capsys, 2, f"the graph takes [T, B, {D_IN}]")


def _tiny(tmp_path: Path, neuron: nir.NIRNode, meta: dict | None) -> Path:
    g = nir.NIRGraph.from_list(nir.Affine(weight=np.ones((2, 3)), bias=np.zeros(2)), neuron)
    if meta is not None:
        g.metadata = meta
    nir.write(str(tmp_path / "g.nir"), g)
    return tmp_path / "g.nir"


def test_a_graph_without_dt_needs_dt_or_producer(tmp_path, capsys) -> None:
    lif = nir.LIF(tau=np.ones(2), r=np.ones(2), v_leak=np.zeros(2), v_threshold=np.ones(2))
    g = _tiny(tmp_path, lif, None)
    (tmp_path / "o").mkdir()
    _refused(["profile", g], tmp_path / "o" / "prof", capsys, 2, "--dt")
    rc, text, err = _run(["profile", g, "--producer", "norse", "--steps", "2", "--samples", "1"], capsys)
    assert rc == 0 and "dt 0.001" in text, err


def test_a_node_the_simulator_cannot_run_is_named(tmp_path, capsys) -> None:
    cli = nir.CubaLI(tau_syn=np.ones(2), tau_mem=np.ones(2), r=np.ones(2), v_leak=np.zeros(2))
    g = _tiny(tmp_path, cli, {"dt": 1.0})
    (tmp_path / "o").mkdir()
    rc, _, err = _run(["profile", g, "--out", tmp_path / "o" / "prof"], capsys)
    assert rc == 1 and len(err.strip().splitlines()) == 1
    assert "of type CubaLI" in err and "node 'cubali'" in err, err
    assert not any((tmp_path / "o").iterdir())


def test_inputs_and_bernoulli_options_exclude_each_other(tmp_path, capsys) -> None:
    rc, _, err = _run(["profile", tmp_path / "g.nir", "--inputs", tmp_path / "x.npy", "--rate", "0.2"], capsys)
    assert rc == 2 and "--rate" in err and len(err.strip().splitlines()) == 1
