"""Every registered model: builds, runs forward and backward, and has the documented shapes."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch

from neuroposter.models import MODELS, SpikingMLPNet, build_model, model_class

_TINY = {
    "sdt": (dict(d_in=32, n_tokens=5, d_model=16, depth=1, heads=2, mlp_hidden=16, n_classes=3),
            lambda g: (torch.rand(4, 2, 5, 32, generator=g) < 0.4).float(), (4, 2, 3)),
    "snn-mlp": (dict(d_in=32, hidden1=16, hidden2=8, n_classes=3),
                lambda g: (torch.rand(4, 2, 1, 32, generator=g) < 0.4).float(), (4, 2, 3)),
    "chip-snn": (dict(d_in=32, n_classes=3, host_dim=8, widths=[6, 5], neuron="if", neuron_params={"v_th": 1.0}),
                 lambda g: (torch.rand(4, 2, 1, 32, generator=g) < 0.4).float(), (4, 2, 3)),
    "ann-transformer": (dict(d_in=32, n_tokens=5, d_model=16, depth=1, heads=2, mlp_hidden=16, n_classes=3),
                        lambda g: torch.randn(2, 5, 32, generator=g), (2, 3)),
    "vit": (dict(n_classes=3, image_size=32, patch_size=16, num_layers=1, num_heads=2, hidden_dim=16, mlp_dim=16),
            lambda g: torch.randn(2, 3, 32, 32, generator=g), (2, 3)),
    "sdt-pixels": (dict(n_classes=3, image_size=16, T=2, c1=4, d_model=8, depth=1, heads=2, mlp_hidden=8),
                   lambda g: torch.randn(2, 3, 16, 16, generator=g), (2, 2, 3)),
    "chip-cnn": (dict(n_classes=3, image_size=16, T=2, convs=[[4, 3, 2], [6, 3, 2], [5, 1, 1]], host_layers=1,
                      neuron="if", neuron_params={"v_th": 0.5}),
                 lambda g: torch.randn(2, 3, 16, 16, generator=g), (2, 2, 3)),
    "sdt-frontend": (dict(n_classes=3, image_size=[16, 8], grid=[4, 2], T=2, widths=[4, 4], d_in=12, n_tokens=8,
                          d_model=8, depth=1, heads=2, mlp_hidden=8),
                     lambda g: torch.randn(2, 3, 16, 8, generator=g), (2, 2, 3)),
}


def _has_backbone() -> bool:
    try:
        from neuroposter.features import build_backbone  # noqa: F401
    except ImportError:
        return False
    return True


def test_registry_lists_the_contract_names() -> None:
    assert MODELS.names() == ["sdt", "snn-mlp", "chip-snn", "ann-transformer", "cnn", "vit",
                              "sdt-pixels", "chip-cnn", "sdt-frontend"]
    with pytest.raises(KeyError, match="available: sdt"):
        MODELS.get("resnet")


def test_registry_imports_without_torch() -> None:
    code = "import sys, neuroposter.models as m; m.MODELS.names(); print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


@pytest.mark.parametrize("name", [n for n in MODELS.names() if n != "cnn"])
def test_forward_backward(name: str, torch_gen: torch.Generator) -> None:
    kwargs, make_input, out_shape = _TINY[name]
    model = build_model(name, **kwargs).train()
    assert isinstance(model, model_class(name))
    y = model(make_input(torch_gen))
    assert tuple(y.shape) == out_shape
    y.float().pow(2).mean().backward()
    assert all(p.grad is not None for p in model.parameters() if p.requires_grad)
    if MODELS.get(name).kind == "snn":
        rates = model.firing_rates()
        assert rates and all(0.0 <= r <= 1.0 for r in rates.values())


def test_snn_mlp_layout_and_token_check() -> None:
    net = SpikingMLPNet(d_in=32, hidden1=16, hidden2=8, n_classes=3)
    assert [n for n, _ in net.named_children()] == ["fc1", "fc1_bn", "sn1", "fc2", "fc2_bn", "sn2", "head"]
    with pytest.raises(ValueError, match="pooled"):
        net(torch.zeros(4, 2, 5, 32))


@pytest.mark.skipif(not _has_backbone(), reason="neuroposter.features.build_backbone not available yet")
def test_cnn_head_on_pooled_features_is_the_image_model_head() -> None:
    model = build_model("cnn", n_classes=3, weights="random").eval()
    img = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        pooled = model.pooled_features(img)
        assert pooled.shape == (1, 1664)
        torch.testing.assert_close(model(img), model.head(pooled))


def test_model_families_come_from_the_registry() -> None:
    from neuroposter.models import FEATURE_INPUTS, MODELS, names

    assert names() == tuple(MODELS.names())
    assert names(kind="snn") == ("sdt", "snn-mlp", "chip-snn", "sdt-pixels", "chip-cnn", "sdt-frontend") and set(names(kind="ann")) == {"ann-transformer", "cnn", "vit"}
    assert set(names(inputs=FEATURE_INPUTS)) == {"sdt", "snn-mlp", "chip-snn", "ann-transformer"}
    assert names(kind="ann", inputs="images") == ("cnn", "vit")
    assert names(kind="snn", inputs="images") == ("sdt-pixels", "chip-cnn", "sdt-frontend")
    with pytest.raises((KeyError, ValueError)):
        names(kind="quantum")
