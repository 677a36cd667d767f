"""The counter on a real lowered SDT, simulated by the reference simulator (contract sections 5-6)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from neuroposter.profiling.counts import count_snn
from neuroposter.profiling.energy import estimate_energy


def _tiny_sdt_run():
    sdt = pytest.importorskip("neuroposter.models.sdt")
    ir = pytest.importorskip("neuroposter.ir")
    lower = pytest.importorskip("neuroposter.ir.lower")
    torch.manual_seed(0)
    cfg = sdt.SDTConfig(d_in=24, n_tokens=5, d_model=16, depth=1, heads=2, mlp_hidden=32, n_classes=4)
    model = sdt.SpikeDrivenTransformer(cfg).eval()
    with torch.no_grad():  # make it spike (untrained weights are too small)
        for name, p in model.named_parameters():
            if "weight" in name and p.ndim > 1:
                p.mul_(4.0)
    graph = ir.lower_model(model, T=4)
    x = lower.to_graph_input((torch.rand(4, 3, 5, 24) < 0.3).float(), graph)
    return graph, x, ir.simulate(graph, x, record=True)


def test_counts_from_simulator_records_match_neurobench_rederivation():
    graph, x, res = _tiny_sdt_run()
    c = count_snn(graph, res, x=x)
    by = {lc.name: lc for lc in c.layers}
    # spikes per layer = recorded spikes / batch
    for path, rec in res.records.items():
        assert by[path].spikes == pytest.approx(float(np.asarray(rec).sum()) / x.shape[1])
    # every connection's synops re-derived the NeuroBench way from the simulator's inputs
    from neuroposter.ir.graph import flatten
    nodes = flatten(graph).nodes
    for path, inp in res.inputs.items():
        node = nodes[path].nir
        w = torch.as_tensor((np.asarray(node.weight) != 0).astype(np.float32))
        xb = torch.as_tensor((np.asarray(inp) != 0).astype(np.float32))
        xb = xb.reshape(-1, *xb.shape[2:])
        if type(node).__name__ == "Conv1d":
            out = torch.nn.functional.conv1d(xb, w, stride=int(np.atleast_1d(node.stride)[0]),
                                             padding=int(np.atleast_1d(node.padding)[0]))
        else:
            out = torch.matmul(w, xb.unsqueeze(-1))
        assert by[path].synops == pytest.approx(float(out.sum()) / x.shape[1]), path
    assert c.mask_ops_dense > 0 and c.first_layer.name == "embed"
    assert {lc.name for lc in c.layers if lc.sdsa and lc.kind == "synapse"} == {
        "blocks.0.attn.kv_sum", "blocks.0.attn.kv_bcast"}
    e = estimate_energy(c, "horowitz_45nm_fp32", view="sdt_paper")
    assert e.available and e.total_pj > 0
