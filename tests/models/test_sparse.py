"""Spike-sparse synapses against the dense products: allclose in floating point (another summation order), exact on
integers, independent of the thread count; gradients against autograd through the dense ``F.linear``; models'
first layers give the same predictions/spikes sparse or dense; training is sparse by default (allclose gradients)
and bit-identical to the dense GEMM in the "inference" mode."""

from __future__ import annotations

import numba
import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from neuroposter.models import SDTConfig, SpikeDrivenTransformer
from neuroposter.models.snn_mlp import SpikingMLPConfig, SpikingMLPNet
from neuroposter.models.sparse import (
    estimate_density,
    set_sparse_input,
    sparse_linear,
    sparse_matmul_rows,
    spike_linear,
    use_sparse,
)

TOL = {torch.float32: dict(rtol=1e-6, atol=1e-5), torch.float64: dict(rtol=1e-12, atol=1e-12)}


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 2**31 - 1), M=st.integers(1, 70), K=st.integers(1, 90), O=st.integers(1, 40),
       density=st.sampled_from([0.0, 0.05, 0.3, 0.9, 1.0]), dtype=st.sampled_from([torch.float32, torch.float64]),
       in_dtype=st.sampled_from(["same", "uint8", "bool"]))
def test_sparse_product_is_allclose_to_the_dense_one(seed: int, M: int, K: int, O: int, density: float,
                                                    dtype: torch.dtype, in_dtype: str) -> None:
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(M, K, generator=g) < density
    w = torch.randn(O, K, generator=g, dtype=dtype)
    b = torch.randn(O, generator=g, dtype=dtype)
    xin = {"same": x.to(dtype), "uint8": x.to(torch.uint8), "bool": x}[in_dtype]
    ref = F.linear(x.to(dtype), w, b)          # MKL's GEMM: the dense reference
    y = sparse_linear(xin, w, b)
    assert y.dtype == dtype and y.shape == (M, O)
    torch.testing.assert_close(y, ref, **TOL[dtype])
    # independent of the input's dtype: the same sum, bit for bit
    assert torch.equal(y, sparse_linear(x.to(dtype), w, b))


def test_non_binary_inputs_are_weighted() -> None:
    g = torch.Generator().manual_seed(1)
    x = torch.randn(30, 50, generator=g, dtype=torch.float64) * (torch.rand(30, 50, generator=g) < 0.2)
    w = torch.randn(7, 50, generator=g, dtype=torch.float64)
    torch.testing.assert_close(sparse_linear(x, w), x @ w.t(), rtol=1e-12, atol=1e-12)


def test_integer_products_are_exact_and_thread_count_does_not_matter() -> None:
    g = torch.Generator().manual_seed(2)
    x = (torch.rand(300, 400, generator=g) < 0.3).to(torch.uint8)
    w = torch.randint(-255, 256, (400, 33), generator=g)
    exact = x.to(torch.int64) @ w                    # integer matmul: the exact reference
    for dtype in (torch.float32, torch.float64, torch.int64):
        assert torch.equal(sparse_matmul_rows(x, w.to(dtype)).to(torch.int64), exact)
    xf = (torch.rand(257, 333, generator=g) < 0.4).float()
    wf = torch.randn(333, 17, generator=g)
    outs = []
    for threads in (1, 2):
        before = torch.get_num_threads()
        torch.set_num_threads(threads)
        try:
            outs.append(sparse_matmul_rows(xf, wf))
            assert numba.get_num_threads() == min(threads, numba.config.NUMBA_NUM_THREADS)
        finally:
            torch.set_num_threads(before)
    assert torch.equal(outs[0], outs[1])


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_gradients_match_autograd_through_the_dense_linear(dtype: torch.dtype) -> None:
    g = torch.Generator().manual_seed(3)
    x = (torch.rand(4, 9, 37, generator=g) < 0.25).to(dtype)
    w0 = torch.randn(11, 37, generator=g, dtype=dtype)
    b0 = torch.randn(11, generator=g, dtype=dtype)
    go = torch.randn(4, 9, 11, generator=g, dtype=dtype)
    grads = []
    for fn in (sparse_linear, F.linear):
        w, b, xr = w0.clone().requires_grad_(), b0.clone().requires_grad_(), x.clone().requires_grad_()
        (fn(xr, w, b) * go).sum().backward()
        grads.append((w.grad, b.grad, xr.grad))
    for a, r in zip(*grads):
        torch.testing.assert_close(a, r, **TOL[dtype])


def test_density_estimate_and_the_choice() -> None:
    g = torch.Generator().manual_seed(4)
    x = (torch.rand(5000, 200, generator=g) < 0.1).float()
    assert abs(estimate_density(x) - 0.1) < 0.02
    w = torch.zeros(3, 200)
    assert use_sparse(x, w) and not use_sparse(torch.ones(10, 200), w)
    assert not use_sparse(x, w.double()) and not use_sparse(x.half(), w.half())


def test_spike_linear_modes() -> None:
    lin = torch.nn.Linear(40, 6)
    x = (torch.rand(2, 30, 40) < 0.1).float()
    with pytest.raises(ValueError, match="auto, inference, off"):
        spike_linear(lin, x, "fast")
    with pytest.raises(ValueError, match="auto, inference, off"):
        set_sparse_input(lin, "fast")
    dense = lin(x)
    assert torch.equal(spike_linear(lin, x, "inference"), dense)     # weights need a gradient: dense
    assert torch.equal(spike_linear(lin, x, "off"), dense)
    y = spike_linear(lin, x, "auto")
    assert y.requires_grad and not torch.equal(y, dense)  # the sparse sum: other round-off (with random weights)
    torch.testing.assert_close(y, dense, rtol=1e-6, atol=1e-5)
    assert torch.equal(spike_linear(lin, torch.ones(2, 30, 40), "auto"), lin(torch.ones(2, 30, 40)))   # too dense
    with torch.no_grad():
        for mode in ("auto", "inference"):
            torch.testing.assert_close(spike_linear(lin, x, mode), dense, rtol=1e-6, atol=1e-5)


@pytest.fixture
def sparse_calls(monkeypatch) -> list:
    import neuroposter.models.sparse as sp

    calls: list = []
    real = sp.sparse_linear

    def spy(*a, **k):  # noqa: ANN002, ANN003, ANN202
        calls.append(1)
        return real(*a, **k)

    monkeypatch.setattr(sp, "sparse_linear", spy)
    return calls


def test_a_replaced_or_hooked_forward_is_respected(sparse_calls: list) -> None:
    from types import MethodType

    lin = torch.nn.Linear(40, 6)
    x = (torch.rand(50, 40) < 0.1).float()
    with torch.no_grad():
        spike_linear(lin, x)
        assert len(sparse_calls) == 1
        lin.forward = MethodType(lambda self, inp: torch.zeros(inp.shape[0], 6), lin)   # as QAT's enable does
        assert torch.equal(spike_linear(lin, x), torch.zeros(50, 6))
        del lin.forward
        h = lin.register_forward_hook(lambda m, i, o: o * 0)
        assert torch.equal(spike_linear(lin, x), torch.zeros(50, 6))
        h.remove()
    assert len(sparse_calls) == 1


def _sdt(dtype: torch.dtype) -> SpikeDrivenTransformer:
    torch.manual_seed(0)
    cfg = SDTConfig(d_in=300, n_tokens=10, d_model=32, depth=2, heads=4, mlp_hidden=48, n_classes=6)
    model = SpikeDrivenTransformer(cfg).to(dtype)
    with torch.no_grad():                  # an active network: BN statistics that make every layer spike
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm1d):
                m.running_mean.uniform_(-0.2, 0.2)
                m.running_var.uniform_(0.2, 0.6)
                m.weight.uniform_(0.8, 2.0)
                m.bias.uniform_(0.3, 1.0)
    return model


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_sdt_inference_sparse_equals_dense_predictions_and_spikes(dtype: torch.dtype, sparse_calls: list) -> None:
    model = _sdt(dtype).eval()
    x = (torch.rand(4, 16, 10, 300, generator=torch.Generator().manual_seed(5)) < 0.2).to(dtype)
    out = {}
    for mode in ("off", "auto"):
        set_sparse_input(model, mode)
        for m in model.modules():
            if hasattr(m, "record_spikes"):
                m.record_spikes = True
        with torch.no_grad():
            logits = model(x)
        spikes = [m.last_spikes for m in model.modules() if hasattr(m, "record_spikes")]
        out[mode] = (logits, spikes)
    (ld, sd), (ls, ss) = out["off"], out["auto"]
    assert len(sparse_calls) == 1                # "auto" took the sparse path, "off" did not
    torch.testing.assert_close(ls, ld, **TOL[dtype])
    assert all(torch.equal(a, b) for a, b in zip(sd, ss))
    assert 0 < float(torch.stack([s.mean() for s in sd]).mean()) < 1
    assert torch.equal((ls.mean(0) > 0), (ld.mean(0) > 0))


def test_training_is_sparse_by_default_and_dense_in_the_inference_mode(sparse_calls: list) -> None:
    x = (torch.rand(4, 8, 10, 300, generator=torch.Generator().manual_seed(6)) < 0.2).double()
    y = (torch.rand(8, 6, generator=torch.Generator().manual_seed(7)) < 0.3).double()
    out = {}
    for mode in ("off", "inference", "auto"):
        model = _sdt(torch.float64).train()
        set_sparse_input(model, mode)
        logits = model(x)
        F.binary_cross_entropy_with_logits(logits.mean(0), y).backward()
        out[mode] = (logits.detach(), [p.grad for p in model.parameters() if p.grad is not None])
    assert len(sparse_calls) == 1                 # "auto" only
    assert torch.equal(out["inference"][0], out["off"][0])
    assert all(torch.equal(a, b) for a, b in zip(out["inference"][1], out["off"][1]))
    torch.testing.assert_close(out["auto"][0], out["off"][0], rtol=1e-12, atol=1e-12)
    assert len(out["auto"][1]) == len(out["off"][1])
    for a, b in zip(out["auto"][1], out["off"][1]):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("spike_dtype", [torch.bool, torch.uint8, torch.float32, torch.float64])
def test_weight_gradient_scatter_against_a_plain_sum(spike_dtype: torch.dtype) -> None:
    """Every ``dW[:, k]`` is the sum, in increasing sample order from zero, of the gradient rows where input ``k``
    is active: the float64 reference below, summed in that order by hand, equals the scatter bit for bit; the
    result does not depend on the thread count; ragged column blocks (K not a multiple of the block) included."""
    from neuroposter.models.sparse import _GRAD_COLUMNS, _weight_grad

    g = torch.Generator().manual_seed(11)
    M, K, O = 37, 2 * _GRAD_COLUMNS + 17, 5
    mask = torch.rand(M, K, generator=g) < 0.2
    mask[:, 3] = False                                       # a silent input: its gradient column is zero
    x = mask.to(spike_dtype)
    wdtype = torch.float32 if spike_dtype == torch.float32 else torch.float64
    go = torch.randn(M, O, generator=g, dtype=wdtype)
    ref = torch.zeros(K, O, dtype=wdtype)
    for m in range(M):
        for k in torch.nonzero(mask[m]).flatten().tolist():
            ref[k] += go[m]
    before = torch.get_num_threads()
    outs = []
    try:
        for threads in (1, 2):
            torch.set_num_threads(threads)
            outs.append(_weight_grad(x, go))
    finally:
        torch.set_num_threads(before)
    assert outs[0].shape == (O, K)
    assert torch.equal(outs[0], ref.t()) and torch.equal(outs[1], outs[0])
    assert not outs[0][:, 3].any()
    torch.testing.assert_close(outs[0], go.t() @ mask.to(wdtype), **TOL[wdtype])


def test_spiking_mlp_spike_layers_sparse_in_inference(sparse_calls: list) -> None:
    """fc1 (input spikes) and fc2 (hidden spikes) sum sparsely where their input is sparse enough."""
    from neuroposter.models.sparse import SPARSE_MAX_DENSITY

    torch.manual_seed(0)
    model = SpikingMLPNet(SpikingMLPConfig(d_in=200, hidden1=32, hidden2=16, n_classes=4)).double().eval()
    with torch.no_grad():
        model.fc1_bn.bias.fill_(1.0)             # hidden spikes ~9 % dense (the demo's run at a few per cent)
    assert set_sparse_input(model, "off") == 1
    x = (torch.rand(4, 9, 1, 200, generator=torch.Generator().manual_seed(8)) < 0.15).double()
    with torch.no_grad():
        dense = model(x)
        set_sparse_input(model, "auto")
        sparse = model(x)
    hidden = model.sn1.firing_rate
    assert 0 < hidden <= SPARSE_MAX_DENSITY[torch.float64]
    assert len(sparse_calls) == 2                # T * B = 36 rows: the density estimate sees every row
    torch.testing.assert_close(sparse, dense, rtol=1e-12, atol=1e-12)
    with torch.no_grad():
        model.fc1_bn.bias.fill_(3.0)             # hidden spikes too dense: fc2 stays a GEMM
        model(x)
    assert model.sn1.firing_rate > SPARSE_MAX_DENSITY[torch.float64] and len(sparse_calls) == 3
