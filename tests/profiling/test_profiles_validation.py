"""Hardware profiles are validated on load (issue #10, item 5): type, unit and range of every key.

Each rule class is refused with a one-line message naming the file, the dotted key, the value and what is
allowed; every shipped profile passes; a bad profile is a usage error (CLI exit code 2).
"""

from __future__ import annotations

import copy
import math
from dataclasses import fields
from pathlib import Path

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from neuroposter.errors import UsageError
from neuroposter.profiling.profiles import (
    FixedPoint,
    HardwareProfile,
    Limits,
    ProfileError,
    ProfileFileNotFoundError,
    UnknownProfileError,
    list_profiles,
    load_profile,
)
from neuroposter.profiling.schema import (
    QUANTITIES,
    SCHEMA,
    UNITS,
    check_profile,
    fixed_point_rules,
    limit_rules,
    rule_for,
    rules_markdown,
    validate_profile,
)

ROOT = Path(__file__).resolve().parents[2]
SHIPPED = sorted((ROOT / "hardware_profiles").glob("*.yaml"))


def _base() -> dict:
    return {"name": "my_chip", "kind": "neuromorphic", "evidence": "measured", "scope": "per-term",
            "source": "test", "energy": {"e_synop_pj": 1.0}, "limits": {"fan_in": 4, "cores_per_chip": 8}}


def _write(tmp_path: Path, raw: dict | str, name: str = "my_chip") -> Path:
    f = tmp_path / f"{name}.yaml"
    f.write_text(raw if isinstance(raw, str) else yaml.safe_dump(raw), encoding="utf-8")
    return f


def _refusal(tmp_path: Path, raw: dict | str) -> tuple[Path, str]:
    f = _write(tmp_path, raw)
    with pytest.raises(ProfileError) as ei:
        load_profile(f)
    msg = str(ei.value)
    assert "\n" not in msg, msg
    assert msg.startswith(f"profile {f}: "), msg
    return f, msg


# A complete fixed_point section (Loihi 2's values).
_FIXED = {"threshold_mant_bits": 17, "bias_mant_bits": 13, "bias_exp_bits": 3, "decay_bits": 12, "act_shift_bits": 6,
          "threshold_shift_bits": 6, "decay_u_offset": 1, "decay_v_offset": 0,
          "graded_spike_bits": 24}


def _set(section: str | None, key: str, value):
    def mutate(raw: dict) -> None:
        (raw.setdefault(section, {}) if section else raw)[key] = value
    return mutate


# (mutation, the text that must appear: "key = value ..." and what is allowed)
REFUSED = {
    # energies: positive, finite, below 1 mJ per event (1 kJ per inference)
    "negative energy": (_set("energy", "e_synop_pj", -1.0),
                        "energy.e_synop_pj = -1.0 is out of range", "> 0 and <= 1e+09 pJ"),
    "zero energy": (_set("energy", "e_mac_pj", 0), "energy.e_mac_pj = 0 is out of range", "> 0"),
    "energy 1e300": (_set("energy", "e_synop_pj", 1e300), "energy.e_synop_pj = 1e+300 is out of range",
                     "<= 1e+09 pJ"),
    "energy above 1 J": (_set("energy", "e_op_uj", 2.0e6), "energy.e_op_uj = 2000000.0 is out of range",
                         "<= 1000 uJ"),
    "energy in nJ above bound": (_set("energy", "e_neuron_update_nj", 1.5e6),
                                 "energy.e_neuron_update_nj = 1500000.0 is out of range", "<= 1e+06 nJ"),
    "inference above 1 kJ": (_set("energy", "e_inference_uj", 2.0e9), "energy.e_inference_uj = 2000000000.0",
                             "<= 1e+09 uJ"),
    "nan energy": (_set("energy", "e_ac_pj", float("nan")), "energy.e_ac_pj = nan is out of range", "finite"),
    "inf energy": (_set("energy", "e_ac_pj", float("inf")), "energy.e_ac_pj = inf is out of range", "finite"),
    "-inf energy": (_set("energy", "e_ac_pj", float("-inf")), "energy.e_ac_pj = -inf is out of range", "finite"),
    "negative range end": (_set("energy", "e_hop_pj", {"min": -3.0, "max": 4.0}),
                           "energy.e_hop_pj.min = -3.0 is out of range", "> 0"),
    "nan range end": (_set("energy", "e_hop_pj", {"min": 3.0, "max": float("nan")}),
                      "energy.e_hop_pj.max = nan is out of range", "finite"),
    # powers
    "negative power": (_set("energy", "static_mw", -5.0), "energy.static_mw = -5.0 is out of range", "> 0"),
    "power above 10 kW": (_set("energy", "tdp_w", 1.0e6), "energy.tdp_w = 1000000.0 is out of range",
                          "<= 10000 W"),
    # counts: integers >= 1
    "cores_per_chip 0": (_set("limits", "cores_per_chip", 0), "limits.cores_per_chip = 0 is out of range",
                         "an integer in [1, 1e+12]"),
    "negative count": (_set("limits", "neurons_per_core", -1024), "limits.neurons_per_core = -1024 is out of range",
                       "[1, 1e+12]"),
    "non-integer count": (_set("limits", "fan_in", 2.5), "limits.fan_in = 2.5 is not an integer", "[1, 1e+12]"),
    "bool count": (_set("limits", "fan_out", True), "limits.fan_out = True is not an integer", "[1, 1e+12]"),
    "count in a limit mapping": (_set("limits", "cores_per_chip", {"value": 0, "note": "x"}),
                                 "limits.cores_per_chip.value = 0 is out of range", "[1, 1e+12]"),
    "count in a per-core list": (_set("limits", "kernel_memory_per_core", [16384, 0]),
                                 "limits.kernel_memory_per_core[1] = 0 is out of range", "[1, 1e+12]"),
    "per-core list not a list": (_set("limits", "kernel_memory_per_core", 16384),
                                 "limits.kernel_memory_per_core = 16384 is not a list", "a list of integers"),
    "fact count 0": (_set("facts", "x86_cores_count", 0), "facts.x86_cores_count = 0 is out of range", "[1, 1e+12]"),
    # bit widths in [1, 64]
    "weight_bits 0": (_set("limits", "weight_bits", 0), "limits.weight_bits = 0 is out of range", "[1, 64] bits"),
    "state_bits 65": (_set("limits", "state_bits", 65), "limits.state_bits = 65 is out of range", "[1, 64] bits"),
    # delays: integers >= 0
    "negative delay": (_set("limits", "max_delay", -1), "limits.max_delay = -1 is out of range",
                       "[0, 1e+06] timesteps"),
    # sizes
    "negative memory": (_set("limits", "memory_per_core_kb", -128), "limits.memory_per_core_kb = -128 is out of range",
                        "> 0 and <= 1e+10 KB"),
    "zero memory": (_set("limits", "memory_per_chip_mb", 0.0), "limits.memory_per_chip_mb = 0.0 is out of range",
                    "> 0"),
    # fractions, percentages, other fact families
    "fraction 1.5": (_set("facts", "utilisation_frac", 1.5), "facts.utilisation_frac = 1.5 is out of range",
                     "in [0, 1]"),
    "negative fraction": (_set("facts", "sparsity_frac", -0.1), "facts.sparsity_frac = -0.1 is out of range",
                          "in [0, 1]"),
    "percent 150": (_set("facts", "load_pct", 150), "facts.load_pct = 150 is out of range", "in [0, 100] %"),
    "negative frequency": (_set("facts", "clock_mhz", -100), "facts.clock_mhz = -100 is out of range", "> 0"),
    "negative time": (_set("facts", "timestep_ms", -1), "facts.timestep_ms = -1 is out of range", "> 0"),
    "fact list element": (_set("facts", "tdp_options_w", [15, -60]), "facts.tdp_options_w[1] = -60 is out of range",
                          "> 0"),
    "string fact": (_set("facts", "timestep_ms", "one"), "facts.timestep_ms = 'one' is not a number", "> 0"),
    # process, voltage
    "process 0 nm": (_set(None, "process_nm", 0), "process_nm = 0 is out of range", "> 0 and <= 10000 nm"),
    "negative voltage": (_set(None, "voltage_v", -0.9), "voltage_v = -0.9 is out of range", "<= 100 V"),
    # fixed vocabularies
    "bad evidence grade": (_set(None, "evidence", "rumour"), "evidence = 'rumour' is not allowed",
                           "one of measured, simulated, derived, vendor, unverified"),
    "bad per-value evidence": (_set("energy", "e_synop_pj", {"value": 1.0, "evidence": "verified"}),
                               "energy.e_synop_pj.evidence = 'verified' is not allowed", "one of measured"),
    "bad limit evidence": (_set("limits", "weight_bits", {"value": 8, "evidence": "verified"}),
                           "limits.weight_bits.evidence = 'verified' is not allowed", "one of measured"),
    "bad scope": (_set(None, "scope", "some"), "scope = 'some' is not allowed", "one of per-term, all-in"),
    "bad kind": (_set(None, "kind", "fpga"), "kind = 'fpga' is not allowed", "one of neuromorphic, ann"),
    # wrong types
    "string energy": (_set("energy", "e_mac_pj", "4.6"), "energy.e_mac_pj = '4.6' is not a number",
                      "write 4.6 (unquoted)"),
    "string count": (_set("limits", "cores_per_chip", "128"), "limits.cores_per_chip = '128' is not an integer",
                     "[1, 1e+12]"),
    "list energy": (_set("energy", "e_mac_pj", [1.0, 2.0]), "energy.e_mac_pj = [1.0, 2.0] is not a number", "pJ"),
    "bool as text": (_set(None, "description", True), "description = True is not allowed", "a non-empty string"),
    "number as source": (_set(None, "source", 5), "source = 5 is not allowed", "a string or a list of strings"),
    "bool flag as text": (_set("limits", "supports_weight_sharing", "yes"),
                          "limits.supports_weight_sharing = 'yes' is not allowed", "true or false"),
    "neuron models not strings": (_set("limits", "neuron_models", [1, 2]), "limits.neuron_models = [1, 2] is not allowed",
                                  "a string or a list of strings"),
    "energy not a mapping": (_set(None, "energy", [1.0]), "energy = [1.0] is not allowed", "a mapping"),
    # ranges [low, high]
    "min > max": (_set("energy", "e_hop_pj", {"min": 4.0, "max": 3.0}), "energy.e_hop_pj: min 4.0 > max 3.0",
                  "min <= max"),
    "value outside range": (_set("energy", "e_hop_pj", {"value": 5.0, "min": 3.0, "max": 4.0}),
                            "energy.e_hop_pj: value 5.0 outside [min, max]", "[3.0, 4.0]"),
    "weight_bits_min > weight_bits": (lambda r: r["limits"].update(weight_bits=8, weight_bits_min=16),
                                      "limits.weight_bits_min = 16 is larger than limits.weight_bits = 8", "low <= high"),
    "per core > per chip": (lambda r: r["limits"].update(neurons_per_core=2048, neurons_per_chip=1024),
                            "limits.neurons_per_core = 2048 is larger than limits.neurons_per_chip = 1024", "low"),
    "memory per core > per chip": (lambda r: r["limits"].update(memory_per_core_kb=4096, memory_per_chip_mb=1),
                                   "limits.memory_per_core_kb = 4096 is larger than limits.memory_per_chip_mb = 1",
                                   "low <= high"),
    "fact min > max": (lambda r: r.update(facts={"sync_min_ns": 500, "sync_max_ns": 100}),
                       "facts.sync_min_ns = 500 is larger than facts.sync_max_ns = 100", "low <= high"),
    # unknown keys: refused with the valid names (and the closest one)
    "typo of a limit": (_set("limits", "fan_inn", 4), "limits.fan_inn: unknown key (did you mean 'fan_in'?)",
                        "known: neurons_per_core"),
    "typo of a section": (_set(None, "limit", {}), "limit: unknown key (did you mean 'limits'?)", "known: name"),
    "typo of an energy term": (_set("energy", "e_synopp_pj", 1.0),
                               "energy.e_synopp_pj: unknown energy term 'e_synopp' (did you mean 'e_synop'?)",
                               "known: e_mac"),
    "typo in a value mapping": (_set("energy", "e_mac_pj", {"valeu": 1.0}),
                                "energy.e_mac_pj.valeu: unknown key (did you mean 'value'?)", "allowed: value, min"),
    "energy without unit": (_set("energy", "e_mac", 1.0), "energy.e_mac: missing unit suffix", "_pj"),
    "fact without unit": (_set("facts", "rate", 20), "facts.rate: missing unit suffix", "_hz"),
    # required / provenance
    "missing source": (lambda r: r.pop("source"), "source: missing (required", "a string or a list of strings"),
    "empty source list": (_set(None, "source", []), "source: missing (required", "string"),
    "unverified with a number": (_set("energy", "e_synop_pj", {"value": 1.0, "evidence": "unverified"}),
                                 "energy.e_synop_pj: an unverified figure must be null", "note"),
    "name differs from file": (_set(None, "name", "other"), "name = 'other' must equal the file name 'my_chip'", ""),
    "per-term energy in all-in": (lambda r: r.update(scope="all-in", energy={"e_synop_allin_pj": 26.0,
                                                                            "e_neuron_update_pj": 50.0}),
                                  "energy.e_neuron_update_pj: an all-in profile cannot carry per-term", ""),
    "duplicate term": (lambda r: r["energy"].update(e_synop_nj=0.001), ": duplicate term (already given as "
                       "energy.e_synop_", "energy.e_synop_"),
    # neuron capabilities and fixed-point formats
    "full_leak as text": (_set("limits", "full_leak", "yes"), "limits.full_leak = 'yes' is not allowed",
                          "true or false"),
    "full_leak reason not text": (_set("limits", "full_leak", {"value": True, "note": 5}),
                                  "limits.full_leak.note = 5 is not allowed", "a non-empty string"),
    "typo of a fixed_point key": (_set("fixed_point", "vth_mant_bits", 17),
                                  "fixed_point.vth_mant_bits: unknown key", "known: threshold_mant_bits"),
    "fixed_point width 0": (_set("fixed_point", "decay_bits", 0), "fixed_point.decay_bits = 0 is out of range",
                            "[1, 64] bits"),
    "fixed_point offset negative": (_set("fixed_point", "decay_u_offset", -1),
                                    "fixed_point.decay_u_offset = -1 is out of range", "[0, 64]"),
    "incomplete fixed_point": (_set("fixed_point", "decay_bits", 12),
                               "fixed_point.threshold_mant_bits: missing or null: a fixed_point section needs every",
                               "limits.weight_bits, limits.state_bits"),
    "fixed_point without state_bits": (lambda r: r.update(fixed_point=dict(_FIXED), limits={"weight_bits": 8}),
                                       "limits.state_bits: missing or null", "a fixed_point section"),
}


@pytest.mark.parametrize("case", list(REFUSED))
def test_each_rule_class_refused_with_key_value_and_range(tmp_path, case):
    mutate, key_value, allowed = REFUSED[case]
    raw = _base()
    mutate(raw)
    _, msg = _refusal(tmp_path, raw)
    assert key_value in msg, msg
    assert allowed in msg, msg


def test_message_format_of_the_issue(tmp_path):
    raw = _base()
    raw["energy"]["e_synop_pj"] = -1.0
    f, msg = _refusal(tmp_path, raw)
    assert msg == (f"profile {f}: energy.e_synop_pj = -1.0 is out of range "
                   "(must be a finite number > 0 and <= 1e+09 pJ)")


def test_yaml_text_1e300_refused_with_a_hint(tmp_path):
    """PyYAML reads ``1e300`` (no '.', no sign) as a string; ``1.0e+300`` as a float: both are refused."""
    text = yaml.safe_dump(_base())
    _, msg = _refusal(tmp_path, text.replace("e_synop_pj: 1.0", "e_synop_pj: 1e300"))
    assert "energy.e_synop_pj = '1e300' is not a number" in msg and "write 1.0e+300" in msg, msg
    _, msg = _refusal(tmp_path, text.replace("e_synop_pj: 1.0", "e_synop_pj: 1.0e+300"))
    assert "energy.e_synop_pj = 1e+300 is out of range" in msg, msg
    _, msg = _refusal(tmp_path, text.replace("e_synop_pj: 1.0", "e_synop_pj: .nan"))
    assert "energy.e_synop_pj = nan is out of range" in msg, msg


def test_all_problems_are_listed_and_the_message_counts_the_rest():
    raw = _base()
    raw["energy"]["e_synop_pj"] = -1.0
    raw["limits"]["cores_per_chip"] = 0
    raw["evidence"] = "rumour"
    problems = validate_profile(raw)
    assert [p.key for p in problems] == ["evidence", "energy.e_synop_pj", "limits.cores_per_chip"]
    with pytest.raises(ProfileError, match=r"^profile x\.yaml: evidence = 'rumour' .* \(and 2 more problems\)$"):
        check_profile(raw, where="x.yaml")


def test_empty_or_non_mapping_file(tmp_path):
    _, msg = _refusal(tmp_path, "")
    assert "the file is empty" in msg
    _, msg = _refusal(tmp_path, "- 1\n- 2\n")
    assert "must hold a mapping" in msg and "list" in msg
    _, msg = _refusal(tmp_path, "name: [unclosed\n")
    assert "not valid YAML" in msg


@pytest.mark.parametrize("mutate", [
    _set("energy", "e_synop_pj", None),                                  # not published
    _set("energy", "e_synop_pj", {"value": None, "evidence": "unverified", "note": "not located"}),
    _set("energy", "e_synop_pj", {"value": 23.6, "min": 23.6, "max": None}),  # lower bound only
    _set("energy", "e_sram_access_per_size_bit_pj", 1.09e-5),            # tiny but positive
    _set("energy", "e_spike_mj", 1.0),                                   # exactly the 1 mJ bound
    _set("energy", "e_inference_uj", 6.6),
    _set("energy", "static_mw", None),
    _set("limits", "cores_per_chip", None),                              # unknown limit
    _set("limits", "max_delay", 0),                                      # no programmable delay
    _set("limits", "weight_bits", 64),
    _set("limits", "weight_bits", {"value": 1, "note": "binary"}),
    _set("facts", "utilisation_frac", 0.0),
    _set("facts", "load_pct", 100),
    _set("facts", "peak_sparse_int8_tops", 275),
    _set(None, "nir_nodes", []),
    _set(None, "excludes", "one string"),
    _set(None, "process_nm", None),
])
def test_valid_edge_values_accepted(tmp_path, mutate):
    raw = _base()
    mutate(raw)
    assert validate_profile(raw) == []
    assert load_profile(_write(tmp_path, raw)).name == "my_chip"


@pytest.mark.parametrize("path", SHIPPED, ids=[p.stem for p in SHIPPED])
def test_every_shipped_profile_passes(path):
    raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    assert validate_profile(raw, stem=path.stem) == []
    assert isinstance(load_profile(path), HardwareProfile)


def test_every_profile_found_by_name_loads():
    names = list_profiles()
    assert len(names) >= len(SHIPPED) > 0
    for n in names:
        assert load_profile(n).name == n


def test_schema_covers_every_limit_field():
    assert set(limit_rules()) == {f.name for f in fields(Limits)} - {"sources", "notes"}
    assert all(rule is not None for rule in limit_rules().values())


def test_schema_covers_every_fixed_point_field():
    from_limits = {"weight_bits", "state_bits", "max_delay", "sources"}
    assert set(fixed_point_rules()) == {f.name for f in fields(FixedPoint)} - from_limits
    assert set(_FIXED) == set(fixed_point_rules())
    assert from_limits - {"sources"} <= set(limit_rules())


def test_complete_fixed_point_section_loads(tmp_path):
    raw = _base()
    raw["limits"].update(weight_bits=8, state_bits=24)
    raw["fixed_point"] = dict(_FIXED, decay_bits={"value": 12, "source": "s"})
    fp = load_profile(_write(tmp_path, raw)).fixed_point
    assert fp is not None and fp.decay_bits == 12 and fp.sources["decay_bits"] == "s" and fp.max_delay is None
    assert load_profile(_write(tmp_path, _base())).fixed_point is None


def test_every_quantity_bound_is_finite_and_every_unit_has_a_rule():
    for rule in QUANTITIES.values():
        assert rule.le is not None and math.isfinite(rule.le)
        assert (rule.gt is None) != (rule.ge is None)
    assert {u.quantity for u in UNITS.values()} <= set(QUANTITIES)
    assert rule_for("energy.e_synop_pj").le == 1e-3 and rule_for("energy.e_inference_pj").le == 1e3
    assert all(rule is not None for _, rule in SCHEMA)


def test_readme_table_matches_the_schema():
    readme = ROOT / "hardware_profiles" / "README.md"
    if not readme.is_file():
        pytest.skip("no source checkout")
    assert rules_markdown() in readme.read_text(encoding="utf-8"), \
        "hardware_profiles/README.md is out of date: paste neuroposter.profiling.schema.rules_markdown()"


def test_validation_is_pure():
    raw = _base()
    raw["limits"]["cores_per_chip"] = 0
    before = copy.deepcopy(raw)
    validate_profile(raw)
    assert raw == before


def test_from_mapping_validates_too():
    raw = _base()
    raw["energy"]["e_synop_pj"] = -1.0
    with pytest.raises(ProfileError, match=r"energy\.e_synop_pj = -1\.0"):
        HardwareProfile.from_mapping(raw, where="inline")


def test_bad_profile_is_a_usage_error(tmp_path):
    raw = _base()
    raw["limits"]["cores_per_chip"] = 0
    with pytest.raises(UsageError):
        load_profile(_write(tmp_path, raw))
    assert issubclass(ProfileError, ValueError)  # older callers catch ValueError
    with pytest.raises(UnknownProfileError) as ei:
        load_profile("no_such_chip")
    assert isinstance(ei.value, KeyError) and isinstance(ei.value, UsageError)
    assert str(ei.value).startswith("unknown hardware profile 'no_such_chip'; available: ")
    with pytest.raises(ProfileFileNotFoundError) as fe:
        load_profile(tmp_path / "missing.yaml")
    assert isinstance(fe.value, FileNotFoundError) and isinstance(fe.value, UsageError)


def test_user_profile_folder_is_validated(tmp_path, monkeypatch):
    raw = _base()
    raw["limits"]["cores_per_chip"] = 0
    _write(tmp_path, raw)
    monkeypatch.setenv("NEUROPOSTER_PROFILES", str(tmp_path))
    assert "my_chip" in list_profiles()
    with pytest.raises(ProfileError, match=r"my_chip\.yaml: limits\.cores_per_chip = 0 is out of range"):
        load_profile("my_chip")


# ------------------------------------------------------------------------------------------------ CLI


def _cli(argv: list[str]) -> int:
    from neuroposter.cli import main

    try:
        return main(argv)
    except SystemExit as exc:  # argparse-style exits
        return int(exc.code or 0)


def _bad_profile(tmp_path: Path) -> Path:
    raw = _base()
    raw["energy"]["e_synop_pj"] = -1.0
    return _write(tmp_path, raw)


def test_cli_list_profiles_with_a_bad_user_profile_exits_2(tmp_path, monkeypatch, capsys):
    bad = _bad_profile(tmp_path)
    monkeypatch.setenv("NEUROPOSTER_PROFILES", str(tmp_path))
    assert _cli(["report", "--list-profiles"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    assert str(bad) in err[0] and "energy.e_synop_pj" in err[0] and "-1.0" in err[0], err[0]
    assert err[0].startswith("neuroposter: error: profile "), err[0]


def test_cli_list_profiles_with_bad_profiles_path_exits_2(tmp_path, capsys):
    bad = _bad_profile(tmp_path)
    assert _cli(["report", "--list-profiles", "--profiles", str(bad)]) == 2
    err = capsys.readouterr().err
    assert str(bad) in err and "energy.e_synop_pj = -1.0" in err


def test_cli_list_profiles_still_works(capsys):
    assert _cli(["report", "--list-profiles"]) == 0
    assert "loihi2" in capsys.readouterr().out


# ----------------------------------------------------------------------------------------- properties

# The documented bound of one event's energy (1 mJ), in each energy unit the `energy` section accepts.
EVENT_BOUND = {"fj": 1e12, "pj": 1e9, "nj": 1e6, "uj": 1e3, "mj": 1.0}
SCALE_TO_PJ = {"fj": 1e-3, "pj": 1.0, "nj": 1e3, "uj": 1e6, "mj": 1e9}
_unit = st.sampled_from(sorted(EVENT_BOUND))
_term = st.sampled_from(["e_synop", "e_mac", "e_ac", "e_neuron_update", "e_spike", "e_dram_read"])


@st.composite
def _positive_within(draw):
    unit = draw(_unit)
    bound = EVENT_BOUND[unit]
    value = draw(st.one_of(st.floats(min_value=0.0, max_value=bound, exclude_min=True),
                           st.integers(min_value=1, max_value=int(bound)) if bound >= 1 else st.just(1)))
    return unit, value


@settings(max_examples=200, deadline=None)
@given(_term, _positive_within())
def test_any_finite_positive_energy_within_bounds_is_accepted(term, unit_value):
    unit, value = unit_value
    raw = _base()
    raw["energy"] = {f"{term}_{unit}": value}
    assert validate_profile(raw) == []
    p = HardwareProfile.from_mapping(raw)
    assert p.energy[f"{term}_pj"] == pytest.approx(value * SCALE_TO_PJ[unit], rel=1e-12)


@settings(max_examples=200, deadline=None)
@given(_term, _unit, st.one_of(st.floats(max_value=0.0), st.integers(max_value=0), st.just(float("nan"))))
def test_any_non_positive_energy_is_refused(term, unit, value):
    raw = _base()
    raw["energy"] = {f"{term}_{unit}": value}
    problems = validate_profile(raw)
    assert [p.key for p in problems] == [f"energy.{term}_{unit}"]
    assert "is out of range" in problems[0].reason


@settings(max_examples=100, deadline=None)
@given(_term, _unit, st.floats(min_value=1.0, allow_nan=False))
def test_any_energy_above_the_bound_is_refused(term, unit, factor):
    value = EVENT_BOUND[unit] * factor * (1 + 1e-9)
    raw = _base()
    raw["energy"] = {f"{term}_{unit}": value}
    problems = validate_profile(raw)
    assert [p.key for p in problems] == [f"energy.{term}_{unit}"]
    assert "is out of range" in problems[0].reason
