"""The compiled integer LIF against the torch step (:func:`int_lif_step`, the independent reference) over formats,
decays, thresholds, biases and inputs that wrap u and saturate v; the simulator with and without it; and the
one-pass input check against the torch checks it replaces."""

from __future__ import annotations

import importlib

import nir
import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from neuroposter.ir import retime, simulate
from neuroposter.ir.int_neuron import IntFormat, int_lif_step
from neuroposter.ir.int_neuron_kernel import int_inputs, int_neuron_params, int_neuron_run
from neuroposter.ir.simulate import SimulationError
from neuroposter.profiling.profiles import load_profile

LOIHI2 = IntFormat.of_profile(load_profile("loihi2").fixed_point)
sim = importlib.import_module("neuroposter.ir.simulate")     # the module (the package exports the function)


def _torch_steps(x: np.ndarray, *, du, dv, vth, bias, gain, fmt: IntFormat, spiking: bool) -> np.ndarray:
    """Every row of ``x [R, B, *shape]`` through the torch step, from rest, no early stop."""
    t = lambda a: torch.as_tensor(np.asarray(a, dtype=np.int64))  # noqa: E731
    u = v = torch.zeros(x.shape[1:], dtype=torch.int64)
    out = []
    for r in range(x.shape[0]):
        a = torch.as_tensor(x[r]).to(torch.int64) * t(gain)
        u, v, z = int_lif_step(u, v, a, du=t(du), dv=t(dv), vth=t(vth), bias=t(bias), fmt=fmt, spiking=spiking)
        out.append(z.numpy())
    return np.stack(out).astype(np.uint8 if spiking else np.int64)


def _kernel(x: np.ndarray, *, spiking: bool, **kw) -> np.ndarray:
    p = int_neuron_params(x.shape[2:], spiking=spiking, **kw)
    assert p is not None
    out = torch.zeros(x.shape, dtype=torch.uint8 if spiking else torch.int64)
    int_neuron_run(p, torch.from_numpy(x), out, spiking=spiking)
    return out.numpy()


_FORMATS = st.one_of(
    st.just(LOIHI2),
    st.builds(IntFormat, state_bits=st.integers(6, 32), decay_bits=st.integers(1, 14), act_shift=st.integers(0, 8),
              threshold_shift=st.integers(0, 8), decay_u_offset=st.integers(0, 1), decay_v_offset=st.integers(0, 1)))


@st.composite
def _cases(draw):  # noqa: ANN001, ANN202 - hypothesis strategy
    fmt = draw(_FORMATS)
    shape = draw(st.sampled_from([(1,), (7,), (3, 5), (600,)]))    # 600: more than one block of neurons
    rng = np.random.default_rng(draw(st.integers(0, 2 ** 32 - 1)))
    one, lim = fmt.decay_unity, fmt.state_limit

    def param(lo: int, hi: int):  # noqa: ANN202 - a scalar, a per-neuron array or one broadcast over the last axis
        kind = draw(st.sampled_from(["scalar", "full", "last"]))
        if kind == "scalar":
            return int(rng.integers(lo, hi + 1))
        return rng.integers(lo, hi + 1, size=shape if kind == "full" else shape[-1:])

    kw = {"du": param(0, one), "dv": param(0, one), "vth": param(-3, max(1, lim >> (fmt.threshold_shift + 1))),
          "bias": param(-lim // 4, lim // 4) if draw(st.booleans()) else 0, "gain": param(-3, 3) if draw(
              st.booleans()) else 1}
    rows, batch = draw(st.integers(1, 9)), draw(st.integers(1, 4))
    big = draw(st.booleans())            # inputs large enough to wrap u and saturate v
    amp = (lim >> max(0, fmt.act_shift - 2)) + 2 if big else 3
    if draw(st.booleans()):
        x = (rng.random((rows, batch, *shape)) < 0.4).astype(np.uint8)
    else:
        x = rng.integers(-amp, amp + 1, size=(rows, batch, *shape)).astype(np.int64)
    quiet = draw(st.integers(0, rows))   # trailing all-zero rows: the early stop may take them
    x[rows - quiet:] = 0
    return fmt, kw, x, draw(st.booleans())


@settings(max_examples=100, deadline=None)
@given(_cases())
def test_kernel_equals_the_torch_steps(case) -> None:
    fmt, kw, x, spiking = case
    want = _torch_steps(x, fmt=fmt, spiking=spiking, **kw)
    np.testing.assert_array_equal(_kernel(x, fmt=fmt, spiking=spiking, **kw), want)


def test_wrap_saturation_and_early_stop_are_exercised() -> None:
    # u wraps (a << 6 past 2**23), v saturates at 2**23 - 1; a rested spiking population stops early
    x = np.zeros((6, 2, 4), dtype=np.int64)
    x[0] = [[2 ** 17 + 5, -(2 ** 17) - 5, 2 ** 16, 100], [0, 0, 0, 0]]
    x[1, 0, 2] = 2 ** 16
    kw = {"du": 4095, "dv": 0, "vth": 2 ** 17 - 1, "bias": 0, "gain": 1, "fmt": LOIHI2}
    v = _kernel(x, spiking=False, **kw)
    want = _torch_steps(x, spiking=False, **kw)
    np.testing.assert_array_equal(v, want)
    assert v[0, 0, 0] == (2 ** 17 + 5) * 64 - 2 ** 24          # wrapped u
    assert v[1, 0, 2] == 2 ** 23 - 1                            # saturated v (2**22 + 2**22)
    z = _kernel(x, spiking=True, **kw)
    np.testing.assert_array_equal(z, _torch_steps(x, spiking=True, **kw))
    assert z[1, 0, 2] and not z[2:].any()


def test_torch_fallback_where_the_kernel_does_not_apply(rng) -> None:
    assert int_neuron_params((3,), du=np.zeros((2, 3), np.int64), dv=0, vth=1, bias=0, gain=1, fmt=LOIHI2,
                             spiking=True) is None                      # wider than one sample's neurons
    wide = IntFormat(63, 12, 6, 6, 1, 0)
    assert int_neuron_params((3,), du=0, dv=0, vth=1, bias=0, gain=1, fmt=wide, spiking=True) is None
    g = nir.NIRGraph.from_list(_lif((3,), vth=2.0))
    x = rng.integers(0, 3, size=(5, 2, 3))
    np.testing.assert_array_equal(simulate(g, x, arithmetic="int", int_format=wide).records["lif"],
                                  simulate(g, x, arithmetic="int", int_format=wide, compiled=False).records["lif"])


def _lif(shape: tuple[int, ...], meta: dict | None = None, **kw) -> nir.LIF:
    one = np.ones(shape)
    return nir.LIF(tau=kw.get("tau", 2.0) * one, r=kw.get("r", 1.0) * one, v_leak=kw.get("v_leak", 0.0) * one,
                   v_threshold=kw.get("vth", 1.0) * one, metadata=meta or {})


def _same_results(a, b) -> None:  # noqa: ANN001
    np.testing.assert_array_equal(a.output, b.output)
    assert a.records.keys() == b.records.keys() and a.inputs.keys() == b.inputs.keys()
    for k in a.records:
        assert a.records[k].dtype == b.records[k].dtype, k
        np.testing.assert_array_equal(a.records[k], b.records[k], err_msg=k)
    for k in a.inputs:
        np.testing.assert_array_equal(a.inputs[k], b.inputs[k], err_msg=k)


def test_quantised_graph_kernel_equals_torch_neurons(monkeypatch) -> None:
    from neuroposter.targets.loihi.fixed_point import quantize_loihi
    from neuroposter.testing.graphs import random_spikes, sdt_like_graph

    runs = []
    real = sim.int_neuron_run
    monkeypatch.setattr(sim, "int_neuron_run", lambda *a, **k: (runs.append(1), real(*a, **k)))
    gi, _ = quantize_loihi(sdt_like_graph(), load_profile("loihi2"))
    x = random_spikes(4, 9, (6, 3), p=0.3, seed=5).astype(np.float32)
    for kw in ({"mode": "per_hop", "delays": retime(gi).delays, "tail": True}, {"mode": "per_hop",
               "delays": retime(gi).delays}, {"mode": "same_step"}):
        n0 = len(runs)
        fast = simulate(gi, x, arithmetic="int", **kw)
        n1 = len(runs)
        assert n1 > n0                                         # the kernel ran
        slow = simulate(gi, x, arithmetic="int", compiled=False, **kw)
        assert len(runs) == n1                                 # and not here: the torch steps
        _same_results(fast, slow)
        assert any(r.any() for r in fast.records.values())


def test_non_spiking_gain_and_bias_nodes_kernel_equals_torch(rng) -> None:
    # LIF with a gain r and a leak (bias), an LI read-out (voltages) and an exact integer Threshold
    shape = (5,)
    g = nir.NIRGraph(
        nodes={"input": nir.Input(np.array(shape)), "w": nir.Linear(rng.integers(-40, 40, (5, 5)).astype(float)),
               "lif": _lif(shape, r=3.0, v_leak=0.25, vth=20.0, tau=4.0),
               "w2": nir.Linear(rng.integers(-5, 5, (5, 5)).astype(float)),
               "li": nir.LI(tau=np.full(shape, 8.0), r=np.ones(shape), v_leak=np.zeros(shape)),
               "th": nir.Threshold(np.full(shape, 3.0)), "output": nir.Output(np.array(shape))},
        edges=[("input", "w"), ("w", "lif"), ("lif", "w2"), ("w2", "li"), ("w2", "th"), ("li", "output"),
               ("th", "output")])
    x = rng.integers(0, 3, size=(7, 4, *shape))
    for mode in ("same_step", "per_hop"):
        fast = simulate(g, x, arithmetic="int", int_format=LOIHI2, mode=mode, tail=True)
        slow = simulate(g, x, arithmetic="int", int_format=LOIHI2, mode=mode, tail=True, compiled=False)
        _same_results(fast, slow)
        assert fast.records["lif"].any() and fast.records["li"].any()


# ---------------------------------------------------------------------------------------------
# the input check


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf, 0.5, -2.25])
def test_non_integer_inputs_are_refused(dtype, bad: float) -> None:
    g = nir.NIRGraph.from_list(nir.Linear(np.ones((2, 3))))
    x = np.ones((3, 4, 3), dtype=dtype)
    x[2, 3, 1] = bad
    for compiled in (True, False):
        with pytest.raises(SimulationError, match="int arithmetic needs integer inputs"):
            simulate(g, x, arithmetic="int", int_format=LOIHI2, compiled=compiled)
    assert int_inputs(torch.from_numpy(x)) is None


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("extra, want", [(0.0, torch.uint8), (255.0, torch.uint8), (-1.0, torch.int64),
                                         (256.0, torch.int64), (-3e6, torch.int64)])
def test_integer_inputs_narrow_to_uint8_or_int64(dtype, extra: float, want: torch.dtype) -> None:
    x = np.zeros((2, 70000), dtype=dtype)                 # a large input (parallel chunks)
    x[0, :5] = [1, 0, 7, 200, 3]
    x[1, 69999] = extra
    got = int_inputs(torch.from_numpy(x))
    assert got is not None and got.dtype == want and got.shape == x.shape
    np.testing.assert_array_equal(got.numpy(), x.astype(np.int64))
    unit = type("U", (), {"path": "input", "type": type("T", (), {"name": "Input"})})()
    old = sim._input_tensor(torch.from_numpy(x), "int", torch.int64, unit, compiled=False)
    assert old.dtype == got.dtype and torch.equal(old, got)


def test_integer_inputs_non_contiguous_and_empty() -> None:
    x = torch.arange(24, dtype=torch.float32).reshape(2, 3, 4).transpose(1, 2)
    np.testing.assert_array_equal(int_inputs(x).numpy(), x.numpy().astype(np.uint8))
    assert int_inputs(torch.zeros((0, 3))).shape == (0, 3)


def test_warm_compiles_every_signature_the_simulator_uses() -> None:
    from neuroposter.ir import int_neuron_kernel as k

    k.warm()
    runs = {(str(sig[0].dtype), str(sig[-1].dtype)) for sig in k._run.signatures}
    assert runs >= {("uint8", "uint8"), ("uint8", "int64"), ("int64", "uint8"), ("int64", "int64")}
    assert {str(sig[0].dtype) for sig in k._check.signatures} >= {"float32", "float64"}
