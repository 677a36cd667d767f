"""The fused LIF backend against the Norse path (Norse's ``LIFBoxCell`` per step, autograd through it) as the
independent reference: bit-identical spikes, equal input gradients, and a whole SDT that computes the same
outputs and parameter gradients with either backend."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from norse.torch.functional.lif_box import LIFBoxFeedForwardState

from neuroposter.models import SDTConfig, SpikeDrivenTransformer
from neuroposter.models.chip_neurons import ChipLIF
from neuroposter.models.lif import LIF, set_lif_backend

DTYPES = (torch.float32, torch.float64)
HALF_DTYPES = (torch.float16, torch.bfloat16)   # 0-dim float32 constants round differently by operand order here


def _norse_membranes(lif: LIF, x: torch.Tensor) -> torch.Tensor:
    """Norse's integrated membranes ``v~_t`` (before the threshold), to count exact threshold hits."""
    p = lif.cell.p
    v, out = LIFBoxFeedForwardState(v=torch.zeros_like(x[0])), []
    with torch.no_grad():
        for x_t in x:
            out.append(v.v + lif.cell.dt * p.tau_mem_inv * (x_t - v.v))
            _, v = lif.cell(x_t, v)
    return torch.stack(out)


def _run(backend: str, x: torch.Tensor, g: torch.Tensor, tau: float, v_th: float,
         surrogate: str = "super") -> tuple[torch.Tensor, torch.Tensor, LIF]:
    lif = LIF(tau, v_th, surrogate=surrogate, backend=backend)
    xr = x.clone().requires_grad_(True)
    z = lif(xr)
    (z * g).sum().backward()
    return z.detach(), xr.grad, lif


def _assert_grads_equal(a: torch.Tensor, b: torch.Tensor) -> None:
    if a.dtype == torch.float64:
        torch.testing.assert_close(a, b, rtol=0, atol=1e-12)
    # measured: bit-identical in both dtypes (the fused backward performs autograd's operations in its order)
    assert torch.equal(a, b)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("tau", [1.0, 2.0, 4.0])
@pytest.mark.parametrize("v_th", [1.0, 0.5, 0.25, 0.3])
def test_fused_matches_norse_on_dyadic_inputs_that_land_on_threshold(dtype: torch.dtype, tau: float,
                                                                      v_th: float) -> None:
    gen = torch.Generator().manual_seed(int(tau * 100 + v_th * 1000))
    x = (torch.randint(-8, 8 * int(tau) + 9, (6, 3, 5, 8), generator=gen) / 8).to(dtype)  # [T, B, N, D], eighths
    g = torch.randn(x.shape, generator=gen, dtype=dtype)
    zf, gf, _ = _run("fused", x, g, tau, v_th)
    zn, gn, lif = _run("norse", x, g, tau, v_th)
    assert torch.equal(zf, zn)
    _assert_grads_equal(gf, gn)
    assert 0 < zn.mean() < 1
    if v_th in (1.0, 0.5, 0.25):   # dyadic threshold: membranes hit it exactly, and must not fire there
        vd = _norse_membranes(lif, x)
        hits = vd == lif.cell.p.v_th.to(dtype)
        assert hits.any()
        assert not zf[hits].any()


@pytest.mark.parametrize("dtype", DTYPES + HALF_DTYPES)
@pytest.mark.parametrize("tau", [1.0, 2.0, 3.0, 4.0])
def test_fused_matches_norse_on_gaussian_inputs(dtype: torch.dtype, tau: float) -> None:
    gen = torch.Generator().manual_seed(7)
    x = (torch.randn(4, 2, 10, 16, generator=gen, dtype=torch.float64) * 1.5).to(dtype)
    g = torch.randn(x.shape, generator=gen, dtype=torch.float64).to(dtype)
    zf, gf, _ = _run("fused", x, g, tau, 0.7)
    zn, gn, _ = _run("norse", x, g, tau, 0.7)
    assert torch.equal(zf, zn)
    _assert_grads_equal(gf, gn)


@settings(max_examples=40, deadline=None)
@given(T=st.integers(1, 6), shape=st.lists(st.integers(1, 4), min_size=1, max_size=3),
       tau=st.sampled_from([1.0, 2.0, 4.0]), v_th=st.floats(-0.5, 2.0, width=32),
       f64=st.booleans(), scale=st.sampled_from([0.5, 2.0]), seed=st.integers(0, 2**16))
def test_fused_matches_norse_property(T: int, shape: list[int], tau: float, v_th: float, f64: bool,
                                      scale: float, seed: int) -> None:
    torch.set_num_threads(1)
    dtype = torch.float64 if f64 else torch.float32
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(T, *shape, generator=gen, dtype=dtype) * scale
    g = torch.randn(x.shape, generator=gen, dtype=dtype)
    zf, gf, _ = _run("fused", x, g, tau, v_th)
    zn, gn, _ = _run("norse", x, g, tau, v_th)
    assert torch.equal(zf, zn)
    _assert_grads_equal(gf, gn)


def test_fused_is_one_autograd_node_and_the_default() -> None:
    x = torch.randn(4, 3, 5, requires_grad=True)
    z = LIF(2.0, 1.0)(x)
    assert type(z.grad_fn).__name__ == "FusedLIFFunctionBackward"
    assert z.grad_fn.next_functions[0][0].variable is x      # straight to the input: no per-step graph
    zn = LIF(2.0, 1.0, backend="norse")(x)
    assert type(zn.grad_fn).__name__ != "FusedLIFFunctionBackward"


def test_no_grad_and_bookkeeping_match_the_norse_path() -> None:
    x = torch.randn(5, 2, 7, generator=torch.Generator().manual_seed(3)) * 2
    lf, ln = LIF(2.0, 0.8), LIF(2.0, 0.8, backend="norse")
    lf.record_spikes = ln.record_spikes = True
    with torch.no_grad():
        zf, zn = lf(x), ln(x)
    assert torch.equal(zf, zn) and zf.grad_fn is None
    assert torch.equal(lf.last_spikes, ln.last_spikes)
    assert lf.firing_rate == ln.firing_rate and lf.spike_count == ln.spike_count
    assert 0 < lf.firing_rate < 1
    assert torch.equal(lf(x.requires_grad_(False)), zn)          # grad enabled, input without grad


def test_other_surrogates_fall_back_to_norse() -> None:
    gen = torch.Generator().manual_seed(5)
    x, g = torch.randn(4, 3, 6, generator=gen), torch.randn(4, 3, 6, generator=gen)
    zf, gf, _ = _run("fused", x, g, 2.0, 0.5, surrogate="triangle")
    zn, gn, _ = _run("norse", x, g, 2.0, 0.5, surrogate="triangle")
    assert torch.equal(zf, zn) and torch.equal(gf, gn)
    _, gs, _ = _run("norse", x, g, 2.0, 0.5)       # the triangle gradient is really another one
    assert not torch.equal(gs, gn)


def test_unknown_backend_lists_the_valid_ones() -> None:
    with pytest.raises(ValueError, match="fused, norse"):
        LIF(backend="cuda")
    with pytest.raises(ValueError, match="fused, norse"):
        set_lif_backend(LIF(), "jit")


def test_chip_lif_runs_fused_and_equals_norse() -> None:
    gen = torch.Generator().manual_seed(11)
    x, g = torch.randn(5, 2, 9, generator=gen) * 2, torch.randn(5, 2, 9, generator=gen)
    out = {}
    for backend in ("fused", "norse"):
        n = ChipLIF(4.0, 0.6)
        assert set_lif_backend(n, backend) == 1
        xr = x.clone().requires_grad_(True)
        z = n(xr)
        (z * g).sum().backward()
        out[backend] = (z.detach(), xr.grad)
    assert torch.equal(out["fused"][0], out["norse"][0]) and torch.equal(out["fused"][1], out["norse"][1])


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("reference", ["norse", "fused-torch"])   # Norse's cell; the fused torch form (the kernels')
def test_sdt_outputs_and_parameter_gradients_equal_with_either_backend(dtype: torch.dtype, reference: str) -> None:
    cfg = SDTConfig(d_in=48, n_tokens=6, d_model=16, depth=2, heads=4, mlp_hidden=24, n_classes=5)
    gen = torch.Generator().manual_seed(0)
    x = (torch.rand(4, 8, 6, 48, generator=gen) < 0.3).to(dtype)
    y = (torch.rand(8, 5, generator=gen) < 0.3).to(dtype)
    res = {}
    for backend in ("fused", reference):
        torch.manual_seed(0)
        model = SpikeDrivenTransformer(cfg).to(dtype).train()
        assert set_lif_backend(model, backend) == 2 * 7 + 1   # 5 SDSA + 2 MLP neurons per block, the head
        logits = model(x)
        torch.nn.functional.binary_cross_entropy_with_logits(logits.mean(0), y).backward()
        res[backend] = (logits.detach(), {n: p.grad for n, p in model.named_parameters() if p.grad is not None})
    (lf, gf), (ln, gn) = res["fused"], res[reference]
    assert torch.equal(lf, ln)
    assert gf.keys() == gn.keys() and len(gf) > 10
    for name in gf:
        _assert_grads_equal(gf[name], gn[name])
    assert any(float(g.abs().max()) > 0 for name, g in gf.items() if name.startswith("embed"))


def test_broadcast_and_partial_gradients_match() -> None:
    """A ``sum()`` loss hands the backward an expanded gradient; a loss on the last step only leaves the others
    zero (the gradient then reaches earlier inputs only through the membrane and its reset)."""
    x = torch.randn(5, 3, 4, generator=torch.Generator().manual_seed(2), dtype=torch.float64) * 2
    for loss in (lambda z: z.sum(), lambda z: z[-1].sum()):
        grads = []
        for backend in ("fused", "norse"):
            xr = x.clone().requires_grad_(True)
            loss(LIF(2.0, 0.9, backend=backend)(xr)).backward()
            grads.append(xr.grad)
        assert torch.equal(grads[0], grads[1])
        assert grads[0][0].abs().sum() > 0


@pytest.mark.parametrize("backend", ["fused", "norse"])
def test_one_step_gradient_is_superspike_without_alpha(backend: str) -> None:
    """Closed form for ``T = 1``: ``v~ = x / tau``, ``dz/dx = (1/tau) / (|v~ - v_th| + 1)^2`` -- Norse 1.1.0's
    SuperSpike does not use ``alpha`` (100 by default: with it the gradient would be ~100x smaller)."""
    x = torch.linspace(-3, 5, 41, dtype=torch.float64).reshape(1, 41)
    xr = x.clone().requires_grad_(True)
    z = LIF(4.0, 0.5, backend=backend)(xr)
    z.sum().backward()
    vd = x / 4.0
    assert torch.equal(z, (vd > 0.5).double())
    torch.testing.assert_close(xr.grad, 0.25 / ((vd - 0.5).abs() + 1.0) ** 2, rtol=1e-15, atol=0)
