"""Hardware profile loader: every shipped profile loads; bad files name the bad key."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from neuroposter.profiling.profiles import (
    ENERGY_TERMS,
    HardwareProfile,
    ProfileError,
    list_profiles,
    load_profile,
    profile_dirs,
)

REQUIRED = ("loihi2", "spinnaker", "spinnaker2", "truenorth", "xylo", "speck", "loihi",
            "horowitz_45nm_fp32", "horowitz_45nm_fp16", "horowitz_45nm_int8", "cpu_i7_4960x", "jetson_agx_orin")


def test_required_profiles_present():
    names = list_profiles()
    for n in REQUIRED:
        assert n in names, f"missing profile {n}; have {names}"
    assert any(n in names for n in ("a100_sxm", "h100_sxm"))


@pytest.mark.parametrize("name", list_profiles())
def test_every_profile_loads(name):
    p = load_profile(name)
    assert isinstance(p, HardwareProfile)
    assert p.name == name
    assert p.sources and all(s.strip() for s in p.sources)
    assert p.scope in ("per-term", "all-in")
    for key, value in p.energy.items():
        assert key.endswith(("_pj", "_mw")), key
        assert value is None or value >= 0
        d = p.energy_detail[key]
        if d.evidence == "unverified":
            assert d.value is None and d.min is None and d.max is None
        if d.low is not None and d.high is not None:
            assert d.low <= d.high
    if p.scope == "all-in":
        extras = [k for k in p.energy if k.startswith("e_") and k not in ("e_synop_allin_pj", "e_inference_pj",
                                                                          "e_op_pj", "e_flop_pj")]
        assert not extras


def test_loihi2_limits_contract():
    lim = load_profile("loihi2").limits
    assert lim.cores_per_chip == 128
    assert lim.weight_bits == 8
    assert lim.neurons_per_chip == 1_000_000
    assert "LIF" in lim.neuron_models
    assert load_profile("loihi2").energy["e_synop_pj"] is None  # not published: null, not invented


def test_loihi2_fixed_point_formats():
    """Lava's Loihi 2 bit-accurate formats (docs/sources.md#lava-fixed-point), as the quantiser needs them."""
    p = load_profile("loihi2")
    fp = p.fixed_point
    assert fp is not None
    assert (fp.weight_bits, fp.state_bits, fp.threshold_mant_bits, fp.bias_mant_bits, fp.bias_exp_bits,
            fp.decay_bits, fp.act_shift_bits, fp.threshold_shift_bits, fp.decay_u_offset, fp.decay_v_offset,
            fp.max_delay) == (8, 24, 17, 13, 3, 12, 6, 6, 1, 0, 62)
    assert fp.mant_max == 127                       # symmetric 8-bit signed mantissa
    assert fp.vth_max == 131071                     # 17-bit unsigned
    assert fp.state_max == 8388607 and fp.state_limit == 8388608   # 24-bit signed: 2**23 - 1, wraps at 2**23
    assert fp.bias_mant_max == 4095 and fp.bias_exp_max == 7       # 13-bit signed mantissa, 3-bit exponent
    assert fp.decay_unity == 4096 and fp.decay_max == 4095         # 12-bit decays
    # one place per fact: the widths shared with the limits are the limits
    assert (fp.weight_bits, fp.state_bits, fp.max_delay) == (p.limits.weight_bits, p.limits.state_bits,
                                                             p.limits.max_delay)
    assert all("docs/sources.md#" in fp.sources[k] for k in ("threshold_mant_bits", "decay_bits", "max_delay"))
    assert all(load_profile(n).fixed_point is None for n in ("loihi", "spinnaker2", "xylo", "speck"))


@pytest.mark.parametrize("chip, full_leak, why", [
    ("spinnaker2", True, "integrator=FORWARD"), ("spinnaker", True, "sPyNNaker"),
    ("xylo", False, "dash_syn = 0"), ("speck", False, "IAF only"), ("truenorth", False, "not verified"),
    ("loihi2", None, None), ("loihi", None, None)])
def test_full_leak_capability(chip, full_leak, why):
    lim = load_profile(chip).limits
    assert lim.full_leak is full_leak
    assert (why in lim.notes["full_leak"]) if why else "full_leak" not in lim.notes


def test_units_normalised():
    assert load_profile("spinnaker").energy["e_synop_pj"] == pytest.approx(13300.0)
    assert load_profile("cpu_i7_4960x").energy["e_op_pj"] == pytest.approx(8600.0)
    assert load_profile("horowitz_45nm_fp32").energy["e_mac_pj"] == 4.6
    lo, hi = load_profile("horowitz_45nm_fp32").range("e_dram_read_pj")
    assert (lo, hi) == (1300.0, 2600.0)
    assert load_profile("truenorth").scope == "all-in"


def test_load_by_path_and_env(tmp_path, monkeypatch):
    src = next(d for d in profile_dirs()) / "loihi.yaml"
    raw = yaml.safe_load(src.read_text())
    raw["name"] = "myloihi"
    f = tmp_path / "myloihi.yaml"
    f.write_text(yaml.safe_dump(raw))
    assert load_profile(f).name == "myloihi"
    assert load_profile(str(f)).energy["e_synop_pj"] == 23.6
    monkeypatch.setenv("NEUROPOSTER_PROFILES", str(tmp_path))
    assert "myloihi" in list_profiles()
    assert load_profile("myloihi").path == f


def test_unknown_name_lists_available():
    with pytest.raises(KeyError, match="loihi2"):
        load_profile("no_such_chip")


def _base() -> dict:
    return {"name": "bad", "kind": "neuromorphic", "evidence": "measured", "scope": "per-term",
            "source": "test", "energy": {"e_synop_pj": 1.0}, "limits": {"fan_in": 4}}


def _write(tmp_path: Path, raw: dict) -> Path:
    f = tmp_path / "bad.yaml"
    f.write_text(yaml.safe_dump(raw))
    return f


@pytest.mark.parametrize("mutate, bad_key", [
    (lambda r: r.update(colour="red"), "colour"),
    (lambda r: r["energy"].update(e_synop=3.0), "energy.e_synop"),
    (lambda r: r["energy"].update(e_synops_pj=3.0), "energy.e_synops_pj"),
    (lambda r: r["energy"].update(static=3.0), "energy.static"),
    (lambda r: r["energy"].update(e_mac_pj="4.6"), "energy.e_mac_pj"),
    (lambda r: r["energy"].update(e_mac_pj={"value": 1.0, "colour": 1}), "energy.e_mac_pj.colour"),
    (lambda r: r["limits"].update(fan_in=2.5), "limits.fan_in"),
    (lambda r: r["limits"].update(fanin=2), "limits.fanin"),
    (lambda r: r["limits"].update(supports_weight_sharing="yes"), "limits.supports_weight_sharing"),
    (lambda r: r.pop("source"), "source"),
    (lambda r: r.update(evidence="rumour"), "evidence"),
    (lambda r: r.update(scope="some"), "scope"),
    (lambda r: r["energy"].update(e_mac_pj={"value": 1.0, "evidence": "unverified"}), "energy.e_mac_pj"),
    (lambda r: r["energy"].update(e_mac_pj={"min": 3.0, "max": 1.0}), "energy.e_mac_pj"),
    (lambda r: r.update(facts={"rate": 20}), "facts.rate"),
    (lambda r: r.update(name="other"), "name"),
])
def test_bad_file_names_bad_key(tmp_path, mutate, bad_key):
    raw = _base()
    mutate(raw)
    with pytest.raises(ProfileError) as ei:
        load_profile(_write(tmp_path, raw))
    msg = str(ei.value)
    assert f": {bad_key}:" in msg or f": {bad_key} = " in msg, msg


def test_all_in_with_per_term_extras_refused(tmp_path):
    raw = _base()
    raw["scope"] = "all-in"
    raw["energy"] = {"e_synop_allin_pj": 26.0, "e_neuron_update_pj": 50.0}
    with pytest.raises(ProfileError, match="energy.e_neuron_update_pj.*all-in"):
        load_profile(_write(tmp_path, raw))
    raw["scope"] = "per-term"
    raw["energy"] = {"e_synop_allin_pj": 26.0}
    with pytest.raises(ProfileError, match="e_synop_allin_pj"):
        load_profile(_write(tmp_path, raw))


def test_energy_terms_documented():
    assert all(v for v in ENERGY_TERMS.values())
