"""The SDT's spiking front end (sdt-frontend): its forward against a plain-torch reference, the token grid order,
the head being exactly the seed's SDT, and the head staying frozen (weights and BatchNorm statistics) in training."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from neuroposter.models.sdt import SpikeDrivenTransformer
from neuroposter.models.sdt_frontend import FrontendSDT
from neuroposter.train.data import SplitData, TaskData
from neuroposter.testing.active_init import calibrate_batchnorms
from neuroposter.train.loop import TrainConfig, fit

T, B, CLASSES = 3, 5, 4
GRID = (4, 2)                 # token grid (gh, gw); two poolings -> a 16 x 8 image
HW = (16, 8)
WIDTHS = (4, 6)
D_IN = 12


def _calibrated(model: FrontendSDT, seed: int = 0) -> FrontendSDT:
    """Every BatchNorm with the statistics of one random batch so all layers fire; eval mode."""
    torch.manual_seed(seed)
    return calibrate_batchnorms(model, lambda: torch.randn(32, 3, *HW, dtype=torch.float64))


@pytest.fixture(scope="module")
def model() -> FrontendSDT:
    torch.manual_seed(3)
    m = FrontendSDT(n_classes=CLASSES, image_size=HW, grid=GRID, T=T, widths=WIDTHS, d_in=D_IN,
                    n_tokens=GRID[0] * GRID[1], d_model=8, depth=1, heads=2, mlp_hidden=16).double()
    return _calibrated(m)


@pytest.fixture(scope="module")
def images() -> torch.Tensor:
    torch.manual_seed(11)
    return torch.randn(B, 3, *HW, dtype=torch.float64)


def _lif(currents: list[torch.Tensor], tau: float = 2.0, v_th: float = 1.0) -> list[torch.Tensor]:
    """The project's LIF written out: v += (x - v) / tau; z = v > v_th (strict); hard reset to 0."""
    v = torch.zeros_like(currents[0])
    out = []
    for x in currents:
        v = v + (x - v) / tau
        z = (v > v_th).to(x.dtype)
        v = v * (1 - z)
        out.append(z)
    return out


def _bn(x: torch.Tensor, bn: torch.nn.modules.batchnorm._BatchNorm, channel_dim: int) -> torch.Tensor:
    shape = [1] * x.dim()
    shape[channel_dim] = -1
    mean, var = bn.running_mean.view(shape), bn.running_var.view(shape)
    return (x - mean) / torch.sqrt(var + bn.eps) * bn.weight.view(shape) + bn.bias.view(shape)


def _reference_frontend(model: FrontendSDT, images: torch.Tensor) -> torch.Tensor:
    """Conv -> BN -> LIF per step -> 2x2 average pool, per stage; then per token: Linear -> BN -> LIF. Tokens are
    the final map's cells, ``n = i * gw + j``. Returns ``[T, B, N, D]``."""
    st = model.stem
    with torch.no_grad():
        steps = [images] * T                                          # direct encoding: the same current each step
        for i in range(1, len(WIDTHS) + 1):
            conv, bn = getattr(st, f"conv{i}"), getattr(st, f"bn{i}")
            cur = [_bn(F.conv2d(x, conv.weight, None, 1, 1), bn, 1) for x in steps]
            steps = [F.avg_pool2d(z, 2) for z in _lif(cur)]
        gh, gw = GRID
        tokens = []
        for p in steps:                                              # [B, C, gh, gw] -> [B, N, C]
            tok = torch.empty(p.shape[0], gh * gw, p.shape[1], dtype=p.dtype)
            for i in range(gh):
                for j in range(gw):
                    tok[:, i * gw + j] = p[:, :, i, j]
            tokens.append(tok)
        cur = [_bn(tok @ st.proj.weight.T, st.proj_bn, -1) for tok in tokens]
        return torch.stack(_lif(cur))


def test_frontend_equals_a_plain_torch_reference(model, images) -> None:
    with torch.no_grad():
        got = model.frontend(images)
    ref = _reference_frontend(model, images)
    assert got.shape == (T, B, GRID[0] * GRID[1], D_IN)
    assert set(torch.unique(got).tolist()) <= {0.0, 1.0}               # binary spikes, like the encoder's
    assert 0.02 < float(ref.mean()) < 0.9                              # a comparison between firing layers
    assert torch.equal(got, ref)


def test_token_order_is_row_major_on_the_grid(model) -> None:
    """A stimulus confined to one cell's receptive field moves that cell's token only (plus its 3x3 neighbours):
    the token that changes most is n = i * gw + j of the cell that was stimulated."""
    torch.manual_seed(0)
    base = torch.randn(1, 3, *HW, dtype=torch.float64)
    k = 2 ** len(WIDTHS)
    for (i, j) in [(0, 0), (0, 1), (2, 1), (3, 0)]:
        x = base.clone()
        x[..., i * k:(i + 1) * k, j * k:(j + 1) * k] += 25.0
        with torch.no_grad():
            a, b = model.frontend(base), model.frontend(x)
        delta = (a - b).abs().sum(dim=(0, 1, 3))                      # per token
        assert int(delta.argmax()) == i * GRID[1] + j


def test_the_head_is_the_seeds_sdt_unchanged(model, images) -> None:
    sdt = SpikeDrivenTransformer(model.cfg).double()
    state = {k: v for k, v in model.state_dict().items() if not k.startswith("stem.")}
    sdt.load_state_dict(state)
    sdt.eval()
    with torch.no_grad():
        assert torch.equal(model(images), sdt(model.frontend(images)))


def test_load_head_refuses_a_checkpoint_that_does_not_fit(model) -> None:
    other = FrontendSDT(n_classes=CLASSES, image_size=HW, grid=GRID, T=T, widths=WIDTHS, d_in=D_IN,
                        n_tokens=8, d_model=8, depth=1, heads=2, mlp_hidden=16)
    sdt = SpikeDrivenTransformer(d_in=D_IN, n_tokens=8, d_model=8, depth=2, heads=2, mlp_hidden=16,
                                 n_classes=CLASSES)
    with pytest.raises(ValueError, match="missing|unexpected"):
        other.load_head(sdt.state_dict())
    wide = SpikeDrivenTransformer(d_in=D_IN, n_tokens=8, d_model=8, depth=1, heads=2, mlp_hidden=32,
                                  n_classes=CLASSES)
    with pytest.raises(ValueError, match="shapes differ"):
        other.load_head(wide.state_dict())


def test_an_image_that_misses_the_grid_is_refused_with_the_right_size() -> None:
    with pytest.raises(ValueError, match="use image size 32x20"):
        FrontendSDT(image_size=(32, 32), grid=(8, 5), widths=(4, 4))


def _task(n: int = 24, seed: int = 0) -> TaskData:
    g = torch.Generator().manual_seed(seed)
    N = GRID[0] * GRID[1]

    def split(m: int) -> SplitData:
        x = torch.randn(m, 3, *HW, generator=g)
        y = (torch.rand(m, CLASSES, generator=g) < 0.4).float()
        y[0] = 1.0
        aux = (torch.rand(m, T, N, D_IN, generator=g) < 0.3).to(torch.uint8)
        return SplitData(x, y, aux=aux)

    return TaskData(split(n), split(8), split(8), [f"g{i}" for i in range(CLASSES)], "images")


def test_training_moves_the_front_end_only_and_uses_the_distillation_term() -> None:
    torch.manual_seed(5)
    sdt = SpikeDrivenTransformer(d_in=D_IN, n_tokens=8, d_model=8, depth=1, heads=2, mlp_hidden=16,
                                 n_classes=CLASSES)
    with torch.no_grad():           # a head with non-trivial BatchNorm statistics to keep
        for bn in sdt.modules():
            if isinstance(bn, torch.nn.modules.batchnorm._BatchNorm):
                bn.running_mean.uniform_(-0.5, 0.5)
                bn.running_var.uniform_(0.5, 2.0)
    head = {k: v.clone() for k, v in sdt.state_dict().items()}
    cfg = TrainConfig(epochs=2, batch_size=8, lr=1e-2, warmup=0, patience=5, precision="float64")
    stems = {}
    for w in (0.0, 50.0):
        torch.manual_seed(0)
        m = FrontendSDT(n_classes=CLASSES, image_size=HW, grid=GRID, T=T, widths=WIDTHS, d_in=D_IN, n_tokens=8,
                        d_model=8, depth=1, heads=2, mlp_hidden=16, distill_weight=w)
        m.load_head(head)
        before = {k: v.clone() for k, v in m.state_dict().items() if k.startswith("stem.")}
        fit(m, _task(), cfg)
        after = m.float().state_dict()
        for k, v in head.items():                                   # weights and running statistics untouched
            assert torch.equal(after[k], v.to(after[k].dtype)), k
        assert not all(torch.equal(after[k], v.float()) for k, v in before.items() if v.is_floating_point())
        assert all(not p.requires_grad for n, p in m.named_parameters() if not n.startswith("stem."))
        stems[w] = {k: v.clone() for k, v in after.items() if k.startswith("stem.")}
    # the distillation weight changes what the front end learns (the loop adds the model's auxiliary loss)
    assert not all(torch.equal(stems[0.0][k], stems[50.0][k]) for k in stems[0.0])


def test_distillation_loss_is_the_weighted_mse_to_time_first_targets(model, images) -> None:
    m = FrontendSDT(n_classes=CLASSES, image_size=HW, grid=GRID, T=T, widths=WIDTHS, d_in=D_IN, n_tokens=8,
                    d_model=8, depth=1, heads=2, mlp_hidden=16, distill_weight=0.5).double()
    m.load_state_dict(model.state_dict())
    m.train()
    m(images)
    spikes = m._fe_spikes.detach().clone()
    target = (torch.rand(B, T, 8, D_IN) < 0.3).to(torch.uint8)          # stored batch-first
    loss = m.auxiliary_loss(target)
    expected = 0.5 * np.mean((spikes.numpy() - np.transpose(target.numpy(), (1, 0, 2, 3))) ** 2)
    assert float(loss) == pytest.approx(expected, rel=1e-12)
    with pytest.raises(RuntimeError, match="forward in training mode"):
        m.auxiliary_loss(target)


def test_inference_runs_the_head_in_the_event_driven_kernel(model, images) -> None:
    """The front end stays in torch; the frozen SDT head runs in the inference kernel with the torch path's logits."""
    from neuroposter.models import sdt_inference
    from neuroposter.models.sparse import set_sparse_input

    with torch.no_grad():
        assert sdt_inference.applies(model, model.frontend(images))
        fast = model(images)
        set_sparse_input(model, "off")
        slow = model(images)
        set_sparse_input(model, "auto")
    torch.testing.assert_close(fast, slow, rtol=1e-12, atol=1e-12)
