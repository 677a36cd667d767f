"""The pixel SDT on Loihi 2: pools composed into the next synapse (exactly), the analog image sent as graded spikes
(the integer reference, the numpy emulator and Lava consume the same integers, bit for bit), and the refusals."""

from __future__ import annotations

import json

import nir
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from neuroposter.ir import lower_model, retime, simulate
from neuroposter.ir.graph import flatten
from neuroposter.ir.lower import to_graph_input
from neuroposter.ir.quantize import QuantizationError
from neuroposter.models.sdt_pixels import PixelSDT
from neuroposter.testing.active_init import spiking_pixel_sdt
from neuroposter.profiling.profiles import load_profile
from neuroposter.targets.loihi.builder import plan_network
from neuroposter.targets.compose import compose_pools
from neuroposter.targets.loihi.fixed_point import INPUT_BITS, input_error, quantize_input, quantize_loihi
from neuroposter.targets.loihi.target import reference_readout_int
from neuroposter.testing.emulate import emulate

LOIHI2 = load_profile("loihi2")
S, T, C1, D, CLASSES, B = 8, 3, 4, 8, 3, 4


# ---------------------------------------------------------------------------------------------
# a tiny pixel SDT whose layers all fire


@pytest.fixture(scope="module")
def model() -> PixelSDT:
    return spiking_pixel_sdt(image_size=S, T=T, c1=C1, d_model=D, depth=1, mlp_hidden=16, n_classes=CLASSES)


@pytest.fixture(scope="module")
def graph(model) -> nir.NIRGraph:
    return lower_model(model, T=T, source_run="runs/sdt-pixels")


@pytest.fixture(scope="module")
def images(graph) -> np.ndarray:
    torch.manual_seed(3)
    return to_graph_input(torch.randn(B, 3, S, S, dtype=torch.float64), graph)


@pytest.fixture(scope="module")
def deployed(graph, images):
    """(integer graph, its flat graph, plan, integer inputs, per-hop integer reference)."""
    gi, _ = quantize_loihi(flatten(graph, strict=True), LOIHI2, input_amax=float(np.abs(images).max()))
    fi = flatten(gi, strict=True)
    plan = plan_network(fi, max_delay=LOIHI2.limits.max_delay)
    xi = quantize_input(images, gi)
    ref = simulate(fi, xi, mode="per_hop", arithmetic="int", delays=retime(fi).delays)
    return gi, fi, plan, xi, ref


# ---------------------------------------------------------------------------------------------
# composition


def _pool_graph(after: str) -> nir.NIRGraph:
    """Input [2, 8, 8] -> SumPool2d(2) -> (Conv2d 3x3 pad 1 | Flatten -> Conv1d 1x1) -> LIF -> Output, with
    small integer weights (every float sum is exact)."""
    rng = np.random.default_rng(0)
    pool = nir.SumPool2d(kernel_size=np.array([2, 2]), stride=np.array([2, 2]), padding=np.array([0, 0]))
    nodes = {"input": nir.Input(input_type={"input": np.array([2, 8, 8])}), "pool": pool}
    if after == "conv2d":
        nodes["conv"] = nir.Conv2d(input_shape=(4, 4), weight=rng.integers(-3, 4, (3, 2, 3, 3)).astype(float),
                                   stride=1, padding=1, dilation=1, groups=1, bias=np.array([0.5, -1.0, 2.0]))
        shape, edges = (3, 4, 4), [("input", "pool"), ("pool", "conv")]
    else:
        nodes["flat"] = nir.Flatten(input_type={"input": np.array([2, 4, 4])}, start_dim=-2, end_dim=-1)
        nodes["conv"] = nir.Conv1d(input_shape=16, weight=rng.integers(-3, 4, (3, 2, 1)).astype(float), stride=1,
                                   padding=0, dilation=1, groups=1, bias=np.array([0.5, -1.0, 2.0]))
        shape, edges = (3, 16), [("input", "pool"), ("pool", "flat"), ("flat", "conv")]
    nodes["lif"] = nir.LIF(tau=np.full(shape, 2.0), r=np.ones(shape), v_leak=np.zeros(shape),
                           v_threshold=np.full(shape, 3.0))
    nodes["output"] = nir.Output(output_type={"output": np.array(shape)})
    return nir.NIRGraph(nodes=nodes, edges=edges + [("conv", "lif"), ("lif", "output")], metadata={"dt": 1.0})


@pytest.mark.parametrize("after", ["conv2d", "token_conv1d"])
def test_pool_and_connection_compose_into_one_exact_conv2d(after) -> None:
    fg = flatten(_pool_graph(after), strict=True)
    cg = compose_pools(fg)
    assert "pool" not in cg.nodes and "flat" not in cg.nodes
    conv = cg.nodes["conv"].nir
    assert isinstance(conv, nir.Conv2d) and list(np.asarray(conv.stride)) == [2, 2]
    k = 6 if after == "conv2d" else 2
    assert conv.weight.shape == (3, 2, k, k)
    # the composed convolution against torch's pool then convolution (integers: exact in float64)
    x = torch.as_tensor(np.random.default_rng(1).integers(-4, 5, (5, 2, 8, 8)).astype(np.float64))
    pooled = F.avg_pool2d(x, 2, 2, divisor_override=1)
    w0 = torch.as_tensor(np.asarray(fg.nodes["conv"].nir.weight))
    want = (F.conv2d(pooled, w0, padding=1) if after == "conv2d"
            else F.conv1d(pooled.reshape(5, 2, 16), w0).reshape(5, 3, 4, 4))
    got = F.conv2d(x, torch.as_tensor(conv.weight), stride=2, padding=np.asarray(conv.padding).tolist())
    assert torch.equal(got, want)
    # the graphs before and after, in the reference simulator: every record identical
    xs = np.random.default_rng(2).integers(-4, 5, (4, 3, 2, 8, 8)).astype(np.float64)
    a, b = simulate(fg, xs, mode="same_step"), simulate(cg, xs, mode="same_step")
    assert np.array_equal(a.output, b.output)
    assert np.array_equal(a.records["lif"], b.records["lif"]) and a.records["lif"].any() and not a.records["lif"].all()


def test_pixel_sdt_composed_graph_equals_the_float_graph(graph, images) -> None:
    fg = flatten(graph, strict=True)
    cg = compose_pools(fg)
    assert not any(isinstance(n.nir, nir.SumPool2d) for n in cg.nodes.values())
    assert cg.nodes["stem.conv2"].nir.weight.shape[2:] == (6, 6) and cg.nodes["embed"].nir.weight.shape[2:] == (2, 2)
    assert isinstance(cg.nodes["embed.flatten"].nir, nir.Flatten)
    a, b = simulate(fg, images, mode="same_step"), simulate(cg, images, mode="same_step")
    np.testing.assert_allclose(b.output, a.output, rtol=1e-12, atol=1e-12)
    neurons = [n for n, nd in fg.nodes.items() if nd.role == "neuron"]
    for n in neurons:
        assert np.array_equal(a.records[n], b.records[n]), n
    assert a.records["stem.sn1"].mean() > 0.01 and a.records["stem.sn2"].mean() > 0.01
    # the graph itself (graph.nir) keeps its pools
    assert isinstance(graph.nodes["stem.pool1"], nir.SumPool2d)


def test_overlapping_pool_is_refused_by_name() -> None:
    g = _pool_graph("conv2d")
    g.nodes["pool"] = nir.SumPool2d(kernel_size=np.array([2, 2]), stride=np.array([1, 1]), padding=np.array([0, 0]))
    g.nodes["conv"] = nir.Conv2d(input_shape=(7, 7), weight=np.ones((3, 2, 3, 3)), stride=1, padding=1, dilation=1,
                                 groups=1, bias=np.zeros(3))
    for k in ("lif",):
        g.nodes[k] = nir.LIF(tau=np.full((3, 7, 7), 2.0), r=np.ones((3, 7, 7)), v_leak=np.zeros((3, 7, 7)),
                             v_threshold=np.full((3, 7, 7), 3.0))
    g.nodes["output"] = nir.Output(output_type={"output": np.array([3, 7, 7])})
    g = nir.NIRGraph(nodes=g.nodes, edges=g.edges, metadata={"dt": 1.0})
    with pytest.raises(QuantizationError, match=r"'pool'.*stride = kernel"):
        quantize_loihi(flatten(g, strict=True), LOIHI2)


def test_unsupported_node_refusal_lists_what_is_supported() -> None:
    shape = (3,)
    g = nir.NIRGraph(nodes={
        "input": nir.Input(input_type={"input": np.array([4])}),
        "fc": nir.Affine(weight=np.ones((3, 4)), bias=np.zeros(3)),
        "li": nir.LI(tau=np.full(shape, 2.0), r=np.ones(shape), v_leak=np.zeros(shape)),
        "output": nir.Output(output_type={"output": np.array(shape)})},
        edges=[("input", "fc"), ("fc", "li"), ("li", "output")], metadata={"dt": 1.0})
    with pytest.raises(QuantizationError) as ei:
        quantize_loihi(flatten(g, strict=True), LOIHI2)
    msg = str(ei.value)
    assert "'li'" in msg and "supported:" in msg
    for name in ("LIF", "Threshold", "Conv2d", "Affine", "SumPool2d", "Flatten"):
        assert name in msg, (name, msg)


# ---------------------------------------------------------------------------------------------
# graded input


def test_analog_input_becomes_signed_payloads_with_a_power_of_two_scale(deployed, images) -> None:
    gi, fi, plan, xi, _ = deployed
    meta = gi.nodes["input"].metadata["loihi"]
    q = (1 << (INPUT_BITS - 1)) - 1
    assert meta["message_bits"] == INPUT_BITS <= LOIHI2.fixed_point.graded_spike_bits
    k = meta["exp"]
    assert meta["scale"] == 2.0 ** k
    amax = float(np.abs(images).max())
    assert amax * 2.0 ** k <= q < amax * 2.0 ** (k + 1)            # the largest power of two that fits
    assert xi.dtype == np.int32 and np.abs(xi).max() <= q and np.abs(xi).max() > q // 2
    assert np.max(np.abs(xi / 2.0 ** k - images)) <= 0.5 / 2.0 ** k + 1e-12
    err = input_error(images, gi)
    assert err["message_bits"] == INPUT_BITS and err["clipped_frac"] == 0.0
    assert 0 < err["max_abs_error"] <= 0.5 * err["step"] + 1e-12
    # only the synapse from the input takes graded spikes; the input scale is folded into its weights
    graded = [s for s in plan.synapses if s.message_bits]
    assert [s.src for s in graded] == ["input"] and graded[0].node == "stem.conv1"
    assert all(s.message_bits == 0 for s in plan.synapses if s.src != "input")
    lp = gi.nodes["stem.conv1"].metadata["loihi"]
    assert lp["scale"] == pytest.approx(plan.populations["stem.sn1"].scale * gi.nodes["stem.sn1"].tau.reshape(-1)[0] ** -1
                                        / 2.0 ** k, rel=1e-12)


def test_graded_input_reference_equals_the_emulator_and_tracks_the_float_graph(graph, deployed, images) -> None:
    gi, fi, plan, xi, ref = deployed
    em = emulate(plan, xi)
    out = next(iter(plan.outputs))
    r = reference_readout_int(plan, ref)
    assert np.array_equal(em.output[out].reshape(r.shape), r)
    for k in plan.populations:
        assert np.array_equal(em.spikes[k], np.asarray(ref.aligned(k))), k
    assert np.asarray(ref.aligned("stem.sn1")).mean() > 0.01
    # the deployed network stays close to the float graph: spikes of the first layer agree almost everywhere
    fl = simulate(flatten(graph, strict=True), images, mode="same_step")
    assert (np.asarray(ref.aligned("stem.sn1")) == fl.records["stem.sn1"]).mean() > 0.95


def test_direct_encoded_input_needs_its_range_and_fits_the_profile(graph) -> None:
    flat = flatten(graph, strict=True)
    with pytest.raises(QuantizationError, match="input_amax"):
        quantize_loihi(flat, LOIHI2)
    with pytest.raises(QuantizationError, match="graded spikes carry 2 to 24 bits"):
        quantize_loihi(flat, LOIHI2, input_amax=3.0, input_bits=25)
    gi, _ = quantize_loihi(flat, LOIHI2, input_amax=3.0, input_bits=12)
    assert gi.nodes["input"].metadata["loihi"]["scale"] == 512.0        # 3 * 2**9 <= 2047 < 3 * 2**10


def test_spiking_inputs_pass_unchanged(deployed) -> None:
    from neuroposter.targets.loihi.fixed_point import graded_input

    x = (np.random.default_rng(0).random((2, 3, 4)) < 0.5).astype(np.uint8)
    g = nir.NIRGraph(nodes={"input": nir.Input(input_type={"input": np.array([4])}),
                            "output": nir.Output(output_type={"output": np.array([4])})},
                     edges=[("input", "output")], metadata={"dt": 1.0})
    assert graded_input(g) is None and quantize_input(x, g) is x and input_error(x, g) is None


# ---------------------------------------------------------------------------------------------
# Lava


@pytest.mark.lava      # about 7 s: the Done-when claim runs in the default (not slow) selection
def test_lava_fixed_pt_equals_the_integer_reference_on_graded_input(deployed) -> None:
    from neuroposter.targets.loihi.builder import run_lava

    gi, fi, plan, xi, ref = deployed
    lava = run_lava(plan, xi, select_tag="fixed_pt", record=True, workers=1)
    out = next(iter(plan.outputs))
    r = reference_readout_int(plan, ref)
    assert np.array_equal(lava.output[out].reshape(r.shape), r)
    for k in plan.populations:
        assert np.array_equal(lava.spikes[k], np.asarray(ref.aligned(k))), k


@pytest.mark.lava
@pytest.mark.slow
def test_export_pixel_sdt_bundle_and_rerun(tmp_path, stub_run, model, images) -> None:
    from neuroposter.targets.base import ExportRequest
    from neuroposter.targets.loihi import export
    from neuroposter.targets.loihi.run import main

    import copy

    # as a run holds it: a float32 model and float32 posters [T, B, 3, S, S]
    stub_run(copy.deepcopy(model).float(), "sdt-pixels", images.astype(np.float32), n_classes=CLASSES)
    out = tmp_path / "export" / "loihi" / "sdt-pixels"
    res = export(ExportRequest("loihi", tmp_path / "runs" / "sdt-pixels", out, tmp_path,
                               {"samples": 3, "min_trained_agreement": 0.0}))
    assert res.ok, res.lines
    s = json.loads((out / "summary.json").read_text())
    ver = s["verification"]["simulator_vs_reference"]
    assert ver["output_exact"] and ver["spike_agreement_min"] == 1.0
    iq = s["input_quantization"]
    assert iq["message_bits"] == INPUT_BITS and iq["max_abs_error"] <= 0.5 * iq["step"] + 1e-12
    assert "mapping" in s and "error" not in s["mapping"]
    with np.load(out / "inputs.npz") as z:
        assert z["x"].dtype == np.int32 and np.abs(z["x"]).max() > 1
    assert main([str(out)]) == 0


def test_the_retrain_hint_names_qat_only_where_it_covers_the_model(model) -> None:
    from neuroposter.models.sdt import SDTConfig, SpikeDrivenTransformer
    from neuroposter.targets.loihi.target import _retrain_hint

    assert "quantisation-aware training does not cover" in _retrain_hint(torch.nn.Linear(2, 2))   # no deployed graph
    sdt = SpikeDrivenTransformer(SDTConfig(d_in=8, n_tokens=3, d_model=8, depth=1, heads=2, mlp_hidden=8, n_classes=3))
    for covered in (sdt, model):          # the pixel SDT too, since quantisation-aware training covers its stem
        assert "neuroposter train --target loihi" in _retrain_hint(covered)
