"""benchmarks/peers.py builds the same SDT with every library: parameter counts, output shapes, and (with
neuroposter's weights loaded) the same logits as neuroposter's model. Peers that are not importable are skipped."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest
import torch

from neuroposter.models import SDTConfig, SpikeDrivenTransformer

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "peers.py"
CFG = SDTConfig(d_in=12, n_tokens=5, d_model=8, depth=2, heads=2, mlp_hidden=16, n_classes=3)
T, B = 3, 4


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("peers_benchmark", SCRIPT)
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod              # dataclasses resolve their module by name
    spec.loader.exec_module(mod)
    yield mod
    sys.modules.pop(spec.name, None)


def _importable(peer: str | None) -> bool:
    return peer is None or importlib.util.find_spec(peer) is not None


ROW_NAMES = ["neuroposter", "neuroposter-dense-train", "neuroposter-before", "neuroposter-per-step", "spikingjelly-linear", "spikingjelly-conv1d", "snntorch", "norse",
             "neuroposter-f64"]


def _need(bench, name: str) -> None:  # noqa: ANN001
    peer = bench.ROWS[name].peer
    if not _importable(peer):
        pytest.skip(f"{peer} is not importable here (benchmarks/peers.py installs it into a throw-away folder)")


def _expected_counts(c: SDTConfig) -> tuple[int, int]:
    """The SDT's parameters by hand: (all, trainable); the proj/fc1/fc2 biases are frozen."""
    d, h = c.d_model, c.mlp_hidden
    block = (3 * d * d + 3 * 2 * d            # q, k, v (no bias) + their BN
             + d * d + d + 2 * d              # proj (+ frozen bias) + BN
             + d * h + h + 2 * h              # fc1 (+ frozen bias) + BN
             + h * d + d + 2 * d)             # fc2 (+ frozen bias) + BN
    total = c.d_in * d + 2 * d + c.n_tokens * d + c.depth * block + d * c.n_classes + c.n_classes
    return total, total - c.depth * (d + h + d)


def test_rows_registry_is_the_issue_table(bench):
    assert list(bench.ROWS) == ROW_NAMES
    with pytest.raises(KeyError, match="valid: neuroposter"):
        bench.build_row("brian2", CFG)


def test_shapes_come_from_train_throughput(bench):
    d = bench.throughput_defaults()
    cfg, t, b = bench.benchmark_config()
    assert (t, b, cfg.n_tokens, cfg.d_in, cfg.n_classes) == (d["T"], d["batch"], d["N"], d["D"], d["classes"])
    assert (cfg.d_model, cfg.depth, cfg.mlp_hidden) == (SDTConfig().d_model, SDTConfig().depth, SDTConfig().mlp_hidden)
    cfg2, t2, b2 = bench.benchmark_config(T=2, batch=3, d_model=16)
    assert (t2, b2, cfg2.d_model, cfg2.d_in) == (2, 3, 16, d["D"])
    import argparse
    assert argparse.ArgumentParser().parse_args([]) == argparse.Namespace()   # the patch is gone


@pytest.mark.parametrize("name", ROW_NAMES)
def test_row_has_the_sdt_parameter_count_and_output_shape(bench, name):
    _need(bench, name)
    torch.manual_seed(0)
    model = bench.build_row(name, CFG).train()
    assert bench.count_params(model) == _expected_counts(CFG)
    x = (torch.rand(T, B, CFG.n_tokens, CFG.d_in) < 0.3).to(bench.ROWS[name].dtype)
    out = model(x)
    assert out.shape == (T, B, CFG.n_classes) and out.dtype == bench.ROWS[name].dtype
    out.mean().backward()
    grads = [p.grad for p in model.parameters() if p.requires_grad]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)
    model.eval()
    with torch.no_grad():
        assert model(x).shape == (T, B, CFG.n_classes)
        assert model(x[:2, :1]).shape == (2, 1, CFG.n_classes)   # no neuron state left from the last call


def _peer_key(np_key: str) -> str:
    """neuroposter's state-dict name -> the PeerSDT name (the wrapped spikingjelly BN adds ``.bn``)."""
    k = np_key.replace("attn.sn_in", "attn_sn").replace("mlp.sn_in", "mlp_sn").replace("mlp.sn_hidden", "hidden_sn")
    return k.replace(".attn.", ".").replace(".mlp.", ".")


def _load_sdt_weights(peer: torch.nn.Module, sdt: SpikeDrivenTransformer) -> None:
    own = dict(peer.state_dict())
    plain = {k.replace(".bn.", "."): k for k in own}
    loaded = set()
    for k, v in sdt.state_dict().items():
        target = plain[_peer_key(k)]
        if k == "pos_bias" and own[target].shape != v.shape:        # channels-first layout: [d, N]
            v = v.t()
        own[target] = v.reshape(own[target].shape)                   # Conv1d weights: [out, in, 1]
        loaded.add(target)
    peer.load_state_dict(own)
    assert {n for n, _ in peer.named_parameters()} <= loaded


@pytest.mark.parametrize("name", ["spikingjelly-linear", "spikingjelly-conv1d", "snntorch", "norse"])
def test_peer_with_neuroposter_weights_gives_neuroposter_logits(bench, name):
    """Same weights, same input: the peer's network is neuroposter's SDT (float64, training-mode BatchNorm)."""
    _need(bench, name)
    torch.manual_seed(1)
    sdt = SpikeDrivenTransformer(CFG).double().train()
    peer = bench.build_row(name, CFG).double().train()
    _load_sdt_weights(peer, sdt)
    x = (torch.rand(T, B, CFG.n_tokens, CFG.d_in) < 0.5).double()
    want = sdt(x)
    rates = [r for r in sdt.firing_rates().values()]
    assert max(rates) > 0.05 and min(rates) < 1.0          # spikes do happen: the comparison can fail
    got = peer(x)
    torch.testing.assert_close(got, want, rtol=1e-9, atol=1e-12)
    torch.testing.assert_close(peer(x), want, rtol=1e-9, atol=1e-12)     # a second call starts from rest


def test_own_rows_compute_the_same_inference_logits(bench):
    """The default row (compiled LIF, sparse embed in inference) against the pre-#16 row (torch-form LIF, dense
    embed), same weights: float64 inference logits to round-off, and each row really runs its configuration."""
    from neuroposter.models.lif import LIF

    torch.manual_seed(2)
    models = {n: bench.build_row(n, CFG).double().eval() for n in ("neuroposter", "neuroposter-dense-train",
                                                                  "neuroposter-before")}
    state = models["neuroposter"].state_dict()
    for m in models.values():
        m.load_state_dict(state)
    assert models["neuroposter"].sparse_input == "auto" and models["neuroposter-dense-train"].sparse_input == "inference"
    assert models["neuroposter-before"].sparse_input == "off"
    assert {m.backend for m in models["neuroposter-before"].modules() if isinstance(m, LIF)} == {"fused-torch"}
    x = (torch.rand(T, B, CFG.n_tokens, CFG.d_in) < 0.2).double()
    with torch.no_grad():
        want = models["neuroposter-before"](x)
        for n in ("neuroposter", "neuroposter-dense-train"):
            torch.testing.assert_close(models[n](x), want, rtol=1e-12, atol=1e-12)


def test_missing_peer_without_install_says_what_to_do(bench, tmp_path):
    with pytest.raises(SystemExit, match="--no-install"):
        bench.ensure_peers(tmp_path, install=False)
    with pytest.raises(SystemExit, match="snntorch==") as e:
        bench.ensure_peers(tmp_path, install=False, needed={"snntorch", "norse"})
    assert "spikingjelly" not in str(e.value)                     # only what the chosen rows need
    bench.ensure_peers(tmp_path, install=False, needed={"norse"})  # a project dependency: nothing to install


def test_measure_reports_its_device_and_cuda_is_refused_without_a_gpu(bench, capsys):
    r = bench.measure("neuroposter", CFG, T, B, threads=1, warmup=1, steps=2, device="cpu")
    assert r["device"] == "cpu" and r["train"] > 0 and r["infer"] > 0
    assert r["shape"] == [T, B, CFG.n_classes]
    if torch.cuda.is_available():
        pytest.skip("a CUDA device is present: the refusal does not apply")
    with pytest.raises(SystemExit):
        bench.main(["--device", "cuda", "--rows", "neuroposter", "--repeats", "1"])
    assert "no CUDA device" in capsys.readouterr().err
