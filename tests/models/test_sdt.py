"""The SDT against a plain-torch reference written from the equations (DESIGN.md section 4).

The reference below uses no Norse and nothing from ``neuroposter.models`` except the weights it
reads. Weights and BatchNorm statistics are set to dyadic rationals (and BN ``eps = 0`` with
power-of-4 variances) so every sum and product is exact in float32: the two implementations must
then agree bit for bit, whatever order their kernels add in, and ties ``v == v_th`` really occur,
which exercises the strict threshold.
"""

from __future__ import annotations

import torch
from torch import Tensor

import pytest

from neuroposter.models import LIF, SDTConfig, SpikeDrivenTransformer, sdt_inference
from neuroposter.models.lif import set_lif_backend
from neuroposter.models.sparse import set_sparse_input

# ---------------------------------------------------------------------------- reference (equations)


def ref_sn(x: Tensor, tau: float, v_th: float) -> Tensor:
    """v <- v + (x - v) / tau; z = [v > v_th]; v <- 0 where z. x: [T, ...]."""
    v = torch.zeros_like(x[0])
    out = []
    for t in range(x.shape[0]):
        v = v + (x[t] - v) / tau
        z = v > v_th
        v = torch.where(z, torch.zeros_like(v), v)
        out.append(z.to(x.dtype))
    return torch.stack(out)


def ref_linear(x: Tensor, lin: torch.nn.Linear) -> Tensor:
    y = x @ lin.weight.T
    return y if lin.bias is None else y + lin.bias


def ref_bn(x: Tensor, bn: torch.nn.BatchNorm1d) -> Tensor:
    return (x - bn.running_mean) / torch.sqrt(bn.running_var + bn.eps) * bn.weight + bn.bias


def ref_sdt(model: SpikeDrivenTransformer, s_in: Tensor) -> tuple[Tensor, dict[str, Tensor]]:
    """Whole SDT forward from the equations; returns logits [T, B, C] and every spike tensor."""
    cfg = model.cfg
    tau, vth = cfg.tau, cfg.v_th
    rec: dict[str, Tensor] = {}
    T, B, N, _ = s_in.shape
    h, dh = cfg.heads, cfg.d_model // cfg.heads
    u = ref_bn(ref_linear(s_in, model.embed), model.embed_bn) + model.pos_bias
    for i, blk in enumerate(model.blocks):
        a, m = blk.attn, blk.mlp
        s = rec[f"blocks.{i}.attn.sn_in"] = ref_sn(u, tau, vth)
        q = rec[f"blocks.{i}.attn.q_sn"] = ref_sn(ref_bn(ref_linear(s, a.q), a.q_bn), tau, vth)
        k = rec[f"blocks.{i}.attn.k_sn"] = ref_sn(ref_bn(ref_linear(s, a.k), a.k_bn), tau, vth)
        v = rec[f"blocks.{i}.attn.v_sn"] = ref_sn(ref_bn(ref_linear(s, a.v), a.v_bn), tau, vth)
        # multi-head as in the official code: [T, B, N, h, d/h], sum over tokens per head channel
        kh, vh = k.reshape(T, B, N, h, dh), v.reshape(T, B, N, h, dh)
        count = (kh * vh).sum(dim=2, keepdim=True)                       # [T, B, 1, h, d/h]
        kv = ref_sn(count, tau, cfg.kv_v_th)
        rec[f"blocks.{i}.attn.kv_sn"] = kv.reshape(T, B, 1, cfg.d_model)
        x = (q.reshape(T, B, N, h, dh) * kv).reshape(T, B, N, cfg.d_model)
        u = u + ref_bn(ref_linear(x, a.proj), a.proj_bn)
        s = rec[f"blocks.{i}.mlp.sn_in"] = ref_sn(u, tau, vth)
        hid = rec[f"blocks.{i}.mlp.sn_hidden"] = ref_sn(ref_bn(ref_linear(s, m.fc1), m.fc1_bn), tau, vth)
        u = u + ref_bn(ref_linear(hid, m.fc2), m.fc2_bn)
    s = rec["head_sn"] = ref_sn(u, tau, vth)
    return ref_linear(s.mean(dim=2), model.head), rec


# ---------------------------------------------------------------------------- helpers


def _dyadic_(model: torch.nn.Module, gen: torch.Generator) -> None:
    """Sets every weight to a multiple of 1/256 and BN to exact, nontrivial statistics."""
    with torch.no_grad():
        for name, p in model.named_parameters():
            scale = 0.5 if p.dim() == 1 else 2.0 / max(p.shape[-1], 1) ** 0.5
            p.copy_(torch.round((torch.rand(p.shape, generator=gen) * 2 - 1) * scale * 256) / 256)
        for mod in model.modules():
            if isinstance(mod, torch.nn.BatchNorm1d):
                mod.eps = 0.0
                c = mod.num_features
                mod.running_mean.copy_(torch.round(torch.randn(c, generator=gen) * 0.5 * 64) / 64)
                mod.running_var.copy_(4.0 ** torch.randint(-1, 2, (c,), generator=gen).float())
                mod.weight.copy_(torch.round((1.0 + torch.rand(c, generator=gen) * 2) * 16) / 16)


def _tiny_cfg(**kw: float | int) -> SDTConfig:
    base = dict(d_in=48, n_tokens=6, d_model=16, depth=2, heads=4, mlp_hidden=24, n_classes=5)
    base.update(kw)
    return SDTConfig(**base)  # type: ignore[arg-type]


# ---------------------------------------------------------------------------- tests


def test_sdt_matches_equation_reference_bit_for_bit(torch_gen: torch.Generator) -> None:
    model = SpikeDrivenTransformer(_tiny_cfg())
    _dyadic_(model, torch_gen)
    model.eval()
    for m in model.modules():
        if isinstance(m, LIF):
            m.record_spikes = True
    x = (torch.rand(4, 3, 6, 48, generator=torch_gen) < 0.3).float()   # [T, B, N, D_in]
    with torch.no_grad():
        logits = model(x)
        ref_logits, ref_rec = ref_sdt(model, x)
    got = {name: m.last_spikes for name, m in model.named_modules() if isinstance(m, LIF)}
    assert set(got) == set(ref_rec)
    n_spikes = 0
    for name, ref in ref_rec.items():
        assert torch.equal(got[name], ref), f"{name}: {int((got[name] != ref).sum())} spikes differ"
        n_spikes += int(ref.sum())
    assert n_spikes > 0
    # the comparison is not vacuous: every layer is active somewhere and not saturated
    for name, ref in ref_rec.items():
        assert 0.0 < float(ref.mean()) < 1.0, f"{name} rate {float(ref.mean())}"
    torch.testing.assert_close(logits, ref_logits, rtol=0, atol=1e-6)
    rates = model.firing_rates()
    assert set(rates) == set(ref_rec)
    for name, ref in ref_rec.items():
        assert rates[name] == float(ref.sum()) / ref.numel()


def test_heads_do_not_change_the_arithmetic(torch_gen: torch.Generator) -> None:
    x = (torch.rand(4, 2, 6, 48, generator=torch_gen) < 0.3).float()
    outs = []
    for heads in (1, 4):
        torch.manual_seed(1)
        model = SpikeDrivenTransformer(_tiny_cfg(heads=heads)).eval()
        _dyadic_(model, torch.Generator().manual_seed(3))
        with torch.no_grad():
            outs.append(model(x))
    assert torch.equal(outs[0], outs[1])


def test_kv_neuron_is_a_per_channel_or(torch_gen: torch.Generator) -> None:
    model = SpikeDrivenTransformer(_tiny_cfg())
    kv_sn = model.blocks[0].attn.kv_sn
    assert kv_sn.v_th == 0.25 and kv_sn.tau == 2.0
    counts = torch.randint(0, 4, (8, 5, 1, 16), generator=torch_gen).float()   # [T, B, 1, d]
    counts[counts == 3] = 0  # plenty of zeros between coincidences
    z = kv_sn(counts)
    assert torch.equal(z, (counts >= 1).float())
    # at v_th = 0.5 (the official spikingjelly value, which fires at >=) a single coincidence is lost
    z_half = LIF(2.0, 0.5)(torch.ones(1, 3))
    assert torch.equal(z_half, torch.zeros(1, 3))


def test_lif_threshold_is_strict_and_reset_is_hard() -> None:
    lif = LIF(tau=2.0, v_th=1.0)
    # step 1: v = 2/2 = 1.0 == v_th -> no spike; step 2: v = (1 + 2)/2 = 1.5 -> spike, reset;
    # step 3: v = (0 + 2)/2 = 1.0 -> no spike
    z = lif(torch.full((3, 1), 2.0))
    assert z.flatten().tolist() == [0.0, 1.0, 0.0]
    assert lif.firing_rate == 1 / 3


def test_lif_matches_reference_on_random_currents(torch_gen: torch.Generator) -> None:
    x = torch.randn(6, 4, 7, generator=torch_gen) * 2
    assert torch.equal(LIF(2.0, 1.0)(x), ref_sn(x, 2.0, 1.0))


def test_surrogate_gradient_reaches_every_parameter(torch_gen: torch.Generator) -> None:
    torch.manual_seed(0)
    model = SpikeDrivenTransformer(_tiny_cfg()).train()
    x = (torch.rand(4, 4, 6, 48, generator=torch_gen) < 0.5).float()
    loss = model(x).mean(0).pow(2).sum()
    loss.backward()
    frozen = {n for n, p in model.named_parameters() if not p.requires_grad}
    assert frozen == {f"blocks.0.{m}.bias" for m in ("attn.proj", "mlp.fc1", "mlp.fc2")} | \
        {f"blocks.1.{m}.bias" for m in ("attn.proj", "mlp.fc1", "mlp.fc2")}   # cancelled by the BN after them
    for name, p in model.named_parameters():
        if name in frozen:
            continue
        assert p.grad is not None, f"{name} got no gradient"
        assert torch.isfinite(p.grad).all(), name
        assert p.grad.abs().sum() > 0, f"{name} gradient is zero"


def test_config_validation() -> None:
    with pytest.raises(ValueError, match="divisible"):
        SDTConfig(d_model=10, heads=4)
    with pytest.raises(ValueError, match="kv_v_th"):
        SDTConfig(kv_v_th=0.5)
    model = SpikeDrivenTransformer(_tiny_cfg())
    with pytest.raises(ValueError, match="N=6"):
        model(torch.zeros(2, 1, 5, 48))


# ---------------------------------------------------------------------------- the event-driven inference kernel


def _rates_of(rec: dict[str, Tensor]) -> dict[str, float]:
    return {name: float(ref.sum()) / ref.numel() for name, ref in rec.items()}


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("density", [0.2, 0.7])     # 0.7: the embed's GEMM in torch, the rest in the kernel
def test_inference_kernel_matches_equation_reference_bit_for_bit(torch_gen: torch.Generator, dtype: torch.dtype,
                                                                 density: float) -> None:
    """Exact arithmetic (dyadic weights): the kernel's spikes, rates and logits are the reference's, ties included."""
    model = SpikeDrivenTransformer(_tiny_cfg())
    _dyadic_(model, torch_gen)
    model = model.to(dtype).eval()
    x = (torch.rand(4, 3, 6, 48, generator=torch_gen) < density).to(dtype)
    with torch.no_grad():
        assert sdt_inference.applies(model, x)
        ref_logits, ref_rec = ref_sdt(model, x)
        for inp in (x, x.bool(), x.to(torch.uint8)):
            logits = model(inp)
            torch.testing.assert_close(logits, ref_logits, rtol=0, atol=1e-6 if dtype == torch.float32 else 1e-12)
            assert model.firing_rates() == _rates_of(ref_rec)
    for name, ref in ref_rec.items():
        assert 0.0 < float(ref.mean()) < 1.0, f"{name} rate {float(ref.mean())}"   # not vacuous


def test_inference_kernel_from_spikes_and_from_membranes_agree(torch_gen: torch.Generator) -> None:
    model = SpikeDrivenTransformer(_tiny_cfg(depth=1, mlp_hidden=40, n_classes=3)).eval()
    _dyadic_(model, torch_gen)
    x = (torch.rand(3, 5, 6, 48, generator=torch_gen) < 0.2).float()
    with torch.no_grad():
        u0 = ref_bn(ref_linear(x, model.embed), model.embed_bn) + model.pos_bias
        a = sdt_inference.sdt_inference(model, x=x)
        b = sdt_inference.sdt_inference(model, u0=u0)
        ref, _ = ref_sdt(model, x)
    assert torch.equal(a, b)
    torch.testing.assert_close(a, ref, rtol=0, atol=1e-6)
    with pytest.raises(ValueError, match="exactly one"):
        sdt_inference.sdt_inference(model)


def _active_model(dtype: torch.dtype = torch.float32) -> SpikeDrivenTransformer:
    from neuroposter.testing.active_init import demo_sized_sdt

    return demo_sized_sdt(0).to(dtype).eval()


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_inference_kernel_equals_the_torch_path_on_a_demo_sized_model(dtype: torch.dtype) -> None:
    """Round-off (another summation order than MKL's GEMM) may flip a spike sitting on its threshold; on a demo-sized
    model with every layer active it does not, and the logits agree to round-off."""
    model = _active_model(dtype)
    x = (torch.rand(4, 6, 40, 1664, generator=torch.Generator().manual_seed(4)) < 0.1).to(dtype)
    with torch.no_grad():
        assert sdt_inference.applies(model, x)
        fast = model(x)
        fast_rates = model.firing_rates()
        set_sparse_input(model, "off")
        slow = model(x)
        slow_rates = model.firing_rates()
    torch.testing.assert_close(fast, slow, rtol=1e-5, atol=1e-5)
    for name in slow_rates:
        assert fast_rates[name] == pytest.approx(slow_rates[name], abs=1e-4), name
    assert min(slow_rates.values()) > 0.0


def test_inference_kernel_does_not_depend_on_the_thread_count() -> None:
    model = _active_model()
    x = (torch.rand(4, 5, 40, 1664, generator=torch.Generator().manual_seed(5)) < 0.1).float()
    outs = []
    for threads in (1, 2):
        torch.set_num_threads(threads)
        with torch.no_grad():
            assert sdt_inference.applies(model, x)
            outs.append(model(x))
    assert torch.equal(outs[0], outs[1])


def test_inference_kernel_stays_out_where_it_does_not_apply(torch_gen: torch.Generator) -> None:
    """Training, gradients, recorded spikes, hooks, another LIF backend, the dense mode: the torch path runs (and
    still gives the reference's logits)."""
    model = SpikeDrivenTransformer(_tiny_cfg())
    _dyadic_(model, torch_gen)
    x = (torch.rand(4, 2, 6, 48, generator=torch_gen) < 0.3).float()
    model.eval()
    with torch.no_grad():
        ref, _ = ref_sdt(model, x)
    assert not sdt_inference.applies(model, x)            # gradients wanted: parameters require them
    with torch.no_grad():
        assert sdt_inference.applies(model, x)
        model.train()
        assert not sdt_inference.applies(model, x)
        model.eval()
        model.head_sn.record_spikes = True
        assert not sdt_inference.applies(model, x)
        model.head_sn.record_spikes = False
        handle = model.blocks[0].mlp.fc1.register_forward_hook(lambda *a: None)
        assert not sdt_inference.applies(model, x)
        handle.remove()
        set_lif_backend(model, "fused-torch")
        assert not sdt_inference.applies(model, x)
        set_lif_backend(model, "fused")
        q = model.blocks[0].attn.q
        model.blocks[0].attn.q = torch.nn.Linear(q.in_features, q.out_features)   # a Q with bias: not the SDT's
        assert not sdt_inference.applies(model, x)
        model.blocks[0].attn.q = q
        assert not sdt_inference.applies(model.double(), x)   # float input, float64 weights
        model.float()
        set_sparse_input(model, "off")
        torch.testing.assert_close(model(x), ref, rtol=0, atol=1e-6)
    for p in model.parameters():
        p.requires_grad_(False)
    assert sdt_inference.applies(model, x)                # frozen weights: inference even with grad mode on


def test_inference_kernel_follows_every_change_of_the_weights(torch_gen: torch.Generator) -> None:
    """The kernel packs the weights once per state of the model's tensors: an in-place change, a loaded state dict,
    a new BatchNorm statistic or a dtype change is seen by the next call."""
    model = SpikeDrivenTransformer(_tiny_cfg())
    _dyadic_(model, torch_gen)
    model.eval()
    x = (torch.rand(4, 3, 6, 48, generator=torch_gen) < 0.3).float()
    other = SpikeDrivenTransformer(_tiny_cfg())
    _dyadic_(other, torch.Generator().manual_seed(9))
    with torch.no_grad():
        first = model(x)
        for change in (lambda: model.blocks[1].mlp.fc2.weight.mul_(-1),
                       lambda: model.blocks[0].attn.k_bn.running_mean.add_(0.5),
                       lambda: model.load_state_dict(other.state_dict()),
                       lambda: model.double()):
            change()
            assert sdt_inference.applies(model, x.to(model.embed.weight.dtype))
            got = model(x.to(model.embed.weight.dtype))
            ref, _ = ref_sdt(model, x.to(model.embed.weight.dtype))
            torch.testing.assert_close(got, ref, rtol=0, atol=1e-6)
            assert not torch.equal(got.float(), first)
            first = got.float()
