"""ANN counts from ONNX graphs: hand-checked tiny graphs, and the published DenseNet-169 / ViT-B/16 totals."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from neuroposter.profiling.onnx_counts import count_onnx, onnx_node_counts


class Tiny(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = torch.nn.Conv2d(3, 8, 3, stride=2, padding=1, groups=1)
        self.dw = torch.nn.Conv2d(8, 8, 3, padding=1, groups=8, bias=False)
        self.fc = torch.nn.Linear(8 * 4 * 4, 10)

    def forward(self, x):
        x = torch.relu(self.conv(x))
        x = self.dw(x)
        return torch.softmax(self.fc(x.flatten(1)), dim=-1)


def _export(model, shape, path, dynamic=True):
    kw = {"dynamic_axes": {"x": {0: "batch"}}} if dynamic else {}
    torch.onnx.export(model.eval(), torch.zeros(shape), str(path), input_names=["x"], output_names=["y"],
                      opset_version=17, **kw)
    return path


@pytest.mark.parametrize("dynamic", [False, True])
def test_tiny_counts_by_hand(tmp_path, dynamic):
    p = _export(Tiny(), (1, 3, 8, 8), tmp_path / "tiny.onnx", dynamic)
    nodes = {n.op_type: n for n in onnx_node_counts(p)}
    # conv: out 8x4x4, each 3*3*3 MACs
    assert nodes["Conv"].macs in (8 * 4 * 4 * 27, 8 * 4 * 4 * 9)
    convs = [n for n in onnx_node_counts(p) if n.op_type == "Conv"]
    assert [c.macs for c in convs] == [8 * 16 * 27, 8 * 16 * 9]          # depthwise: C_in/groups = 1
    assert nodes["Gemm"].macs == 128 * 10
    assert nodes["Relu"].other_ops == 8 * 16
    assert nodes["Softmax"].other_ops == 3 * 10
    c = count_onnx(p)
    assert c.macs == 8 * 16 * 27 + 8 * 16 * 9 + 1280
    assert c.n_weights == (8 * 27 + 8) + 8 * 9 + (1280 + 10)
    assert c.kind == "ann" and c.first_layer.op_type == "Conv"


def test_matmul_batched(tmp_path):
    class MM(torch.nn.Module):
        def forward(self, x):  # [B, 4, 5] @ [B, 5, 4] -> [B, 4, 4]
            return x @ x.transpose(1, 2)

    p = _export(MM(), (2, 4, 5), tmp_path / "mm.onnx", dynamic=False)
    mm = [n for n in onnx_node_counts(p) if n.op_type == "MatMul"][0]
    assert mm.macs == 2 * 4 * 4 * 5
    assert count_onnx(p, batch=2).macs == 4 * 4 * 5  # per sample


@pytest.mark.slow
@pytest.mark.parametrize("arch, expected_gmac", [("densenet169", 3.36), ("vit_b_16", 17.56)])
def test_published_mac_totals(tmp_path, arch, expected_gmac):
    """torchvision's 'GFLOPS' column counts MACs of Conv/Linear/MatMul (incl. attention QK^T and AV)."""
    import torchvision

    model = getattr(torchvision.models, arch)(weights=None)
    p = _export(model, (1, 3, 224, 224), tmp_path / f"{arch}.onnx", dynamic=True)
    c = count_onnx(p)
    gmac = c.macs / 1e9
    assert gmac == pytest.approx(expected_gmac, rel=0.01), f"{arch}: {gmac:.4f} GMAC"
    assert np.isfinite(c.other_ops) and c.other_ops > 0
