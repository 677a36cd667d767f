"""Hardware profiles: YAML data files (energies with sources and evidence, chip limits) and their typed loader.

A profile is one YAML file per chip or ANN platform (``hardware_profiles/<name>.yaml``; schema in
``hardware_profiles/README.md``). The loader validates every key and names the bad one: unknown keys,
energy or power keys without a unit suffix, wrong types, missing ``source``. Energies are normalised to
picojoules (``e_*_pj``) and powers to milliwatts (``*_mw``) so that code reads one unit.

Resolution order of :func:`load_profile`: an explicit path -> ``$NEUROPOSTER_PROFILES`` (``os.pathsep``
separated folders) -> the packaged copy (``neuroposter/_profiles`` inside the wheel) -> the source
checkout's ``hardware_profiles/``.

Example:
    >>> p = load_profile("loihi2")
    >>> p.limits.cores_per_chip
    128
    >>> load_profile("loihi").energy["e_synop_pj"]
    23.6
"""

from __future__ import annotations

import math
import os
import re
from dataclasses import dataclass, field, fields
from pathlib import Path
from types import MappingProxyType
from typing import Any, Literal, Mapping

__all__ = [
    "EVIDENCE",
    "SCOPES",
    "KINDS",
    "ENERGY_TERMS",
    "POWER_TERMS",
    "ProfileError",
    "EnergyValue",
    "Limits",
    "HardwareProfile",
    "load_profile",
    "list_profiles",
    "profile_dirs",
]

Evidence = Literal["measured", "simulated", "derived", "vendor", "unverified"]
Scope = Literal["per-term", "all-in"]
Kind = Literal["neuromorphic", "ann"]

EVIDENCE: tuple[str, ...] = ("measured", "simulated", "derived", "vendor", "unverified")
SCOPES: tuple[str, ...] = ("per-term", "all-in")
KINDS: tuple[str, ...] = ("neuromorphic", "ann")

# Energy terms (per event) a profile may give; the YAML key is the term plus a unit suffix
# (_fj, _pj, _nj, _uj), normalised to _pj. Meanings are what estimate_energy multiplies them with.
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
_ENERGY_UNITS = {"fj": 1e-3, "pj": 1.0, "nj": 1e3, "uj": 1e6}
_POWER_UNITS = {"uw": 1e-3, "mw": 1.0, "w": 1e3}
# Unit suffixes accepted for `facts` (informational numbers quoted from the sources).
_FACT_UNITS = ("nm", "v", "mw", "uw", "w", "hz", "mhz", "tops", "tflops", "ns", "us", "ms", "s", "kb", "mb",
               "gb", "bits", "mm2", "count", "pct", "pj", "nj", "uj", "fj", "gsops_per_w", "fps")

_TOP_KEYS = {
    "name": "profile name (must equal the file stem)",
    "kind": "neuromorphic | ann",
    "description": "one line",
    "evidence": "grade of the profile as a whole",
    "scope": "per-term | all-in",
    "source": "str or list of str (required)",
    "process_nm": "process node in nm (number or null)",
    "voltage_v": "supply voltage (number or null)",
    "precision": "deployment precision, e.g. int8, fp32 (str or null)",
    "energy": "mapping of energy/power terms",
    "limits": "mapping of Limits fields",
    "nir_nodes": "list of NIR node type names the target can host",
    "facts": "informational numbers with unit suffixes",
    "notes": "free text",
    "includes": "what an all-in figure includes (list of str)",
    "excludes": "what the estimate excludes (list of str)",
}
_NAME_RE = re.compile(r"^[a-z0-9][a-z0-9_\-]*$")


class ProfileError(ValueError):
    """A hardware profile file is invalid; the message names the file and the bad key."""


@dataclass(frozen=True)
class EnergyValue:
    """One energy (pJ) or power (mW) constant with its range and provenance.

    Attributes:
        value: the point value in pJ (energies) or mW (powers), or None when not published.
        min: lower bound (None: same as value / unknown).
        max: upper bound (None: same as value / unbounded).
        source: where the number comes from (falls back to the profile's source).
        evidence: evidence grade (falls back to the profile's evidence).
        note: free text, e.g. "pre-silicon minimum".
        unit: ``"pj"`` or ``"mw"``.
        unbounded_above: the source gives only a lower bound (``max: null`` written explicitly).
    """

    value: float | None
    min: float | None = None
    max: float | None = None
    source: str | None = None
    evidence: str | None = None
    note: str | None = None
    unit: str = "pj"
    unbounded_above: bool = False

    @property
    def point(self) -> float | None:
        """Value used for point estimates: ``value``, else ``min`` (a conservative bound), else None."""
        if self.value is not None:
            return self.value
        return self.min

    @property
    def low(self) -> float | None:
        """Lower end of the range (min, else the value)."""
        return self.min if self.min is not None else self.value

    @property
    def high(self) -> float | None:
        """Upper end of the range (max, else the value); None when only bounded below."""
        if self.unbounded_above:
            return None
        return self.max if self.max is not None else self.value


@dataclass(frozen=True)
class Limits:
    """Resource limits of one chip; every field is optional (None = unknown or unbounded).

    Attributes:
        neurons_per_core: neurons (compartments) one core hosts.
        synapses_per_core: synapses one core stores.
        cores_per_chip: neuromorphic cores (processing elements) per chip.
        neurons_per_chip: neurons per chip.
        synapses_per_chip: synapses per chip.
        fan_in: presynaptic inputs one neuron (or core, see the profile's notes) accepts.
        fan_out: destinations one neuron (or core) can send to.
        weight_bits: largest weight precision in bits.
        weight_bits_min: smallest weight precision in bits, where the chip offers several.
        state_bits: neuron state (membrane) precision in bits.
        max_delay: largest synaptic delay in timesteps.
        max_layers: largest number of layers (e.g. Speck's 9 cores).
        supports_weight_sharing: whether convolution-style weight sharing is native.
        neuron_models: NIR node types the chip hosts natively as neurons.
        inputs_per_chip: input channels (Xylo).
        outputs_per_chip: output neurons (Xylo).
        memory_per_core_kb: on-core memory in KB.
        memory_per_chip_mb: on-chip memory in MB.
        max_kernel_size: largest convolution kernel side.
        max_channels: largest number of feature maps per layer.
        kernel_memory_per_core: per-core kernel memory entries (Speck).
        neuron_memory_per_core: per-core neuron memory entries (Speck).
        sources: per-field source strings, where a limit comes from somewhere else than the profile's source.
    """

    neurons_per_core: int | None = None
    synapses_per_core: int | None = None
    cores_per_chip: int | None = None
    neurons_per_chip: int | None = None
    synapses_per_chip: int | None = None
    fan_in: int | None = None
    fan_out: int | None = None
    weight_bits: int | None = None
    weight_bits_min: int | None = None
    state_bits: int | None = None
    max_delay: int | None = None
    max_layers: int | None = None
    supports_weight_sharing: bool | None = None
    neuron_models: tuple[str, ...] | None = None
    inputs_per_chip: int | None = None
    outputs_per_chip: int | None = None
    memory_per_core_kb: float | None = None
    memory_per_chip_mb: float | None = None
    max_kernel_size: int | None = None
    max_channels: int | None = None
    kernel_memory_per_core: tuple[int, ...] | None = None
    neuron_memory_per_core: tuple[int, ...] | None = None
    sources: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))

    def as_dict(self) -> dict[str, Any]:
        """The limits as plain data (None for unknown)."""
        out: dict[str, Any] = {}
        for f in fields(self):
            v = getattr(self, f.name)
            if f.name == "sources":
                out[f.name] = dict(v)
            elif isinstance(v, tuple):
                out[f.name] = list(v)
            else:
                out[f.name] = v
        return out


_LIMIT_TYPES: dict[str, str] = {
    "neurons_per_core": "int", "synapses_per_core": "int", "cores_per_chip": "int", "neurons_per_chip": "int",
    "synapses_per_chip": "int", "fan_in": "int", "fan_out": "int", "weight_bits": "int", "weight_bits_min": "int",
    "state_bits": "int", "max_delay": "int", "max_layers": "int", "supports_weight_sharing": "bool",
    "neuron_models": "strlist", "inputs_per_chip": "int", "outputs_per_chip": "int",
    "memory_per_core_kb": "float", "memory_per_chip_mb": "float", "max_kernel_size": "int", "max_channels": "int",
    "kernel_memory_per_core": "intlist", "neuron_memory_per_core": "intlist",
}


@dataclass(frozen=True)
class HardwareProfile:
    """One hardware platform: energy constants with provenance, and resource limits.

    Attributes:
        name: profile name (the file stem).
        kind: ``"neuromorphic"`` or ``"ann"``.
        description: one line.
        evidence: how the profile's numbers were obtained as a whole (measured / simulated / derived /
            vendor / unverified); how well *we* checked them ([V]/[S]/[D]) is stated in each source string.
        scope: ``"per-term"`` (constants are separate terms that add up) or ``"all-in"`` (one constant
            already includes everything; never add per-term extras to it).
        source: the main source (str) or sources (tuple of str).
        energy: term key -> point value (pJ for ``e_*_pj``, mW for ``*_mw``) or None when not published.
        energy_detail: term key -> :class:`EnergyValue` (range, per-value source and evidence).
        limits: :class:`Limits`.
        nir_nodes: NIR node type names the target can host.
        process_nm: process node.
        voltage_v: supply voltage.
        precision: deployment precision (e.g. ``"int8"``, ``"fp32"``).
        facts: informational numbers from the sources (unit-suffixed keys), not used in arithmetic.
        includes: what an all-in constant includes.
        excludes: what estimates from this profile leave out.
        notes: free text.
        path: the file it was loaded from.
    """

    name: str
    kind: Kind
    description: str
    evidence: Evidence
    scope: Scope
    source: str | tuple[str, ...]
    energy: Mapping[str, float | None]
    energy_detail: Mapping[str, EnergyValue]
    limits: Limits
    nir_nodes: frozenset[str]
    process_nm: float | None = None
    voltage_v: float | None = None
    precision: str | None = None
    facts: Mapping[str, Any] = field(default_factory=lambda: MappingProxyType({}))
    includes: tuple[str, ...] = ()
    excludes: tuple[str, ...] = ()
    notes: str = ""
    path: Path | None = None

    @property
    def sources(self) -> tuple[str, ...]:
        """The profile's sources as a tuple."""
        return (self.source,) if isinstance(self.source, str) else tuple(self.source)

    def get(self, key: str) -> float | None:
        """Point value of an energy/power term (None when absent or not published)."""
        return self.energy.get(key)

    def range(self, key: str) -> tuple[float | None, float | None]:
        """(low, high) of an energy/power term; (None, None) when absent."""
        d = self.energy_detail.get(key)
        return (None, None) if d is None else (d.low, d.high)

    def source_of(self, key: str) -> str:
        """The source of one energy term (its own, else the profile's)."""
        d = self.energy_detail.get(key)
        if d is not None and d.source:
            return d.source
        return "; ".join(self.sources)

    def evidence_of(self, key: str) -> str:
        """The evidence grade of one energy term (its own, else the profile's)."""
        d = self.energy_detail.get(key)
        if d is not None and d.evidence:
            return d.evidence
        return self.evidence

    @classmethod
    def from_mapping(cls, raw: Mapping[str, Any], *, where: str = "<profile>",
                     path: Path | None = None) -> HardwareProfile:
        """Validates a parsed YAML mapping and builds the profile.

        Args:
            raw: the parsed YAML document.
            where: a label for error messages (usually the file path).
            path: the file it came from.

        Raises:
            ProfileError: naming the file and the bad key.
        """
        return _parse(raw, where=where, path=path)


# --------------------------------------------------------------------------------------------- parsing


def _err(where: str, key: str, msg: str) -> ProfileError:
    return ProfileError(f"{where}: {key}: {msg}")


def _is_num(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(float(v))


def _num(v: Any, where: str, key: str, *, allow_null: bool = True) -> float | None:
    if v is None and allow_null:
        return None
    if not _is_num(v):
        raise _err(where, key, f"expected a number{' or null' if allow_null else ''}, got {type(v).__name__} {v!r}")
    return float(v)


def _str(v: Any, where: str, key: str, *, allow_null: bool = True) -> str | None:
    if v is None and allow_null:
        return None
    if not isinstance(v, str) or not v.strip():
        raise _err(where, key, f"expected a non-empty string, got {type(v).__name__} {v!r}")
    return v


def _strlist(v: Any, where: str, key: str) -> tuple[str, ...]:
    if v is None:
        return ()
    if isinstance(v, str):
        return (v,)
    if not isinstance(v, list) or not all(isinstance(x, str) and x for x in v):
        raise _err(where, key, f"expected a list of strings, got {v!r}")
    return tuple(v)


def _choice(v: Any, where: str, key: str, choices: tuple[str, ...]) -> str:
    if v not in choices:
        raise _err(where, key, f"must be one of {', '.join(choices)}; got {v!r}")
    return str(v)


def _split_unit(key: str, units: Mapping[str, float]) -> tuple[str, str] | None:
    for unit in sorted(units, key=len, reverse=True):
        if key.endswith("_" + unit):
            return key[: -len(unit) - 1], unit
    return None


def _parse_energy(raw: Any, where: str, prof_source: str, prof_evidence: str) -> tuple[dict, dict]:
    if raw is None:
        return {}, {}
    if not isinstance(raw, dict):
        raise _err(where, "energy", f"expected a mapping, got {type(raw).__name__}")
    points: dict[str, float | None] = {}
    detail: dict[str, EnergyValue] = {}
    for key, val in raw.items():
        k = f"energy.{key}"
        if not isinstance(key, str):
            raise _err(where, k, "keys must be strings")
        if key.startswith("e_"):
            split = _split_unit(key, _ENERGY_UNITS)
            units, terms, canon_unit, kind = _ENERGY_UNITS, ENERGY_TERMS, "pj", "energy"
        else:
            split = _split_unit(key, _POWER_UNITS)
            units, terms, canon_unit, kind = _POWER_UNITS, POWER_TERMS, "mw", "power"
        if split is None:
            suffixes = ", ".join("_" + u for u in units)
            raise _err(where, k, f"missing unit suffix: a {kind} key must end in one of {suffixes}")
        term, unit = split
        if term not in terms:
            raise _err(where, k, f"unknown {kind} term {term!r}; known: {', '.join(terms)}")
        scale = units[unit]
        canon = f"{term}_{canon_unit}"
        if canon in points:
            raise _err(where, k, f"duplicate term (already given as {canon} in another unit)")
        unbounded = False
        if isinstance(val, dict):
            unbounded = "max" in val and val["max"] is None and val.get("min") is not None
            unknown = set(val) - {"value", "min", "max", "source", "evidence", "note"}
            if unknown:
                raise _err(where, f"{k}.{sorted(unknown)[0]}", "unknown key; allowed: value, min, max, source, evidence, note")
            value = _num(val.get("value"), where, f"{k}.value")
            lo = _num(val.get("min"), where, f"{k}.min")
            hi = _num(val.get("max"), where, f"{k}.max")
            src = _str(val.get("source"), where, f"{k}.source")
            ev = val.get("evidence")
            if ev is not None:
                _choice(ev, where, f"{k}.evidence", EVIDENCE)
            note = _str(val.get("note"), where, f"{k}.note")
            if lo is not None and hi is not None and lo > hi:
                raise _err(where, k, f"min {lo} > max {hi}")
            if value is not None and ((lo is not None and value < lo) or (hi is not None and value > hi)):
                raise _err(where, k, f"value {value} outside [min, max]")
        elif val is None or _is_num(val):
            value, lo, hi, src, ev, note = _num(val, where, k), None, None, None, None, None
        else:
            raise _err(where, k, f"expected a number, null or a mapping {{value, min, max, source, evidence}}, "
                                 f"got {type(val).__name__} {val!r}")
        if (value is not None or lo is not None or hi is not None) and ev == "unverified":
            raise _err(where, k, "an unverified figure must be null (keep it in the note)")

        def conv(x: float | None) -> float | None:
            return None if x is None else x * scale

        ev_eff = ev or prof_evidence
        detail[canon] = EnergyValue(conv(value), conv(lo), conv(hi), src or prof_source, ev_eff, note, canon_unit,
                                    unbounded)
        points[canon] = detail[canon].point
    return points, detail


def _parse_limits(raw: Any, where: str) -> Limits:
    if raw is None:
        return Limits()
    if not isinstance(raw, dict):
        raise _err(where, "limits", f"expected a mapping, got {type(raw).__name__}")
    kwargs: dict[str, Any] = {}
    sources: dict[str, str] = {}
    for key, val in raw.items():
        k = f"limits.{key}"
        if key not in _LIMIT_TYPES:
            raise _err(where, k, f"unknown key; known: {', '.join(_LIMIT_TYPES)}")
        if isinstance(val, dict):
            unknown = set(val) - {"value", "source", "evidence", "note"}
            if unknown or "value" not in val:
                raise _err(where, k, "a limit mapping takes {value, source, evidence, note} and needs value")
            if val.get("source") is not None:
                sources[key] = _str(val["source"], where, f"{k}.source") or ""
            val = val["value"]
        typ = _LIMIT_TYPES[key]
        if val is None:
            kwargs[key] = None
        elif typ == "int":
            if not (isinstance(val, int) and not isinstance(val, bool)) or val < 0:
                raise _err(where, k, f"expected a non-negative integer or null, got {type(val).__name__} {val!r}")
            kwargs[key] = int(val)
        elif typ == "float":
            kwargs[key] = _num(val, where, k)
        elif typ == "bool":
            if not isinstance(val, bool):
                raise _err(where, k, f"expected true/false or null, got {val!r}")
            kwargs[key] = val
        elif typ == "strlist":
            kwargs[key] = _strlist(val, where, k)
        elif typ == "intlist":
            if not isinstance(val, list) or not all(isinstance(x, int) and not isinstance(x, bool) for x in val):
                raise _err(where, k, f"expected a list of integers, got {val!r}")
            kwargs[key] = tuple(val)
    return Limits(**kwargs, sources=MappingProxyType(sources))


def _parse_facts(raw: Any, where: str) -> dict[str, Any]:
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise _err(where, "facts", "expected a mapping")
    out: dict[str, Any] = {}
    for key, val in raw.items():
        k = f"facts.{key}"
        if not isinstance(key, str) or not any(key.endswith("_" + u) for u in _FACT_UNITS):
            raise _err(where, k, f"missing unit suffix: fact keys end in one of "
                                 f"{', '.join('_' + u for u in _FACT_UNITS)}")
        ok = val is None or _is_num(val) or isinstance(val, str) or (
            isinstance(val, list) and all(_is_num(x) for x in val))
        if not ok:
            raise _err(where, k, f"expected a number, a list of numbers, a string or null, got {val!r}")
        out[key] = val
    return out


def _parse(raw: Any, *, where: str, path: Path | None) -> HardwareProfile:
    if not isinstance(raw, dict):
        raise ProfileError(f"{where}: the file must hold a mapping, got {type(raw).__name__}")
    for key in raw:
        if key not in _TOP_KEYS:
            raise _err(where, str(key), f"unknown key; known: {', '.join(_TOP_KEYS)}")
    for key in ("name", "kind", "evidence", "scope", "source"):
        if key not in raw or raw[key] in (None, "", []):
            raise _err(where, key, "missing (required)")
    name = _str(raw["name"], where, "name", allow_null=False) or ""
    if not _NAME_RE.match(name):
        raise _err(where, "name", f"{name!r} must be lower-case letters, digits, '_' or '-'")
    if path is not None and path.stem != name:
        raise _err(where, "name", f"{name!r} must equal the file name {path.stem!r}")
    kind = _choice(raw["kind"], where, "kind", KINDS)
    evidence = _choice(raw["evidence"], where, "evidence", EVIDENCE)
    scope = _choice(raw["scope"], where, "scope", SCOPES)
    src_raw = raw["source"]
    if isinstance(src_raw, list):
        source: str | tuple[str, ...] = _strlist(src_raw, where, "source")
    else:
        source = _str(src_raw, where, "source", allow_null=False) or ""
    prof_source = source if isinstance(source, str) else "; ".join(source)
    energy, detail = _parse_energy(raw.get("energy"), where, prof_source, evidence)
    if scope == "all-in":
        per_term = [k for k, v in energy.items() if v is not None and k.startswith("e_")
                    and k not in ("e_synop_allin_pj", "e_inference_pj", "e_op_pj", "e_flop_pj")]
        if per_term:
            raise _err(where, f"energy.{per_term[0]}",
                       "an all-in profile cannot carry per-term energies (move them to facts or a per-term profile)")
    else:
        if energy.get("e_synop_allin_pj") is not None:
            raise _err(where, "energy.e_synop_allin_pj", "an all-in constant needs scope: all-in")
    nir_nodes = frozenset(_strlist(raw.get("nir_nodes"), where, "nir_nodes"))
    return HardwareProfile(
        name=name,
        kind=kind,  # type: ignore[arg-type]
        description=_str(raw.get("description"), where, "description") or "",
        evidence=evidence,  # type: ignore[arg-type]
        scope=scope,  # type: ignore[arg-type]
        source=source,
        energy=MappingProxyType(energy),
        energy_detail=MappingProxyType(detail),
        limits=_parse_limits(raw.get("limits"), where),
        nir_nodes=nir_nodes,
        process_nm=_num(raw.get("process_nm"), where, "process_nm"),
        voltage_v=_num(raw.get("voltage_v"), where, "voltage_v"),
        precision=_str(raw.get("precision"), where, "precision"),
        facts=MappingProxyType(_parse_facts(raw.get("facts"), where)),
        includes=_strlist(raw.get("includes"), where, "includes"),
        excludes=_strlist(raw.get("excludes"), where, "excludes"),
        notes=_str(raw.get("notes"), where, "notes") or "",
        path=path,
    )


# ------------------------------------------------------------------------------------------- resolution


def profile_dirs() -> list[Path]:
    """Folders searched for named profiles, in order ($NEUROPOSTER_PROFILES, packaged, source checkout)."""
    dirs: list[Path] = []
    env = os.environ.get("NEUROPOSTER_PROFILES")
    if env:
        dirs.extend(Path(p) for p in env.split(os.pathsep) if p)
    pkg = Path(__file__).resolve().parent.parent
    dirs.append(pkg / "_profiles")
    dirs.append(pkg.parent / "hardware_profiles")
    return [d for d in dirs if d.is_dir()]


def _read_file(path: Path) -> HardwareProfile:
    import yaml

    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise ProfileError(f"{path}: not valid YAML: {exc}") from None
    return _parse(raw, where=str(path), path=path)


def load_profile(name_or_path: str | os.PathLike[str] | HardwareProfile) -> HardwareProfile:
    """Loads and validates one hardware profile.

    Args:
        name_or_path: a profile name (``"loihi2"``), a path to a YAML file, or a profile (returned as is).

    Returns:
        The validated :class:`HardwareProfile`.

    Raises:
        KeyError: unknown name; the message lists the available names.
        ProfileError: the file is invalid (the message names the bad key).
    """
    if isinstance(name_or_path, HardwareProfile):
        return name_or_path
    s = os.fspath(name_or_path)
    p = Path(s)
    if s.endswith((".yaml", ".yml")) or os.sep in s or (os.altsep and os.altsep in s):
        if not p.is_file():
            raise FileNotFoundError(f"hardware profile file {p} not found")
        return _read_file(p)
    for d in profile_dirs():
        for ext in (".yaml", ".yml"):
            cand = d / f"{s}{ext}"
            if cand.is_file():
                return _read_file(cand)
    raise KeyError(f"unknown hardware profile {s!r}; available: {', '.join(list_profiles()) or '(none)'}")


def list_profiles() -> list[str]:
    """Names of all profiles found (first folder wins on duplicates), sorted."""
    names: set[str] = set()
    for d in profile_dirs():
        for f in list(d.glob("*.yaml")) + list(d.glob("*.yml")):
            names.add(f.stem)
    return sorted(names)
