"""Quantisation-aware training of the pixel SDT for Loihi 2: the stem's convolutions (pools' 1/4 folded) and the
graded 8-bit input in the forward pass, against the Loihi quantisers and the integer reference simulator."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from neuroposter.ir.graph import flatten
from neuroposter.ir.lower import lower_model, to_graph_input
from neuroposter.ir.qat import Arithmetic, QATError, connections, deployed_weights, enable, integer_plan
from neuroposter.ir.simulate import simulate
from neuroposter.models.lif import LIF
from neuroposter.models.sdt_pixels import PixelSDT
from neuroposter.testing.active_init import spiking_pixel_sdt
from neuroposter.profiling.profiles import load_profile
from neuroposter.targets import training_quantiser
from neuroposter.targets.loihi.fixed_point import quantize_input, quantize_loihi

S, T, C1, D, CLASSES, B = 8, 3, 4, 8, 3, 6
AMAX = 2.5
LOIHI = Arithmetic("loihi", "loihi2", "pow2", 8, input_amax=AMAX)


def _model() -> PixelSDT:
    """A tiny pixel SDT whose layers all fire (BatchNorm statistics of real batches, widened)."""
    return spiking_pixel_sdt(image_size=S, T=T, c1=C1, d_model=D, depth=1, mlp_hidden=16, n_classes=CLASSES,
                             dtype=torch.float32)


def _images(b: int = B) -> torch.Tensor:
    g = torch.Generator().manual_seed(3)
    return torch.randn(b, 3, S, S, generator=g) * 1.2     # some |x| beyond AMAX: clipped as the target clips


def test_connections_are_the_lowered_graphs() -> None:
    """Every weighted node of the lowered graph is one connection (except SDSA's constant token sum/broadcast and
    the pools, which the integer graph composes into the next synapse): the float graph's and the integer graph's."""
    model = _model()
    flat = flatten(lower_model(model, T=T), strict=True)
    weighted = {p for p, nd in flat.nodes.items() if nd.role == "conn" and not p.endswith((".kv_sum", ".kv_bcast"))}
    assert {c.path for c in connections(model)} == weighted - {"stem.pool1", "stem.pool2"}
    fi = flatten(quantize_loihi(flat, load_profile("loihi2"), input_amax=AMAX)[0], strict=True)
    synapses = {p for p, nd in fi.nodes.items() if nd.role == "conn" and "identity_of" not in (nd.nir.metadata or {})
                and not p.endswith((".kv_sum", ".kv_bcast"))}
    assert {c.path for c in connections(model)} == synapses
    divs = {c.path: c.div for c in connections(model)}
    assert (divs["stem.conv1"], divs["stem.conv2"], divs["embed"]) == (1, 4, 4)


def test_trained_weights_are_the_deployed_ones() -> None:
    """Every connection's trained weight (folded, /4 after a pool, on the grid) is the integer graph's, dequantised:
    the composed synapses repeat each weight over the pool's 2x2 window."""
    model = _model()
    flat = flatten(lower_model(model, T=T), strict=True)
    fi = flatten(quantize_loihi(flat, load_profile("loihi2"), input_amax=AMAX)[0], strict=True)
    for path, w in deployed_weights(model, LOIHI).items():
        node = fi.nodes[path].nir
        meta = node.metadata["loihi"]
        deq = np.asarray(node.weight, dtype=np.float64) / 2 * 2.0 ** meta["mantissa_exp"] / meta["scale"]
        # (stem.conv1's scale has the input's 2**-k folded in: its dequantised weight acts on input units too)
        if path in ("stem.conv2", "embed"):  # pool composed: each tap repeated over 2x2 (stride 2)
            deq = deq[:, :, ::2, ::2]
        if path == "head":
            deq = deq.reshape(deq.shape[0], -1)[:, ::int(model.cfg.n_tokens)]
        np.testing.assert_array_equal(deq.reshape(w.shape), w, err_msg=path)


def test_integer_forward_is_the_integer_reference_bit_for_bit() -> None:
    """With the Loihi integer graph, the forward pass of the pixel SDT (graded 8-bit input, stem, SDT) makes
    exactly the integer reference simulator's spikes in every population and its read-out."""
    model = _model()
    x = _images()
    builder = training_quantiser(LOIHI)
    enable(model, LOIHI, builder)
    for mod in model.modules():
        if isinstance(mod, LIF):
            mod.record_spikes = True
    logits = model(x).detach().numpy()
    lifs = {name for name, mod in model.named_modules() if isinstance(mod, LIF)}
    assert set(model._qat_state.plan.neurons) >= lifs      # every population runs the integer neuron (none falls
    #                                                        back to the float LIF, e.g. behind embed.flatten)
    graph = lower_model(model, T=T)
    assert graph.metadata["input_amax"] == AMAX                # the export's graded input takes this range
    flat_int = builder(model)
    xi = quantize_input(to_graph_input(x, graph), flat_int)
    assert np.abs(xi).max() == 127                             # the clipping is exercised
    ref = simulate(flat_int, xi.astype(np.int64), mode="same_step", arithmetic="int")
    np.testing.assert_allclose(logits, ref.aligned_output(), rtol=0, atol=1e-9)
    compared = []
    for name, mod in model.named_modules():
        if isinstance(mod, LIF) and name in ref.records:
            got, want = mod.last_spikes.numpy(), ref.records[name]
            if want.ndim == 4:                                 # token populations [T, B, d, N] -> [T, B, N, d]
                want = np.swapaxes(want, -1, -2)
            np.testing.assert_array_equal(got.reshape(want.shape), want, err_msg=name)
            assert 0 < want.mean() < 1, name                   # a population that fires, not always
            compared.append(name)
    assert {"stem.sn1", "stem.sn2"} <= set(compared)
    assert len(compared) == sum(isinstance(m, LIF) for m in model.modules())


def test_graded_input_changes_the_forward_and_follows_the_range() -> None:
    """The input is on the graded grid: the plan of the first synapse carries the payload format; another
    input_amax is another scale."""
    model = _model()
    enable(model, LOIHI, training_quantiser(LOIHI))
    model(_images(2))
    conv1 = model._qat_state.plan.conns["stem.conv1"]
    assert (conv1.in_scale, conv1.in_qmax) == (32.0, 127.0)       # 2**floor(log2(127 / 2.5))
    other = dataclasses.replace(LOIHI, input_amax=4.5)
    enable(model, other, training_quantiser(other))
    model(_images(2))
    assert model._qat_state.plan.conns["stem.conv1"].in_scale == 16.0


def test_pixel_model_needs_the_input_range() -> None:
    model = _model()
    bare = dataclasses.replace(LOIHI, input_amax=None)
    enable(model, bare, training_quantiser(bare))
    with pytest.raises(QATError, match="input_amax"):
        model(_images(2))


def test_gradients_reach_the_stem() -> None:
    model = _model().train()
    enable(model, LOIHI, training_quantiser(LOIHI))
    model(_images(4)).mean().backward()
    for p in ("stem.conv1.weight", "stem.bn1.weight", "stem.conv2.weight", "embed.weight"):
        g = model.get_parameter(p).grad
        assert g is not None and torch.isfinite(g).all() and g.abs().sum() > 0, p


def test_arithmetic_records_the_input_range_only_when_set() -> None:
    assert Arithmetic.from_dict(LOIHI.to_dict()) == LOIHI
    bare = Arithmetic("loihi", "loihi2", "pow2", 8)
    assert "input_amax" not in bare.to_dict() and Arithmetic.from_dict(bare.to_dict()) == bare
    with pytest.raises(QATError, match="input_amax"):
        Arithmetic("loihi", "loihi2", "pow2", 8, input_amax=0.0)
    assert integer_plan is not None
