"""``neuroposter.profile``: NeuroBench-named counts checked against hand computations, the same result for a model
and its NIR graph, a graph written by snnTorch, and the ``results.json`` of a run and of a bundle."""

from __future__ import annotations

import contextlib
import io
import json
from pathlib import Path

import nir
import numpy as np
import pytest
import torch

import neuroposter
from neuroposter.errors import UsageError
from neuroposter.profiling.api import NEUROBENCH_METRICS, RESULTS_NAME, from_counts, write_run_results
from neuroposter.profiling.profiles import load_profile

T, B = 5, 3


def _hand_graph(w1: np.ndarray, w2: np.ndarray, *, v_th: float = 1.0) -> nir.NIRGraph:
    """Input [3] -> Affine(3->4) -> LIF(4) -> Affine(4->2) -> Output, dt = 1 step, tau = 2, no biases."""
    n = w1.shape[0]
    nodes = {
        "input": nir.Input(input_type={"input": np.array([w1.shape[1]])}),
        "fc1": nir.Affine(weight=w1, bias=np.zeros(n)),
        "lif": nir.LIF(tau=np.full(n, 2.0), r=np.ones(n), v_leak=np.zeros(n), v_threshold=np.full(n, v_th)),
        "fc2": nir.Affine(weight=w2, bias=np.zeros(w2.shape[0])),
        "output": nir.Output(output_type={"output": np.array([w2.shape[0]])}),
    }
    edges = [("input", "fc1"), ("fc1", "lif"), ("lif", "fc2"), ("fc2", "output")]
    return nir.NIRGraph(nodes=nodes, edges=edges, metadata={"dt": 1.0}, type_check=True)


def _lif_reference(current: np.ndarray, v_th: float) -> np.ndarray:
    """Spikes of a discrete LIF (tau = 2): v += (I - v) / 2, spike when v > v_th, reset to 0. ``current``: [T, B, n]."""
    v = np.zeros(current.shape[1:])
    out = np.zeros_like(current)
    for t in range(current.shape[0]):
        v = v + (current[t] - v) / 2.0
        z = v > v_th
        out[t] = z
        v = np.where(z, 0.0, v)
    return out


@pytest.fixture
def hand():
    w1 = np.array([[1.5, 0.0, 2.0], [0.0, 0.0, 3.0], [2.5, 1.0, 0.0], [0.7, 0.0, 0.0]])   # 6 zeros of 12
    w2 = np.array([[1.0, 0.0, 1.0, 1.0], [0.0, 2.0, 0.0, 1.0]])                             # 3 zeros of 8
    rng = np.random.default_rng(4)
    x = rng.choice([0.0, 0.0, 1.0, 2.0, 0.5], size=(T, B, 3))   # multi-level: the first layer computes MACs
    x[0, 0] = [2.0, 2.0, 2.0]                                    # some spikes for sure
    return w1, w2, x


def test_every_count_equals_a_hand_computation(hand) -> None:
    w1, w2, x = hand
    r = neuroposter.profile(_hand_graph(w1, w2), x, profiles={"sdt_paper": ["horowitz_45nm_fp32"]}, name="hand")
    fan1, fan2 = (w1 != 0).sum(axis=0), (w2 != 0).sum(axis=0)       # fan-out of each input
    spikes = _lif_reference(np.einsum("oi,tbi->tbo", w1, x), 1.0)
    assert 0 < spikes.sum() < spikes.size                              # the LIF fires, not always

    macs = float(((x != 0) * fan1).sum()) / B                         # first layer: non-binary inputs -> MACs
    acs = float((spikes * fan2).sum()) / B                             # second layer: spikes -> ACs
    m = r.metrics
    assert set(m) == set(NEUROBENCH_METRICS)
    assert m["synaptic_operations"] == {"Effective_MACs": pytest.approx(macs), "Effective_ACs": pytest.approx(acs),
                                        "Dense": pytest.approx(((w1 != 0).sum() + (w2 != 0).sum()) * T)}
    assert m["activation_sparsity"] == pytest.approx(1.0 - spikes.sum() / (4 * T * B))
    assert m["connection_sparsity"] == pytest.approx((6 + 3) / (12 + 8))
    assert m["parameter_count"] == 20 and m["footprint"] == 20         # 8-bit weights
    driven = ((np.abs(np.einsum("oi,tbi->tbo", (w1 != 0).astype(float), (x != 0).astype(float)))) > 0).sum() / B
    assert m["membrane_updates"] == pytest.approx(driven)              # neuron-steps with an input event

    fl = r.first_layer
    assert fl["name"] == "fc1" and fl["input"] == "non-binary"
    assert fl["effective_macs"] == pytest.approx(macs) and fl["effective_acs"] == 0
    assert fl["sdt_paper_macs"] == {"once": (w1 != 0).sum(), "xT": (w1 != 0).sum() * T}
    p = load_profile("horowitz_45nm_fp32").energy
    once = r.energy_of("sdt_paper", "horowitz_45nm_fp32", "first_layer=once")
    want = (w1 != 0).sum() * p["e_mac_pj"] + acs * p["e_ac_pj"]
    assert once.total_pj == pytest.approx(want)
    assert fl["share_of_sdt_paper_energy"]["horowitz_45nm_fp32/first_layer=once"] == pytest.approx(
        (w1 != 0).sum() * p["e_mac_pj"] / want)

    layers = r.layers
    assert list(layers["name"]) == ["fc1", "lif", "fc2"]
    assert layers.set_index("name").loc["lif", "spikes"] == pytest.approx(spikes.sum() / B)


def test_binary_inputs_are_acs_and_the_json_holds_the_same_numbers(hand, tmp_path) -> None:
    w1, w2, x = hand
    xb = (x > 0.6).astype(float)
    r = neuroposter.profile(_hand_graph(w1, w2), xb, profiles=["horowitz_45nm_fp32", "odin"])
    assert r.metrics["synaptic_operations"]["Effective_MACs"] == 0
    assert r.first_layer["input"] == "binary"
    assert r.first_layer["effective_acs"] == pytest.approx(float(((xb != 0) * (w1 != 0).sum(0)).sum()) / B)
    # an all-in profile refuses the per-term views: listed as unavailable with the reason, never priced
    odin = [b for b in r.energy if b.profile == "odin"]
    assert {b.view for b in odin} == {"sdt_paper", "precision", "memory", "device"}
    assert all(not b.available and "all-in" in b.reason for b in odin if b.view != "device")
    data = json.loads(r.to_json(tmp_path).read_text())
    assert (tmp_path / RESULTS_NAME).is_file()
    assert data["metrics"]["synaptic_operations"]["Effective_ACs"] == pytest.approx(
        r.metrics["synaptic_operations"]["Effective_ACs"])
    assert all(k in data["notes"] for k in NEUROBENCH_METRICS)
    est = {(e["view"], e["profile"], e["variant"]): e for e in data["energy"]["estimates"]}
    assert est[("device", "odin", "")]["available"] and est[("device", "odin", "")]["sources"]
    assert not est[("precision", "odin", "")]["available"] and est[("precision", "odin", "")]["reason"]


def test_wrong_inputs_are_refused_in_one_line(hand) -> None:
    w1, w2, x = hand
    with pytest.raises(UsageError, match="shape"):
        neuroposter.profile(_hand_graph(w1, w2), x[..., :2])
    with pytest.raises(UsageError, match="cannot profile"):
        neuroposter.profile(object(), x)
    with pytest.raises(UsageError, match="view"):
        neuroposter.profile(_hand_graph(w1, w2), x, profiles={"paper": ["horowitz_45nm_fp32"]})


def _small_sdt():
    from neuroposter.models.sdt import SDTConfig, SpikeDrivenTransformer
    from neuroposter.testing.active_init import spiking_random_init

    torch.manual_seed(0)
    cfg = SDTConfig(d_in=24, n_tokens=4, d_model=16, depth=1, heads=2, mlp_hidden=16, n_classes=3)
    model = spiking_random_init(SpikeDrivenTransformer(cfg)).eval()
    g = torch.Generator().manual_seed(2)
    return model, (torch.rand(4, 3, 4, 24, generator=g) < 0.3).float()


def _same(a, b) -> None:
    assert a.metrics == b.metrics and a.first_layer == b.first_layer
    assert a.layers.equals(b.layers)
    assert [(e.view, e.profile, e.variant, e.total_pj) for e in a.energy] == \
           [(e.view, e.profile, e.variant, e.total_pj) for e in b.energy]


def test_a_project_model_and_its_nir_graph_give_identical_results(tmp_path) -> None:
    from neuroposter.ir import write_graph
    from neuroposter.ir.lower import lower_model, to_graph_input

    model, spikes = _small_sdt()
    from_model = neuroposter.profile(model, spikes, name="sdt")
    assert from_model.metrics["synaptic_operations"]["Effective_ACs"] > 0
    assert 0 < from_model.metrics["activation_sparsity"] < 1
    graph = lower_model(model, T=spikes.shape[0], source_run="sdt")
    x = to_graph_input(spikes, graph)
    _same(from_model, neuroposter.profile(graph, x, name="sdt"))
    write_graph(tmp_path / "sdt.nir", graph)
    _same(from_model, neuroposter.profile(tmp_path / "sdt.nir", x, name="sdt"))
    with pytest.raises(UsageError, match=r"\[T, B, N, D\]"):
        neuroposter.profile(model, x[:, :, :, 0])


def test_a_graph_written_by_snntorch_is_profiled(tmp_path) -> None:
    snn = pytest.importorskip("snntorch")
    import snntorch.utils
    from snntorch.export_nir import export_to_nir

    from neuroposter.ir.interop import SNNTORCH_DT

    torch.manual_seed(5)
    net = torch.nn.Sequential(
        torch.nn.Linear(12, 16),
        snn.Leaky(beta=torch.full((16,), 0.8), threshold=torch.ones(16), init_hidden=True, reset_mechanism="zero"),
        torch.nn.Linear(16, 4, bias=False),
        snn.Leaky(beta=torch.full((4,), 0.6), threshold=torch.ones(4), init_hidden=True, reset_mechanism="zero"))
    with torch.no_grad():
        net[0].weight.mul_(4.0)
        net[2].weight.mul_(3.0).add_(0.4)
    x = (torch.rand(10, 5, 12, generator=torch.Generator().manual_seed(1)) < 0.4).float()
    snntorch.utils.reset(net)
    with torch.no_grad():
        hidden, out = [], []
        for t in range(10):
            h = net[1](net[0](x[t]))
            hidden.append(h)
            out.append(net[3](net[2](h)))
    hidden, out = torch.stack(hidden).numpy(), torch.stack(out).numpy()   # snnTorch's own spikes
    with contextlib.redirect_stdout(io.StringIO()):
        nir.write(str(tmp_path / "snn.nir"), export_to_nir(net, x[0], ignore_dims=[0]))

    r = neuroposter.profile(tmp_path / "snn.nir", x, producer="snntorch", profiles=["loihi"])
    assert r.provenance["producer"] == "snntorch" and r.provenance["dt"] == SNNTORCH_DT
    w1 = net[0].weight.detach().numpy()
    w2 = net[2].weight.detach().numpy()
    first = float(((x.numpy() != 0) * (w1 != 0).sum(0)).sum()) / 5
    second = float((hidden * (w2 != 0).sum(0)).sum()) / 5
    assert r.metrics["synaptic_operations"]["Effective_ACs"] == pytest.approx(first + second)
    assert r.metrics["synaptic_operations"]["Effective_MACs"] == 0
    assert r.metrics["activation_sparsity"] == pytest.approx(1 - (hidden.sum() + out.sum()) / (10 * 5 * 20))
    assert r.energy_of("device", "loihi").available


# ------------------------------------------------------------------------------------------ results.json


def _task(n: int = 48, T_: int = 4, N: int = 4, D: int = 24, G: int = 3):
    from neuroposter.train.data import SplitData, TaskData

    rng = np.random.default_rng(0)
    y = (rng.random((n, G)) < 0.4).astype(np.float32)
    x = torch.from_numpy((rng.random((n, T_, N, D)) < 0.3).astype(np.uint8))
    y = torch.from_numpy(y)
    a, b = n // 2, 3 * n // 4
    return TaskData(SplitData(x[:a], y[:a]), SplitData(x[a:b], y[a:b]), SplitData(x[b:], y[b:]),
                    [f"g{i}" for i in range(G)], "spikes", meta={"T": T_, "n_tokens": N, "d_in": D, "form": "tokens"},
                    inputs_manifest={"encoded": {"path": "memory", "key": "fake"}})


def test_a_runs_results_json_equals_profile_on_its_test_inputs(tmp_path) -> None:
    from neuroposter.manifest import read_manifest
    from neuroposter.train import TrainConfig, load_run, train_run
    from neuroposter.train.data import to_model_input

    torch.set_num_threads(1)
    task = _task()
    train_run("sdt", task, tmp_path / "sdt", TrainConfig(epochs=1, batch_size=16),
              model_kwargs=dict(d_model=16, depth=1, heads=2, mlp_hidden=16))
    path = tmp_path / "sdt" / RESULTS_NAME
    data = json.loads(path.read_text())
    assert RESULTS_NAME in read_manifest(tmp_path / "sdt")["files"]            # hashed with the run
    run = load_run(tmp_path / "sdt")
    want = neuroposter.profile(run.model, to_model_input(task.test.inputs, task.layout), name="sdt")
    assert data["metrics"] == json.loads(json.dumps(want.to_dict()["metrics"]))
    assert data["first_layer"] == json.loads(json.dumps(want.to_dict()["first_layer"]))
    assert data["samples"] == len(task.test.labels)
    assert data["task"]["test"]["map"] == run.metrics["test"]["map"] and data["task"]["baselines"]


def test_an_ann_run_says_where_its_counts_are(tmp_path) -> None:
    data = json.loads(write_run_results(tmp_path, None, None, kind="ann", name="cnn",
                                        metrics={"test": {"map": 0.5}, "baselines": {}}).read_text())
    assert all(data["metrics"][k] is None for k in NEUROBENCH_METRICS)
    assert "--target onnx" in data["notes"]["synaptic_operations"] and data["task"]["test"]["map"] == 0.5


def test_a_bundles_results_json_equals_its_stored_counts(hand, tmp_path) -> None:
    from neuroposter.manifest import read_manifest
    from neuroposter.profiling.stored import StoredCounts, read_op_counts, write_op_counts
    from neuroposter.targets._bundle import write_bundle

    w1, w2, x = hand
    counts = neuroposter.profile(_hand_graph(w1, w2), x).counts
    bundle, refused = tmp_path / "bundle", tmp_path / "refused"
    for d in (bundle, refused):
        d.mkdir()
    write_op_counts(bundle, {"model": StoredCounts(counts, "hand graph"),
                             "frontend": StoredCounts(counts, "a front end", {"image_size": [8, 8]})})
    for d in (bundle, refused):
        write_bundle(d, target="nir", run_dir=tmp_path / "run", run_manifest=None,
                     artifacts=[f.name for f in d.iterdir()], summary={"ok": True}, options={})
    data = json.loads((bundle / RESULTS_NAME).read_text())
    manifest = read_manifest(bundle)
    assert RESULTS_NAME in manifest["artifacts"] and RESULTS_NAME in manifest["files"]
    stored = read_op_counts(bundle)["model"].counts
    nb = stored.neurobench()
    assert data["metrics"]["synaptic_operations"] == {k: pytest.approx(v) for k, v in nb.items()}
    assert data["metrics"]["parameter_count"] == stored.n_weights
    assert data["metrics"]["connection_sparsity"] is None and "no weight values" in data["notes"]["connection_sparsity"]
    assert data["totals"]["synops"] == pytest.approx(stored.synops)
    assert data["parts"]["frontend"]["metrics"]["synaptic_operations"]["Dense"] == pytest.approx(nb["Dense"])
    assert data == json.loads(json.dumps(from_counts(stored).to_dict() | {"parts": data["parts"],
                                                                           "provenance": data["provenance"],
                                                                           "name": data["name"]}))
    gone = json.loads((refused / RESULTS_NAME).read_text())
    assert all(gone["metrics"][k] is None for k in NEUROBENCH_METRICS) and "no op counts" in gone["notes"]["footprint"]


def test_importing_the_package_stays_light() -> None:
    import subprocess
    import sys

    code = "import sys, neuroposter; assert 'torch' not in sys.modules; assert callable(neuroposter.profile)"
    subprocess.run([sys.executable, "-c", code], check=True, cwd=Path(__file__).resolve().parents[2])
