"""Hand-made NIR graphs and records in the simulator's documented format (contract section 6)."""

from __future__ import annotations

import nir
import numpy as np
import pytest


def lif(shape, v_th=1.0):
    return nir.LIF(tau=np.full(shape, 2.0), r=np.ones(shape), v_leak=np.zeros(shape),
                   v_threshold=np.full(shape, v_th))


@pytest.fixture
def rng():
    return np.random.default_rng(0)


@pytest.fixture
def conv_graph(rng):
    """Input [2, 7] -> Conv1d(2->3, k=3, stride 2, pad 1, some zero weights) -> LIF -> Affine -> LI readout."""
    w = rng.normal(size=(3, 2, 3))
    w[0, 1, 2] = 0.0  # a zero weight: not a synapse
    conv = nir.Conv1d(input_shape=7, weight=w, stride=2, padding=1, dilation=1, groups=1, bias=np.zeros(3))
    aff_w = rng.normal(size=(4, 12))
    aff_w[:, 0] = 0.0
    nodes = {
        "input": nir.Input(input_type={"input": np.array([2, 7])}),
        "conv": conv,
        "lif": lif((3, 4)),
        "flat": nir.Flatten(start_dim=0, end_dim=-1, input_type={"input": np.array([3, 4])}),
        "fc": nir.Affine(weight=aff_w, bias=np.zeros(4)),
        "out_lif": lif((4,)),
        "output": nir.Output(output_type={"output": np.array([4])}),
    }
    edges = [("input", "conv"), ("conv", "lif"), ("lif", "flat"), ("flat", "fc"), ("fc", "out_lif"),
             ("out_lif", "output")]
    return nir.NIRGraph(nodes=nodes, edges=edges, type_check=False)


@pytest.fixture
def sdsa_graph():
    """A one-block SDSA-style sub-graph: q, k spikes -> AND (Threshold fed by both) -> token-sum Conv1d."""
    D, N = 2, 3
    sub_nodes = {
        "input": nir.Input(input_type={"input": np.array([D, N])}),
        "q": nir.Conv1d(input_shape=N, weight=np.eye(D)[:, :, None], stride=1, padding=0, dilation=1, groups=1,
                        bias=np.zeros(D)),
        "k": nir.Conv1d(input_shape=N, weight=np.eye(D)[:, :, None], stride=1, padding=0, dilation=1, groups=1,
                        bias=np.zeros(D)),
        "q_sn": lif((D, N)),
        "k_sn": lif((D, N)),
        "and_qk": nir.Threshold(threshold=np.full((D, N), 1.5)),
        "tsum": nir.Conv1d(input_shape=N, weight=np.ones((D, 1, N)), stride=1, padding=0, dilation=1,
                           groups=D, bias=np.zeros(D)),
        "kv_sn": lif((D, 1), v_th=0.25),
        "output": nir.Output(output_type={"output": np.array([D, 1])}),
    }
    sub_edges = [("input", "q"), ("input", "k"), ("q", "q_sn"), ("k", "k_sn"), ("q_sn", "and_qk"),
                 ("k_sn", "and_qk"), ("and_qk", "tsum"), ("tsum", "kv_sn"), ("kv_sn", "output")]
    sub = nir.NIRGraph(nodes=sub_nodes, edges=sub_edges, type_check=False,
                       metadata={"op": "sdsa", "n_tokens": N, "dim": D, "heads": 1, "kv_v_th": 0.25})
    top = nir.NIRGraph(nodes={"input": nir.Input(input_type={"input": np.array([D, N])}),
                              "blocks.0.attn": sub,
                              "output": nir.Output(output_type={"output": np.array([D, 1])})},
                       edges=[("input", "blocks.0.attn"), ("blocks.0.attn", "output")], type_check=False,
                       metadata={"T": 2, "model": "sdt"})
    return top
