"""Standard architectures priced from ONNX: published totals, exact ViT MAC formula, block replication == full export.

Independent references:
* ViT-B/16 at 224: 17.56 GMAC, 86,567,656 parameters (torchvision's ``ViT_B_16_Weights`` meta: GFLOPS 17.56,
  num_params 86567656; torchvision's "GFLOPS" are MACs, see test_onnx_counts.py).
* ViT-S/16 at 224: 4.6 GMAC, 22.0 M parameters -- facebookresearch/deit ``README_revenge.md`` (DeiT III), table of
  baseline ViTs: "ViT-S | 22.0 | 4.6 | ... | 224x224" (its ViT-B row, 86.6 M / 17.5, is torchvision's 17.56 GMAC: the
  table's "GFLOPs" are multiply-accumulates).
* DenseNet-169 at 224: 3.36 GMAC, 14,149,480 parameters (torchvision's ``DenseNet169_Weights`` meta).
* A ViT's MACs by hand: patch embedding + per block N(4D^2 + 2DM) + 2N^2 D (QK^T and AV) + the class-token head.
"""

from __future__ import annotations

import os

import pytest
import torch

from neuroposter.errors import UsageError
from neuroposter.profiling import reference_models as rm
from neuroposter.profiling.onnx_counts import count_onnx
from neuroposter.profiling.stored import read_op_counts, write_op_counts


def _vit_macs(h: int, w: int, *, patch: int, depth: int, width: int, mlp: int, classes: int = 1000) -> int:
    """MACs of a torchvision ViT by hand (Conv/Linear/MatMul; the head sees only the class token)."""
    n_patch = (h // patch) * (w // patch)
    n = n_patch + 1
    d = width
    per_block = n * (4 * d * d + 2 * d * mlp) + 2 * n * n * d
    return n_patch * d * 3 * patch * patch + depth * per_block + d * classes


def _small_vit_counts(tmp_path, depth: int, size=(64, 48)):
    model = rm.distinct_weights_(rm._rect_vit_class()(size, patch_size=16, num_layers=depth, num_heads=4,
                                                      hidden_dim=32, mlp_dim=64).eval())
    path = str(tmp_path / f"vit{depth}.onnx")
    rm._export(model, (1, 3, *size), path)
    return count_onnx(path)


def test_block_replication_equals_full_export(tmp_path):
    """A 5-block ViT counted from its 2-block export equals its full export, layer for layer."""
    full = _small_vit_counts(tmp_path, 5)
    rep = rm.replicate_blocks(_small_vit_counts(tmp_path, 2), 5)
    assert [lc.to_dict() for lc in rep.layers] == [lc.to_dict() for lc in full.layers]
    assert rep.totals() == full.totals()
    assert rep.macs == _vit_macs(64, 48, patch=16, depth=5, width=32, mlp=64, classes=1000)


def test_replicate_blocks_refuses_other_exports(tmp_path):
    one = _small_vit_counts(tmp_path, 1)
    with pytest.raises(ValueError, match="2-block"):
        rm.replicate_blocks(one, 12)
    three = _small_vit_counts(tmp_path, 3)
    with pytest.raises(ValueError, match="more than two"):
        rm.replicate_blocks(three, 12)


def test_rect_vit_is_torchvision_vit_on_square_input():
    """The rectangular-input ViT is torchvision's network: same state dict, same outputs on a square image."""
    from torchvision.models.vision_transformer import VisionTransformer

    torch.manual_seed(0)
    ref = VisionTransformer(image_size=48, patch_size=16, num_layers=2, num_heads=2, hidden_dim=16, mlp_dim=32).eval()
    ours = rm._rect_vit_class()((48, 48), patch_size=16, num_layers=2, num_heads=2, hidden_dim=16, mlp_dim=32).eval()
    ours.load_state_dict(ref.state_dict())
    x = torch.randn(2, 3, 48, 48)
    with torch.no_grad():
        assert torch.allclose(ours(x), ref(x), atol=1e-6)
    rect = rm._rect_vit_class()((64, 32), patch_size=16, num_layers=1, num_heads=2, hidden_dim=16, mlp_dim=32).eval()
    with torch.no_grad():
        assert rect(torch.randn(1, 3, 64, 32)).shape == (1, 1000)
    assert rect.encoder.pos_embedding.shape == (1, 4 * 2 + 1, 16)


@pytest.mark.parametrize("size", [(224, 224), (268, 182), (96, 160)])
def test_vit_s_macs_follow_the_token_count(size, tmp_path, monkeypatch):
    """ViT-S/16 MACs equal the by-hand formula at every input size (tokens = ceil(H/16) * ceil(W/16) + 1); the
    temporary ONNX file is deleted."""
    monkeypatch.setattr("tempfile.tempdir", str(tmp_path))
    e = rm.reference_counts("vit_s_16", size)
    h, w = (-(-v // 16) * 16 for v in size)
    assert e.info["image_size"] == [h, w] and e.info["requested_size"] == list(size)
    assert e.counts.macs == _vit_macs(h, w, patch=16, depth=12, width=384, mlp=1536)
    assert (e.info["size_note"] == "") == ((h, w) == tuple(size))
    assert e.info["weights"] == rm.NOT_TRAINED and "not trained" in e.provenance
    assert e.counts.kind == "ann" and e.counts.name == "reference:vit_s_16"
    assert not [f for f in os.listdir(tmp_path) if f.endswith(".onnx")]


def test_vit_s_16_published_total():
    """ViT-S/16 at 224: 4.6 GMAC and 22.0 M parameters (DeiT III README, see the module docstring)."""
    e = rm.reference_counts("vit_s_16", (224, 224))
    assert e.counts.macs / 1e9 == pytest.approx(4.6, abs=0.05)
    assert e.info["parameters"] / 1e6 == pytest.approx(22.0, abs=0.1)
    # every parameter is a weight of the counts (plus a few hundred shape/index constants of the graph)
    assert 0 <= e.counts.n_weights - e.info["parameters"] < 1000


@pytest.mark.slow
def test_vit_b_16_published_total_and_torchvision_architecture():
    import torchvision

    e = rm.reference_counts("vit_b_16", (224, 224))
    assert e.counts.macs / 1e9 == pytest.approx(17.56, rel=0.001)
    assert e.info["parameters"] == 86_567_656
    assert e.info["parameters"] == sum(p.numel() for p in torchvision.models.vit_b_16(weights=None).parameters())
    assert e.counts.macs == _vit_macs(224, 224, patch=16, depth=12, width=768, mlp=3072)


@pytest.mark.slow
def test_densenet169_published_total_and_input_scaling():
    e = rm.reference_counts("densenet169", (224, 224))
    assert e.counts.macs / 1e9 == pytest.approx(3.36, rel=0.01)
    assert e.info["parameters"] == 14_149_480
    assert e.info["image_size"] == [224, 224] and e.info["size_note"] == ""
    # a CNN's conv MACs scale with the feature-map area: 448x448 has 4x the pixels of 224x224; only the
    # ImageNet head (1664 x 1000 MACs, on the pooled vector) does not scale
    big = rm.reference_counts("densenet169", (448, 448))
    head = 1664 * 1000
    assert big.counts.macs - head == pytest.approx(4 * (e.counts.macs - head), rel=1e-9)


def test_unknown_reference_lists_the_valid_names():
    with pytest.raises(UsageError, match="densenet169, vit_b_16, vit_s_16"):
        rm.reference_counts("resnet50", (224, 224))
    with pytest.raises(UsageError, match="positive"):
        rm.priced_size("vit_b_16", (0, 10))


def test_priced_size_rounds_up_to_the_patch_only_for_vits():
    assert rm.priced_size("vit_b_16", (268, 182)) == (272, 192)
    assert rm.priced_size("vit_s_16", (224, 224)) == (224, 224)
    assert rm.priced_size("densenet169", (268, 182)) == (268, 182)


def test_entries_round_trip_through_op_counts_json(tmp_path, monkeypatch):
    """The entries the onnx export stores read back losslessly, under ``reference:<name>``."""
    calls = []
    entries = rm.reference_entries((64, 48), names=["vit_s_16"], on_done=lambda n, e: calls.append(n))
    assert list(entries) == ["reference:vit_s_16"] and calls == ["vit_s_16"]
    write_op_counts(tmp_path, entries)
    back = read_op_counts(tmp_path)["reference:vit_s_16"]
    assert back.counts.macs == entries["reference:vit_s_16"].counts.macs
    assert back.info["architecture"].startswith("ViT-S/16: patch 16, depth 12, 6 heads, width 384, MLP 1536")
    assert back.info["size_note"] == ""   # 64x48 is already a multiple of 16
