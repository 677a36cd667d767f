"""Hardware-profile schema: one declarative table of what every key may hold, and the pure validator.

Every value of a profile is checked against a :class:`Rule` (type, unit family, range). Which rule applies is
decided in one place, :data:`SCHEMA` (dotted key pattern -> rule, first match wins); the range of each unit
family (energy, power, memory size, time, ...) is decided in one place, :data:`QUANTITIES`; the unit a key
is written in comes from its suffix (:data:`UNITS`: ``_pj``, ``_mw``, ``_kb``, ``_mhz``, ...). Cross-key rules
(required keys, ``min <= max``, ordered pairs such as ``weight_bits_min <= weight_bits``, all-in versus
per-term, a ``fixed_point`` section given whole) are small tables too.

:func:`validate_profile` is pure: a parsed YAML document in, a list of :class:`Problem` out (empty: valid).
:func:`check_profile` raises :class:`ProfileError` (a :class:`~neuroposter.errors.UsageError`: the CLI exits
with code 2) with a one-line message naming the file, the dotted key, the value and what is allowed::

    profile my_chip.yaml: energy.e_synop_pj = -1.0 is out of range (must be a finite number > 0 and <= 1e+09 pJ)

Example:
    >>> validate_profile({"name": "x", "kind": "ann", "evidence": "derived", "scope": "per-term",
    ...                   "source": "s", "limits": {"cores_per_chip": 0}})[0].key
    'limits.cores_per_chip'
"""

from __future__ import annotations

import difflib
import math
import re
from dataclasses import dataclass, replace
from decimal import Decimal
from types import MappingProxyType
from typing import Any, Mapping

from neuroposter.errors import UsageError

__all__ = [
    "EVIDENCE",
    "SCOPES",
    "KINDS",
    "ENERGY_TERMS",
    "POWER_TERMS",
    "ALL_IN_TERMS",
    "UNITS",
    "QUANTITIES",
    "SCHEMA",
    "REQUIRED",
    "ORDERED_PAIRS",
    "FIXED_POINT_REQUIRES",
    "SPLITS",
    "ProfileError",
    "Unit",
    "Rule",
    "Problem",
    "split_unit",
    "rule_for",
    "limit_rules",
    "fixed_point_rules",
    "validate_profile",
    "check_profile",
    "rules_markdown",
    "allowed",
]

# ---------------------------------------------------------------------------------------- vocabularies

EVIDENCE: tuple[str, ...] = ("measured", "simulated", "derived", "vendor", "unverified")
SCOPES: tuple[str, ...] = ("per-term", "all-in")
KINDS: tuple[str, ...] = ("neuromorphic", "ann")
# Whether the chip can split a limit exactly (``limits.fan_in_split`` / ``limits.fan_out_split``).
SPLITS: tuple[str, ...] = ("exact", "none")
# What ``limits.fan_out`` counts: postsynaptic neurons per neuron, destination cores per neuron (TrueNorth's one
# axon per neuron reaches one core), or destination populations (cores) per population (Speck).
FAN_OUT_UNITS: tuple[str, ...] = ("neuron", "core", "population")

# Energy terms (per event) a profile may give; the YAML key is the term plus an energy unit suffix
# (_fj, _pj, _nj, _uj, _mj), normalised to _pj. Meanings are what estimate_energy multiplies them with.
ENERGY_TERMS: Mapping[str, str] = MappingProxyType({
    "e_mac": "one multiply-accumulate at the profile's precision",
    "e_ac": "one accumulate (addition) at the profile's precision",
    "e_add": "one addition (Lemaire-style term)",
    "e_mul": "one multiplication (Lemaire-style term)",
    "e_flop": "one floating-point operation (peak-derived lower bound: power / peak FLOP/s)",
    "e_op": "one synaptic or neuron operation on a conventional processor (keras-spiking device table)",
    "e_synop": "one synaptic operation (a spike reaching one synapse), per-term",
    "e_synop_allin": "one synaptic event including everything (leakage, memory, routing, neurons): all-in",
    "e_neuron_update": "one neuron state update of a driven (active) neuron",
    "e_neuron_update_idle": "one neuron state update of an idle (inactive) neuron",
    "e_spike": "emitting one spike (within a tile/core)",
    "e_hop": "moving one spike one router hop",
    "e_syn_update_learning": "one synaptic weight update with on-chip learning",
    "e_sram_read_8kb": "one 64-bit read from an 8 KB SRAM",
    "e_sram_read_32kb": "one 64-bit read from a 32 KB SRAM",
    "e_sram_read_1mb": "one 64-bit read from a 1 MB SRAM",
    "e_dram_read": "one 64-bit DRAM read",
    "e_sram_access_base": "Lemaire linear SRAM model: constant per access",
    "e_sram_access_per_size_bit": "Lemaire linear SRAM model: per access, per bit of memory size",
    "e_mem_per_bit": "moving one bit to/from memory (STEP-style flat cost)",
    "e_inference": "one whole inference, measured on a named task (informational, all-in)",
})
# Power terms; unit suffixes _uw, _mw, _w, normalised to _mw.
POWER_TERMS: Mapping[str, str] = MappingProxyType({
    "static": "static (leakage / idle) power of one chip",
    "dynamic": "dynamic power at a named operating point",
    "resting": "resting power of the processor",
    "total_min": "lowest total power reported",
    "tdp": "board / module power limit (thermal design power)",
})
# Energy terms an all-in profile may carry (everything else is a per-term extra and is refused there).
ALL_IN_TERMS: tuple[str, ...] = ("e_synop_allin", "e_inference", "e_op", "e_flop")


class ProfileError(UsageError, ValueError):
    """A hardware profile file is invalid; the one-line message names the file, the key and the value.

    A :class:`~neuroposter.errors.UsageError` (the CLI exits with code 2) and, for older callers, a ValueError.
    """


# --------------------------------------------------------------------------------------------- units


@dataclass(frozen=True)
class Unit:
    """A unit suffix: its family, its size as a power of ten of the family's base unit, and its label."""

    quantity: str
    exp: int
    label: str

    @property
    def scale(self) -> float:
        """Size of one unit in the family's base unit (J, W, bytes, s, Hz, m, ...)."""
        return 10.0 ** self.exp


# Unit suffixes (the key ends in "_" + suffix); base units: J, W, bytes, s, Hz, m, mm^2, V, op/s.
UNITS: Mapping[str, Unit] = MappingProxyType({
    "fj": Unit("energy", -15, "fJ"), "pj": Unit("energy", -12, "pJ"), "nj": Unit("energy", -9, "nJ"),
    "uj": Unit("energy", -6, "uJ"), "mj": Unit("energy", -3, "mJ"),
    "uw": Unit("power", -6, "uW"), "mw": Unit("power", -3, "mW"), "w": Unit("power", 0, "W"),
    "bytes": Unit("size", 0, "bytes"), "kb": Unit("size", 3, "KB"), "mb": Unit("size", 6, "MB"),
    "gb": Unit("size", 9, "GB"),
    "ns": Unit("time", -9, "ns"), "us": Unit("time", -6, "us"), "ms": Unit("time", -3, "ms"), "s": Unit("time", 0, "s"),
    "hz": Unit("frequency", 0, "Hz"), "khz": Unit("frequency", 3, "kHz"), "mhz": Unit("frequency", 6, "MHz"),
    "ghz": Unit("frequency", 9, "GHz"),
    "nm": Unit("length", -9, "nm"),
    "mm2": Unit("area", 0, "mm^2"),
    "v": Unit("voltage", 0, "V"),
    "tops": Unit("throughput", 12, "TOPS"), "tflops": Unit("throughput", 12, "TFLOPS"),
    "gsops_per_w": Unit("efficiency", 0, "GSOPS/W"),
    "fps": Unit("rate", 0, "fps"),
    "bits": Unit("bits", 0, "bits"),
    "count": Unit("count", 0, ""),
    "pct": Unit("percent", 0, "%"),
    "frac": Unit("fraction", 0, ""),
})
_SUFFIXES = tuple(sorted(UNITS, key=len, reverse=True))  # longest first: "_mhz" before "_hz"


def split_unit(key: str, quantity: str | None = None) -> tuple[str, Unit] | None:
    """Splits ``key`` into (stem, unit) by its unit suffix; None when it has none (of ``quantity``, if given)."""
    for suffix in _SUFFIXES:
        unit = UNITS[suffix]
        if (quantity is None or unit.quantity == quantity) and key.endswith("_" + suffix) and len(key) > len(suffix) + 1:
            return key[: -len(suffix) - 1], unit
    return None


def _suffixes(quantity: str) -> str:
    return ", ".join("_" + s for s, u in UNITS.items() if u.quantity == quantity)


# --------------------------------------------------------------------------------------------- rules


@dataclass(frozen=True)
class Rule:
    """What one value may be.

    Attributes:
        type: ``number``, ``integer``, ``bool``, ``text`` (non-empty string), ``texts`` (a string or a list of
            strings), ``choice`` (one of ``choices``), ``name`` (a profile name), ``mapping`` (a section) or
            ``by_unit`` (the rule of the quantity named by the key's unit suffix; ``facts``).
        quantity: unit family (a key of :data:`QUANTITIES`); the key's suffix must be a unit of it, if it has one.
        gt, ge, le: exclusive lower, inclusive lower and inclusive upper bound, in the family's base unit.
        choices: allowed strings of a ``choice``.
        nullable: ``null`` is allowed (unknown / not published).
        many: a list of such values is allowed too (each element is checked).
        list_only: only a list of such values is allowed (e.g. per-core memory sizes).
        label: the unit printed when the key carries no unit suffix (e.g. ``timesteps``).
    """

    type: str
    quantity: str | None = None
    gt: float | None = None
    ge: float | None = None
    le: float | None = None
    choices: tuple[str, ...] = ()
    nullable: bool = True
    many: bool = False
    list_only: bool = False
    label: str = ""


# One rule per unit family; bounds in the base unit (J, W, bytes, s, Hz, m, mm^2, V, op/s). The upper bounds are
# sanity bounds: several orders of magnitude above any real chip, low enough to refuse nonsense like 1e300.
QUANTITIES: Mapping[str, Rule] = MappingProxyType({
    "energy": Rule("number", "energy", gt=0, le=1e3),            # 1 kJ (whole inferences, facts)
    "power": Rule("number", "power", gt=0, le=1e4),              # 10 kW
    "size": Rule("number", "size", gt=0, le=1e13),               # 10 TB
    "time": Rule("number", "time", gt=0, le=86400),              # one day
    "frequency": Rule("number", "frequency", gt=0, le=1e12),     # 1 THz
    "length": Rule("number", "length", gt=0, le=1e-5),           # 10 um (process nodes)
    "area": Rule("number", "area", gt=0, le=1e5),                # 1e5 mm^2 (larger than a wafer-scale die)
    "voltage": Rule("number", "voltage", gt=0, le=100),          # 100 V
    "throughput": Rule("number", "throughput", gt=0, le=1e18),   # 1e6 TOPS
    "efficiency": Rule("number", "efficiency", gt=0, le=1e6),    # 1e6 GSOPS/W
    "rate": Rule("number", "rate", gt=0, le=1e9),                # 1e9 fps
    "bits": Rule("integer", "bits", ge=1, le=64, label="bits"),
    "count": Rule("integer", "count", ge=1, le=1e12),
    "percent": Rule("number", "percent", ge=0, le=100),
    "fraction": Rule("number", "fraction", ge=0, le=1),
    "delay": Rule("integer", "delay", ge=0, le=1e6, label="timesteps"),
})
_Q = QUANTITIES
_TEXT = Rule("text")
_TEXTS = Rule("texts")
_MAPPING = Rule("mapping")
_COUNT = _Q["count"]
_COUNTS = replace(_Q["count"], many=True, list_only=True)
_OFFSET = Rule("integer", ge=0, le=64)   # a small constant added to a decay (Lava's ds_offset / dm_offset)

# Key pattern -> rule, first match wins; "*" matches within one dotted segment. The top-level and `limits`
# entries also define which keys exist there; `energy` keys are a term of ENERGY_TERMS / POWER_TERMS plus a
# unit suffix; `facts` keys are anything with a unit suffix.
SCHEMA: tuple[tuple[str, Rule], ...] = (
    ("name", Rule("name", nullable=False)),
    ("kind", Rule("choice", choices=KINDS, nullable=False)),
    ("description", _TEXT),
    ("evidence", Rule("choice", choices=EVIDENCE, nullable=False)),
    ("scope", Rule("choice", choices=SCOPES, nullable=False)),
    ("source", Rule("texts", nullable=False)),
    ("process_nm", _Q["length"]),
    ("voltage_v", _Q["voltage"]),
    ("precision", _TEXT),
    ("energy", _MAPPING),
    ("limits", _MAPPING),
    ("fixed_point", _MAPPING),
    ("system", _MAPPING),
    ("neuron", _MAPPING),
    ("nir_nodes", _TEXTS),
    ("facts", _MAPPING),
    ("notes", _TEXT),
    ("includes", _TEXTS),
    ("excludes", _TEXTS),
    # fields of a per-value mapping {value, min, max, source, evidence, note} (energy, limits, fixed_point)
    ("*.*.source", _TEXT),
    ("*.*.note", _TEXT),
    ("*.*.evidence", Rule("choice", choices=EVIDENCE)),
    # energy and power terms (value, min and max of a mapping follow the term's rule)
    ("energy.e_inference_*", _Q["energy"]),                      # a whole inference: <= 1 kJ
    ("energy.e_*", replace(_Q["energy"], le=1e-3)),              # one event (op, spike, read): <= 1 mJ
    ("energy.*", _Q["power"]),
    # limits (one entry per field of profiles.Limits)
    ("limits.neurons_per_core", _COUNT),
    ("limits.synapses_per_core", _COUNT),
    ("limits.cores_per_chip", _COUNT),
    ("limits.neurons_per_chip", _COUNT),
    ("limits.synapses_per_chip", _COUNT),
    ("limits.fan_in", _COUNT),
    ("limits.fan_out", _COUNT),
    ("limits.weight_bits", _Q["bits"]),
    ("limits.weight_bits_min", _Q["bits"]),
    ("limits.state_bits", _Q["bits"]),
    ("limits.max_delay", _Q["delay"]),
    ("limits.max_layers", _COUNT),
    ("limits.supports_weight_sharing", Rule("bool")),
    ("limits.neuron_models", _TEXTS),
    ("limits.inputs_per_chip", _COUNT),
    ("limits.outputs_per_chip", _COUNT),
    ("limits.memory_per_core_kb", _Q["size"]),
    ("limits.memory_per_chip_mb", _Q["size"]),
    ("limits.max_kernel_size", _COUNT),
    ("limits.max_channels", _COUNT),
    ("limits.kernel_memory_per_core", _COUNTS),
    ("limits.neuron_memory_per_core", _COUNTS),
    # neuron capabilities (null = unknown)
    ("limits.full_leak", Rule("bool")),
    # exact splits of a limit (fan-in into partial-sum relays, fan-out into neuron copies); null = unknown
    ("limits.fan_in_split", Rule("choice", choices=SPLITS)),
    ("limits.fan_out_split", Rule("choice", choices=SPLITS)),
    ("limits.fan_out_unit", Rule("choice", choices=FAN_OUT_UNITS)),
    # the multi-chip system the profile describes (profiles.SystemSpec); absent = one chip
    ("system.name", _TEXT),
    ("system.chips", _COUNT),
    ("system.source", _TEXT),
    ("system.note", _TEXT),
    ("system.evidence", Rule("choice", choices=EVIDENCE)),
    # the chip's neuron for fitted models (profiles.NeuronSpec; a CHIP_NEURONS name); other keys are its
    # numeric parameters (e.g. Xylo's dash_syn); absent = the first of limits.neuron_models a fitted model has
    ("neuron.model", _TEXT),
    ("neuron.source", _TEXT),
    ("neuron.note", _TEXT),
    ("neuron.evidence", Rule("choice", choices=EVIDENCE)),
    # fixed-point formats of the chip's integer neuron and synapse (one entry per field of profiles.FixedPoint
    # besides the widths already in limits: weight_bits, state_bits, max_delay)
    ("fixed_point.threshold_mant_bits", _Q["bits"]),
    ("fixed_point.bias_mant_bits", _Q["bits"]),
    ("fixed_point.bias_exp_bits", _Q["bits"]),
    ("fixed_point.decay_bits", _Q["bits"]),
    ("fixed_point.act_shift_bits", _Q["bits"]),
    ("fixed_point.threshold_shift_bits", _Q["bits"]),
    ("fixed_point.decay_u_offset", _OFFSET),
    ("fixed_point.decay_v_offset", _OFFSET),
    ("fixed_point.graded_spike_bits", _Q["bits"]),
    # informational numbers: the unit suffix names the quantity; a list of such numbers is allowed
    ("facts.*", Rule("by_unit", many=True)),
)

REQUIRED: tuple[str, ...] = ("name", "kind", "evidence", "scope", "source")
# (smaller, larger): both given -> smaller <= larger (compared in base units).
ORDERED_PAIRS: tuple[tuple[str, str], ...] = (
    ("limits.weight_bits_min", "limits.weight_bits"),
    ("limits.neurons_per_core", "limits.neurons_per_chip"),
    ("limits.synapses_per_core", "limits.synapses_per_chip"),
    ("limits.memory_per_core_kb", "limits.memory_per_chip_mb"),
)
# A `fixed_point` section describes one complete integer format: all its keys, and these limits, must be given.
FIXED_POINT_REQUIRES: tuple[str, ...] = ("limits.weight_bits", "limits.state_bits")
# Keys of a per-value mapping.
ENERGY_ENTRY_KEYS: tuple[str, ...] = ("value", "min", "max", "source", "evidence", "note")
LIMIT_ENTRY_KEYS: tuple[str, ...] = ("value", "source", "evidence", "note")
_NAME_RE = re.compile(r"^[a-z0-9][a-z0-9_\-]*$")
_PATTERNS = tuple((re.compile(re.escape(p).replace(r"\*", "[^.]*")), r) for p, r in SCHEMA)
_TOP_KEYS = tuple(p for p, _ in SCHEMA if "." not in p and "*" not in p)
_LIMIT_KEYS = tuple(p.split(".", 1)[1] for p, _ in SCHEMA if p.startswith("limits.") and "*" not in p)
_FIXED_POINT_KEYS = tuple(p.split(".", 1)[1] for p, _ in SCHEMA if p.startswith("fixed_point.") and "*" not in p)
_SYSTEM_KEYS = tuple(p.split(".", 1)[1] for p, _ in SCHEMA if p.startswith("system.") and "*" not in p)


def rule_for(key: str) -> Rule | None:
    """The rule of a dotted key (first matching :data:`SCHEMA` pattern), or None when no pattern matches."""
    for pattern, rule in _PATTERNS:
        if pattern.fullmatch(key):
            return rule
    return None


def limit_rules() -> dict[str, Rule]:
    """``limits`` key -> rule, in schema order (the fields of :class:`~neuroposter.profiling.profiles.Limits`)."""
    return {k: rule_for(f"limits.{k}") for k in _LIMIT_KEYS}  # type: ignore[misc]


def fixed_point_rules() -> dict[str, Rule]:
    """``fixed_point`` key -> rule, in schema order (fields of :class:`~neuroposter.profiling.profiles.FixedPoint`)."""
    return {k: rule_for(f"fixed_point.{k}") for k in _FIXED_POINT_KEYS}  # type: ignore[misc]


# ------------------------------------------------------------------------------------------- problems

_NO_VALUE: Any = type("_NoValue", (), {"__repr__": lambda self: "<no value>"})()


@dataclass(frozen=True)
class Problem:
    """One thing wrong with a profile: the dotted key, what is wrong, and the offending value (if any)."""

    key: str
    reason: str
    value: Any = _NO_VALUE

    def __str__(self) -> str:
        if self.value is _NO_VALUE:
            return f"{self.key}: {self.reason}" if self.key else self.reason
        return f"{self.key} = {_show(self.value)} {self.reason}"


def _show(value: Any) -> str:
    s = repr(value)
    s = " ".join(s.split())
    return s if len(s) <= 80 else s[:77] + "..."


def _fmt(x: float) -> str:
    return f"{x:g}"


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _unit_of(key: str, rule: Rule) -> Unit | None:
    if rule.quantity is None:
        return None
    leaf = key.rsplit(".", 1)[-1]
    split = split_unit(leaf, rule.quantity)
    return split[1] if split else None


def _exact(x: float, exp: int) -> Decimal:
    """``x * 10**exp`` in decimal (no binary rounding: 1e-3 J is exactly 1e9 pJ)."""
    return Decimal(repr(x)) * (Decimal(10) ** exp)


def _bounds(rule: Rule, unit: Unit | None) -> tuple[float | None, float | None, float | None]:
    """(gt, ge, le) expressed in the key's unit."""
    exp = unit.exp if unit is not None else 0

    def conv(x: float | None) -> float | None:
        return None if x is None else float(_exact(x, -exp))

    return conv(rule.gt), conv(rule.ge), conv(rule.le)


def allowed(rule: Rule, unit: Unit | None = None, *, with_null: bool = False) -> str:
    """What a rule allows, in words and in the key's unit (``must be a finite number > 0 and <= 1e+09 pJ``)."""
    t = rule.type
    null = ", or null" if with_null and rule.nullable else ""
    if t in ("number", "integer"):
        gt, ge, le = _bounds(rule, unit)
        what = "an integer" if t == "integer" else "a finite number"
        if rule.list_only:
            what = "a list of integers" if t == "integer" else "a list of finite numbers"
        if ge is not None and le is not None:
            rng = f"in [{_fmt(ge)}, {_fmt(le)}]"
        else:
            parts = ([f"> {_fmt(gt)}"] if gt is not None else []) + ([f">= {_fmt(ge)}"] if ge is not None else [])
            parts += [f"<= {_fmt(le)}"] if le is not None else []
            rng = " and ".join(parts)
        label = unit.label if unit is not None else rule.label
        many = " (or a list of them)" if rule.many and not rule.list_only else ""
        return f"must be {what} {rng}{' ' + label if label else ''}{many}{null}".replace("  ", " ")
    if t == "bool":
        return f"must be true or false{null}"
    if t == "text":
        return f"must be a non-empty string{null}"
    if t == "texts":
        return f"must be a string or a list of strings{null}"
    if t == "choice":
        return f"must be one of {', '.join(rule.choices)}{null}"
    if t == "name":
        return "must be lower-case letters, digits, '_' or '-', equal to the file name"
    if t == "mapping":
        return f"must be a mapping{null}"
    return "has no rule"


def _yaml_hint(value: Any) -> str:
    """A hint when a number arrived as text (quoted, or PyYAML's YAML 1.1 reading of ``1e300``)."""
    if not isinstance(value, str):
        return ""
    try:
        x = float(value)
    except ValueError:
        return ""
    if not math.isfinite(x):
        return ""
    plain = repr(x)
    mantissa, e, exponent = plain.partition("e")
    if e:  # YAML 1.1 floats need a '.' in the mantissa and a sign in the exponent
        plain = f"{mantissa if '.' in mantissa else mantissa + '.0'}e{exponent if exponent[0] in '+-' else '+' + exponent}"
    why = "unquoted; YAML 1.1 exponents need a '.' and a sign" if "e" in value.lower() else "unquoted"
    return f"; YAML read it as text: write {plain} ({why})"


def _check(key: str, value: Any, rule: Rule, unit: Unit | None) -> list[Problem]:
    """Checks one value against its rule (no cross-key checks)."""
    if value is None:
        return [] if rule.nullable else [Problem(key, f"is missing or null ({allowed(rule, unit)})")]
    if rule.list_only and not isinstance(value, list):
        return [Problem(key, f"is not a list ({allowed(rule, unit, with_null=True)})", value)]
    if rule.many and isinstance(value, list):
        if not value:
            return [Problem(key, f"is an empty list ({allowed(rule, unit)})", value)]
        one = replace(rule, many=False, list_only=False, nullable=False)
        return [p for i, x in enumerate(value) for p in _check(f"{key}[{i}]", x, one, unit)]
    rule = replace(rule, many=False)
    t = rule.type
    if t in ("number", "integer"):
        if not _is_number(value) or (t == "integer" and not isinstance(value, int)):
            what = "an integer" if t == "integer" else "a number"
            return [Problem(key, f"is not {what} (got {type(value).__name__}; {allowed(rule, unit, with_null=True)})"
                                 f"{_yaml_hint(value)}", value)]
        gt, ge, le = _bounds(rule, unit)
        bad = (isinstance(value, float) and not math.isfinite(value)) or (gt is not None and not value > gt) or (
            ge is not None and not value >= ge) or (le is not None and not value <= le)
        if bad:
            return [Problem(key, f"is out of range ({allowed(rule, unit)})", value)]
        return []
    ok = {
        "bool": lambda v: isinstance(v, bool),
        "text": lambda v: isinstance(v, str) and bool(v.strip()),
        "texts": lambda v: (isinstance(v, str) and bool(v.strip())) or (
            isinstance(v, list) and all(isinstance(x, str) and x.strip() for x in v)),
        "choice": lambda v: isinstance(v, str) and v in rule.choices,
        "name": lambda v: isinstance(v, str) and bool(_NAME_RE.match(v)),
        "mapping": lambda v: isinstance(v, dict),
    }.get(t, lambda v: False)(value)
    if not ok:
        return [Problem(key, f"is not allowed ({allowed(rule, unit, with_null=True)})", value)]
    return []


def _did_you_mean(word: str, known: Any) -> str:
    close = difflib.get_close_matches(word, list(known), n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""


def _unknown(key: str, word: str, known: Any, what: str = "unknown key") -> Problem:
    return Problem(key, f"{what}{_did_you_mean(word, known)}; known: {', '.join(known)}")


# ------------------------------------------------------------------------------------------ validation


def _entry(key: str, val: dict, rule: Rule, unit: Unit | None, keys: tuple[str, ...]) -> list[Problem]:
    """A per-value mapping {value, min, max, source, evidence, note}."""
    out = [Problem(f"{key}.{k}", f"unknown key{_did_you_mean(str(k), keys)}; allowed: {', '.join(keys)}")
           for k in val if k not in keys]
    if "min" not in keys and "value" not in val:
        out.append(Problem(key, f"a limit mapping needs a value ({', '.join(keys)})"))
    for k in ("value", "min", "max"):
        if k in val and k in keys:
            out += _check(f"{key}.{k}", val[k], rule, unit)
    for k in ("source", "evidence", "note"):
        if k in val:
            sub = rule_for(f"{key}.{k}") or _TEXT
            out += _check(f"{key}.{k}", val[k], sub, None)
    if out:
        return out
    v, lo, hi = val.get("value"), val.get("min"), val.get("max")
    if lo is not None and hi is not None and lo > hi:
        out.append(Problem(key, f"min {_show(lo)} > max {_show(hi)} (a range needs min <= max)"))
    elif v is not None and ((lo is not None and v < lo) or (hi is not None and v > hi)):
        out.append(Problem(key, f"value {_show(v)} outside [min, max] = [{_show(lo)}, {_show(hi)}]"))
    if val.get("evidence") == "unverified" and any(val.get(k) is not None for k in ("value", "min", "max")):
        out.append(Problem(key, "an unverified figure must be null (keep it in the note)"))
    return out


def _energy(sec: dict) -> list[Problem]:
    out: list[Problem] = []
    seen: dict[tuple[str, str], str] = {}
    for key, val in sec.items():
        path = f"energy.{key}"
        if not isinstance(key, str):
            out.append(Problem(path, "keys must be strings"))
            continue
        quantity, terms = ("energy", ENERGY_TERMS) if key.startswith("e_") else ("power", POWER_TERMS)
        split = split_unit(key, quantity)
        if split is None:
            out.append(Problem(path, f"missing unit suffix: a {quantity} key must end in one of {_suffixes(quantity)}"))
            continue
        term, unit = split
        if term not in terms:
            out.append(_unknown(path, term, terms, f"unknown {quantity} term {term!r}"))
            continue
        if (quantity, term) in seen:
            out.append(Problem(path, f"duplicate term (already given as energy.{seen[quantity, term]})"))
            continue
        seen[quantity, term] = key
        rule = rule_for(path)
        assert rule is not None
        if isinstance(val, dict):
            out += _entry(path, val, rule, unit, ENERGY_ENTRY_KEYS)
        else:
            out += _check(path, val, rule, unit)
    return out


def _keyed(section: str, sec: dict, known: tuple[str, ...]) -> list[Problem]:
    """A section of named values (``limits``, ``fixed_point``): each a value or a per-value mapping."""
    out: list[Problem] = []
    for key, val in sec.items():
        path = f"{section}.{key}"
        if key not in known:
            out.append(_unknown(path, str(key), known))
            continue
        rule = rule_for(path)
        assert rule is not None
        unit = _unit_of(path, rule)
        if isinstance(val, dict):
            out += _entry(path, val, rule, unit, LIMIT_ENTRY_KEYS)
        else:
            out += _check(path, val, rule, unit)
    return out


def _limits(sec: dict) -> list[Problem]:
    return _keyed("limits", sec, _LIMIT_KEYS)


def _fixed_point(sec: dict) -> list[Problem]:
    return _keyed("fixed_point", sec, _FIXED_POINT_KEYS)


def _system(sec: dict) -> list[Problem]:
    return _keyed("system", sec, _SYSTEM_KEYS)


def _neuron(sec: dict) -> list[Problem]:
    """The ``neuron`` section: ``model`` (required), source / note / evidence, and numeric neuron parameters."""
    out: list[Problem] = []
    if sec.get("model") is None:
        out.append(Problem("neuron.model", "is missing (the chip neuron's name, e.g. lif, if, xylo)"))
    for key, val in sec.items():
        path = f"neuron.{key}"
        rule = rule_for(path)
        if rule is not None:
            out += _check(path, val, rule, None)
        elif not _is_number(val):
            out.append(Problem(path, "is not a number (a neuron parameter; text belongs in neuron.note)", val))
    return out


def _facts(sec: dict) -> list[Problem]:
    out: list[Problem] = []
    for key, val in sec.items():
        path = f"facts.{key}"
        split = split_unit(key) if isinstance(key, str) else None
        if split is None:
            out.append(Problem(path, f"missing unit suffix: fact keys end in one of {', '.join('_' + s for s in UNITS)}"))
            continue
        unit = split[1]
        out += _check(path, val, replace(QUANTITIES[unit.quantity], many=True), unit)
    return out


def _base_value(raw: dict, dotted: str) -> tuple[float, Unit | None] | None:
    """A valid number at a dotted key (limit mappings unwrapped), or None."""
    section, _, key = dotted.partition(".")
    val = raw.get(section) if key else raw.get(dotted)
    if key:
        val = val.get(key) if isinstance(val, dict) else None
    if isinstance(val, dict):
        val = val.get("value")
    if not _is_number(val):
        return None
    rule = rule_for(dotted)
    return val, (_unit_of(dotted, rule) if rule else None)


def _cross(raw: dict, stem: str | None) -> list[Problem]:
    out: list[Problem] = []
    name = raw.get("name")
    if stem is not None and isinstance(name, str) and name != stem:
        out.append(Problem("name", f"must equal the file name {stem!r}", name))
    pairs = list(ORDERED_PAIRS)
    facts = raw.get("facts")
    if isinstance(facts, dict):
        pairs += [(f"facts.{k}", f"facts.{k.replace('_min_', '_max_', 1)}") for k in facts
                  if isinstance(k, str) and "_min_" in k and k.replace("_min_", "_max_", 1) in facts]
    for small, large in pairs:
        a, b = _base_value(raw, small), _base_value(raw, large)
        if a is None or b is None:
            continue
        if not all(isinstance(x[0], int) or math.isfinite(x[0]) for x in (a, b)):
            continue
        if _exact(a[0], a[1].exp if a[1] else 0) > _exact(b[0], b[1].exp if b[1] else 0):
            out.append(Problem(small, f"is larger than {large} = {_show(b[0])} (a range needs low <= high)", a[0]))
    fixed = raw.get("fixed_point")
    if isinstance(fixed, dict):
        for dotted in tuple(f"fixed_point.{k}" for k in _FIXED_POINT_KEYS) + FIXED_POINT_REQUIRES:
            if _base_value(raw, dotted) is None:
                out.append(Problem(dotted, "missing or null: a fixed_point section needs every fixed_point key "
                                           f"and {', '.join(FIXED_POINT_REQUIRES)}"))
    energy = raw.get("energy")
    if isinstance(energy, dict) and raw.get("scope") in SCOPES:
        for key, val in energy.items():
            split = split_unit(key, "energy") if isinstance(key, str) and key.startswith("e_") else None
            if split is None:
                continue
            given = (val.get("value") is not None or val.get("min") is not None or val.get("max") is not None
                     ) if isinstance(val, dict) else val is not None
            if raw["scope"] == "all-in" and given and split[0] not in ALL_IN_TERMS:
                out.append(Problem(f"energy.{key}", "an all-in profile cannot carry per-term energies "
                                                    "(move them to facts or a per-term profile)"))
            if raw["scope"] == "per-term" and given and split[0] == "e_synop_allin":
                out.append(Problem(f"energy.{key}", "an all-in constant needs scope: all-in"))
    return out


def validate_profile(raw: Any, *, stem: str | None = None) -> list[Problem]:
    """Checks a parsed profile document against :data:`SCHEMA`; pure (no I/O, no mutation).

    Args:
        raw: the parsed YAML document.
        stem: the file name without extension, when it came from a file (``name`` must equal it).

    Returns:
        Every problem found, in document order (empty: the profile is valid).
    """
    if raw is None:
        return [Problem("", "the file is empty (a profile is a mapping of keys)")]
    if not isinstance(raw, dict):
        return [Problem("", f"the file must hold a mapping of keys, got {type(raw).__name__}")]
    out: list[Problem] = []
    for key in raw:
        if key not in _TOP_KEYS:
            out.append(_unknown(str(key), str(key), _TOP_KEYS))
    for key in REQUIRED:
        if raw.get(key) in (None, "", []):
            out.append(Problem(key, f"missing (required; {allowed(rule_for(key))})"))  # type: ignore[arg-type]
    for key, val in raw.items():
        if key not in _TOP_KEYS or (key in REQUIRED and val in (None, "", [])):
            continue
        rule = rule_for(key)
        assert rule is not None
        if rule.type == "mapping" and isinstance(val, dict):
            out += {"energy": _energy, "limits": _limits, "fixed_point": _fixed_point, "system": _system,
                    "neuron": _neuron, "facts": _facts}[key](val)
        else:
            out += _check(key, val, rule, _unit_of(key, rule))
    if not out:
        out += _cross(raw, stem)
    return out


def check_profile(raw: Any, *, where: str = "<profile>", stem: str | None = None) -> None:
    """Validates a profile; raises :class:`ProfileError` with a one-line message naming the first problem.

    Raises:
        ProfileError: ``profile <where>: <key> = <value> <what is wrong> (<what is allowed>)``.
    """
    problems = validate_profile(raw, stem=stem)
    if problems:
        more = f" (and {len(problems) - 1} more problem{'s' if len(problems) > 2 else ''})" if len(problems) > 1 else ""
        raise ProfileError(f"profile {where}: {problems[0]}{more}")


# ----------------------------------------------------------------------------------------------- docs


# The unit a family's bound is printed in, in the README table.
_DOC_UNIT = {"energy": "pj", "power": "mw", "size": "kb", "time": "s", "frequency": "hz", "throughput": "tops"}


def rules_markdown() -> str:
    """The validation rules as two Markdown tables (kept in ``hardware_profiles/README.md``; a test compares).

    The first lists the keys (grouped by rule); the second the unit families, whose rule applies to every
    ``facts`` key with that suffix.
    """
    rows = ["| keys | allowed |", "|---|---|"]
    groups: dict[str, list[str]] = {}
    for pattern, rule in SCHEMA:
        if rule.type in ("mapping", "by_unit"):
            continue
        unit = _unit_of(pattern, rule)
        if unit is None and rule.quantity in _DOC_UNIT and any(u.quantity == rule.quantity for u in UNITS.values()):
            unit = UNITS[_DOC_UNIT[rule.quantity]]
        groups.setdefault(allowed(rule, unit, with_null=True).removeprefix("must be "), []).append(f"`{pattern}`")
    rows += [f"| {', '.join(keys)} | {text} |" for text, keys in groups.items()]
    rows += ["", "| unit family (`facts.*_<suffix>`) | suffixes | allowed |", "|---|---|---|"]
    for quantity, rule in QUANTITIES.items():
        suffixes = [s for s, u in UNITS.items() if u.quantity == quantity]
        if not suffixes:
            continue
        unit = UNITS[_DOC_UNIT.get(quantity, suffixes[0])]
        text = allowed(rule, unit).removeprefix("must be ")
        rows.append(f"| {quantity} | {', '.join('`_' + s + '`' for s in suffixes)} | {text} |")
    return "\n".join(rows) + "\n"
