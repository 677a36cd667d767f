"""The pixel-input SDT: shapes, direct encoding, and the spiking stem against a plain-torch reference."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from neuroposter.models import MODELS, build_model
from neuroposter.models.lif import LIF
from neuroposter.models.sdt import SpikeDrivenTransformer
from neuroposter.models.sdt_pixels import PixelSDT

S, T, C1, D, CLASSES = 16, 3, 8, 16, 5


def calibrate(model: torch.nn.Module, images: torch.Tensor, gain: float = 1.0) -> torch.nn.Module:
    """Sets every BatchNorm's running statistics to the statistics of one training-mode forward on ``images``
    (so that every layer is active in eval mode) and multiplies its gamma by ``gain``; returns the model in eval."""
    for m in model.modules():
        if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
            m.reset_running_stats()
            m.momentum = None                     # cumulative average: one forward gives the batch statistics
            with torch.no_grad():
                m.weight.mul_(gain)
    model.train()
    with torch.no_grad():
        model(images)
    return model.eval()


@pytest.fixture()
def model() -> PixelSDT:
    torch.manual_seed(0)
    m = PixelSDT(n_classes=CLASSES, image_size=S, T=T, c1=C1, d_model=D, depth=1, heads=2, mlp_hidden=32).double()
    return calibrate(m, torch.randn(16, 3, S, S, dtype=torch.float64), gain=2.0)


def test_registered_as_an_image_snn() -> None:
    spec = MODELS.get("sdt-pixels")
    assert (spec.kind, spec.inputs) == ("snn", "images")
    m = build_model("sdt-pixels", n_classes=3)
    assert isinstance(m, SpikeDrivenTransformer)              # the SDT's own embed, blocks and read-out
    assert (m.image_size, m.T, m.c1, m.cfg.d_model, m.cfg.n_tokens) == (32, 4, 16, 64, 64)


def test_shapes_and_direct_encoding(model: PixelSDT) -> None:
    x = torch.randn(4, 3, S, S, dtype=torch.float64)
    with torch.no_grad():
        logits = model(x)
        tokens = model.stem(x)
        repeated = model(x.unsqueeze(0).expand(T, *x.shape))   # the image as the current of every step
    assert logits.shape == (T, 4, CLASSES)
    assert tokens.shape == (T, 4, (S // 4) ** 2, D)
    assert torch.equal(logits, repeated)
    # pooled spikes of a 2x2 window: multiples of 1/4 in [0, 1]
    assert torch.equal(tokens * 4, torch.round(tokens * 4)) and tokens.min() >= 0 and tokens.max() <= 1


@pytest.mark.parametrize("shape", [(2, 3, S + 4, S + 4), (2, 1, S, S), (3, S, S)])
def test_wrong_input_shapes_are_refused(model: PixelSDT, shape: tuple[int, ...]) -> None:
    with pytest.raises(ValueError, match="expects images"):
        model(torch.zeros(shape, dtype=torch.float64))


def test_image_size_must_allow_two_poolings() -> None:
    with pytest.raises(ValueError, match="multiple of 4"):
        PixelSDT(n_classes=2, image_size=30)


def _reference_lif(current: torch.Tensor, tau: float, v_th: float) -> torch.Tensor:
    """Discrete LIF written from the equations: v <- v + (x - v)/tau, z = [v > v_th], hard reset to 0."""
    v = torch.zeros_like(current[0])
    out = []
    for x in current:
        v = v + (x - v) / tau
        z = (v > v_th).to(current.dtype)
        v = v * (1 - z)
        out.append(z)
    return torch.stack(out)


def _reference_bn(x: torch.Tensor, bn: torch.nn.BatchNorm2d) -> torch.Tensor:
    shape = (1, -1, 1, 1)
    mean, var = bn.running_mean.reshape(shape), bn.running_var.reshape(shape)
    return (x - mean) / torch.sqrt(var + bn.eps) * bn.weight.reshape(shape) + bn.bias.reshape(shape)


def _reference_pool(x: torch.Tensor) -> torch.Tensor:
    """Mean of non-overlapping 2x2 windows of ``[M, C, H, W]``."""
    m, c, h, w = x.shape
    return x.reshape(m, c, h // 2, 2, w // 2, 2).mean(dim=(3, 5))


def test_stem_matches_a_plain_torch_reference(model: PixelSDT) -> None:
    torch.manual_seed(1)
    x = torch.randn(6, 3, S, S, dtype=torch.float64)
    st = model.stem
    for m in model.modules():
        if isinstance(m, LIF):
            m.record_spikes = True
    with torch.no_grad():
        tokens = st(x)
        c1 = _reference_bn(F.conv2d(x, st.conv1.weight, padding=1), st.bn1)
        s1 = _reference_lif(c1.unsqueeze(0).repeat(T, 1, 1, 1, 1), 2.0, 1.0)            # [T, B, c1, S, S]
        p1 = _reference_pool(s1.flatten(0, 1))
        c2 = _reference_bn(F.conv2d(p1, st.conv2.weight, padding=1), st.bn2)
        s2 = _reference_lif(c2.reshape(T, 6, D, S // 2, S // 2), 2.0, 1.0)
        p2 = _reference_pool(s2.flatten(0, 1)).reshape(T, 6, D, -1).permute(0, 1, 3, 2)  # [T, B, N, d]
    for spikes in (s1, s2):          # a test that can fail: both layers fire, neither saturates
        assert 0.01 < float(spikes.mean()) < 0.9
    assert torch.equal(st.sn1.last_spikes, s1)
    assert torch.equal(st.sn2.last_spikes, s2)
    assert torch.equal(tokens, p2)


def test_gradients_reach_the_first_convolution() -> None:
    torch.manual_seed(0)
    m = PixelSDT(n_classes=3, image_size=S, T=2, c1=4, d_model=8, depth=1, heads=2, mlp_hidden=8).double().train()
    m(torch.randn(4, 3, S, S, dtype=torch.float64)).mean().backward()
    assert m.stem.conv1.weight.grad is not None and float(m.stem.conv1.weight.grad.abs().sum()) > 0


@pytest.mark.parametrize("argv, message", [
    (["--model", "sdt-pixels", "--target", "spinnaker2"], "no quantisation-aware training of sdt-pixels for it"),
    (["--model", "sdt", "--T", "3"], "--T sets the time steps of sdt-pixels"),
])
def test_train_cli_refuses_flags_that_do_not_apply(tmp_path, capsys, argv: list[str], message: str) -> None:
    from neuroposter.cli import main

    assert main(["train", *argv, "-w", str(tmp_path / "ws")]) == 2
    assert message in capsys.readouterr().err


def test_inference_runs_the_sdt_part_in_the_event_driven_kernel(model: PixelSDT) -> None:
    """The stem (BatchNorm2d, pools) stays in torch; the SDT after it runs in the inference kernel and gives the
    torch path's logits and firing rates."""
    from neuroposter.models import sdt_inference
    from neuroposter.models.sparse import set_sparse_input

    x = torch.randn(5, 3, S, S, dtype=torch.float64, generator=torch.Generator().manual_seed(2))
    calls = []
    real = sdt_inference.sdt_inference
    sdt_inference.sdt_inference = lambda *a, **k: calls.append(1) or real(*a, **k)
    try:
        with torch.no_grad():
            assert sdt_inference.applies(model, model.stem(x))
            fast, fast_rates = model(x), model.firing_rates()
            set_sparse_input(model, "off")
            slow, slow_rates = model(x), model.firing_rates()
            set_sparse_input(model, "auto")
    finally:
        sdt_inference.sdt_inference = real
    assert calls == [1]
    torch.testing.assert_close(fast, slow, rtol=1e-12, atol=1e-12)
    assert fast_rates == slow_rates and 0 < min(slow_rates.values())
