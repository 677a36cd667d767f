"""The DenseNet-169 backbone: weights ids, determinism, preprocessing, output grid."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
import torch
from PIL import Image

from neuroposter.errors import NeuroposterError
from neuroposter.features import (
    FEATURE_DIM,
    IMAGENET_MEAN,
    IMAGENET_STD,
    build_backbone,
    feature_grid,
    preprocess,
    resolve_weights,
)
from neuroposter.features import backbone as bb


@pytest.fixture(scope="module")
def random_backbone():
    torch.set_num_threads(1)
    return build_backbone("random")


def _digest(model) -> float:
    return float(sum(p.double().sum() for p in model.state_dict().values() if p.is_floating_point()))


@pytest.mark.parametrize("hw,grid", [((268, 182), (8, 5)), ((224, 224), (7, 7)), ((48, 64), (1, 2))])
def test_feature_grid_known_sizes(hw, grid):
    assert feature_grid(*hw) == grid


def test_feature_grid_rejects_tiny_images():
    with pytest.raises(ValueError, match="too small"):
        feature_grid(16, 16)


def test_backbone_output_matches_grid_and_is_nonnegative(random_backbone):
    assert not random_backbone.training
    with torch.inference_mode():
        out = random_backbone(torch.randn(1, 3, 268, 182))
    assert tuple(out.shape) == (1, FEATURE_DIM, 8, 5)
    assert float(out.min()) >= 0.0


def test_preprocess_is_imagenet_normalisation():
    img = Image.new("RGB", (5, 7), (255, 0, 128))
    x = preprocess(img)
    assert x.dtype == torch.float32 and tuple(x.shape) == (3, 7, 5)
    want = [(v / 255 - m) / s for v, m, s in zip((255, 0, 128), IMAGENET_MEAN, IMAGENET_STD)]
    np.testing.assert_allclose(x[:, 3, 2].numpy(), want, rtol=1e-5)
    assert tuple(preprocess(img.convert("L")).shape) == (3, 7, 5)  # grey -> RGB


def test_random_weights_are_deterministic(random_backbone):
    again = build_backbone("random")
    for (k, a), b in zip(random_backbone.state_dict().items(), again.state_dict().values()):
        assert torch.equal(a, b), k
    other = build_backbone("random:1")
    assert _digest(other) != _digest(random_backbone)
    assert resolve_weights("random").id == "random"
    assert resolve_weights("random:7").id == "random:7"


@pytest.mark.slow
def test_random_weights_identical_across_processes(random_backbone):
    code = ("import torch; torch.set_num_threads(1); from neuroposter.features import build_backbone; "
            "m = build_backbone('random'); "
            "print(repr(float(sum(p.double().sum() for p in m.state_dict().values() if p.is_floating_point()))))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120)
    assert float(out.stdout.strip()) == _digest(random_backbone)


def test_file_weights_roundtrip(tmp_path, random_backbone):
    path = tmp_path / "w.pt"
    # a full torchvision-style densenet169 state dict (features.* + classifier.*) is accepted
    sd = dict(random_backbone.state_dict())
    sd["classifier.weight"] = torch.zeros(1000, FEATURE_DIM)
    sd["classifier.bias"] = torch.zeros(1000)
    torch.save(sd, path)
    spec = resolve_weights(str(path))
    assert spec.id.startswith("file:") and len(spec.id) == len("file:") + 16
    assert resolve_weights(f"file:{path}").id == spec.id
    loaded = build_backbone(str(path))
    assert _digest(loaded) == _digest(random_backbone)
    # a `.features`-only dict with old-style keys also loads
    old = {k.replace("features.", "", 1).replace("norm1", "norm.1"): v for k, v in random_backbone.state_dict().items()}
    torch.save(old, tmp_path / "old.pt")
    assert _digest(build_backbone(str(tmp_path / "old.pt"))) == _digest(random_backbone)


def test_bad_weights_file_and_unknown_ids(tmp_path):
    bad = tmp_path / "bad.pt"
    torch.save({"conv.weight": torch.zeros(2)}, bad)
    with pytest.raises(NeuroposterError, match="not a DenseNet-169 state dict"):
        build_backbone(str(bad))
    with pytest.raises(NeuroposterError, match="not 'auto'"):
        resolve_weights("imagenett")
    with pytest.raises(NeuroposterError, match="pass the file's path"):
        resolve_weights("file:0123456789abcdef")


def test_imagenet_offline_is_a_clear_error_and_auto_falls_back(tmp_path, monkeypatch):
    monkeypatch.setenv("NEUROPOSTER_OFFLINE", "1")
    monkeypatch.setattr(bb, "imagenet_weights_path", lambda: tmp_path / "missing.pth")
    with pytest.raises(NeuroposterError, match="--weights PATH"):
        resolve_weights("imagenet")
    with pytest.warns(UserWarning, match="fell back to deterministic random weights"):
        spec = resolve_weights("auto")
    assert spec.id == "random" and "ImageNet weights unavailable" in spec.note


def test_auto_prefers_cached_imagenet(tmp_path, monkeypatch):
    cached = tmp_path / "densenet169-b2777c0a.pth"
    cached.write_bytes(b"x")
    monkeypatch.setattr(bb, "imagenet_weights_path", lambda: cached)
    assert resolve_weights("auto").id == "imagenet"


def test_imagenet_weights_load_from_the_torch_cache(tmp_path, monkeypatch, random_backbone):
    """A checkpoint in the hub cache (here: stand-in weights in torchvision's old key format) is used offline."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    monkeypatch.setenv("NEUROPOSTER_OFFLINE", "1")
    path = bb.imagenet_weights_path()
    assert path.parent == tmp_path / "hub" / "checkpoints"
    path.parent.mkdir(parents=True)
    sd = {k.replace("norm1", "norm.1").replace("conv2", "conv.2"): v for k, v in random_backbone.state_dict().items()
          if not k.endswith("num_batches_tracked")}
    sd["classifier.weight"] = torch.zeros(1000, FEATURE_DIM)
    sd["classifier.bias"] = torch.zeros(1000)
    torch.save(sd, path)
    assert resolve_weights("auto").id == "imagenet"
    assert _digest(build_backbone("imagenet")) == _digest(random_backbone)
