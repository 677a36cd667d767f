"""Hardware profiles: YAML data files (energies with sources and evidence, chip limits and capabilities,
integer formats) and their typed loader.

A profile is one YAML file per chip or ANN platform (``hardware_profiles/<name>.yaml``; schema in
``hardware_profiles/README.md``). Every profile is validated when it is loaded, against the declarative table
in :mod:`neuroposter.profiling.schema` (type, unit and range of every key: unknown keys, keys without a unit
suffix, wrong types, non-positive or absurd energies, counts below 1, bit widths outside [1, 64], evidence
grades outside the fixed set, ``min > max``). A bad profile raises :class:`ProfileError`, a
:class:`~neuroposter.errors.UsageError` whose one-line message names the file, the dotted key, the value and
what is allowed. Energies are normalised to picojoules (``e_*_pj``) and powers to milliwatts (``*_mw``) so
that code reads one unit.

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

import os
from dataclasses import dataclass, field, fields
from pathlib import Path
from types import MappingProxyType
from typing import Any, Literal, Mapping

from neuroposter.errors import UsageError
from neuroposter.profiling.schema import (
    ENERGY_TERMS,
    EVIDENCE,
    KINDS,
    POWER_TERMS,
    SCOPES,
    UNITS,
    ProfileError,
    check_profile,
    fixed_point_rules,
    limit_rules,
    split_unit,
    validate_profile,
)

__all__ = [
    "EVIDENCE",
    "SCOPES",
    "KINDS",
    "ENERGY_TERMS",
    "POWER_TERMS",
    "ProfileError",
    "UnknownProfileError",
    "ProfileFileNotFoundError",
    "validate_profile",
    "EnergyValue",
    "Limits",
    "FixedPoint",
    "SystemSpec",
    "NeuronSpec",
    "HardwareProfile",
    "load_profile",
    "list_profiles",
    "profile_dirs",
]

Evidence = Literal["measured", "simulated", "derived", "vendor", "unverified"]
Scope = Literal["per-term", "all-in"]
Kind = Literal["neuromorphic", "ann"]


class UnknownProfileError(UsageError, KeyError):
    """No profile of that name in any profile folder; the message lists the available names."""

    def __str__(self) -> str:  # the message as written, not KeyError's repr of it
        return str(self.args[0]) if self.args else ""


class ProfileFileNotFoundError(UsageError, FileNotFoundError):
    """A profile given by path does not exist."""


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
        fan_in_split: ``"exact"`` when a neuron's fan-in above ``fan_in`` can be split into partial sums that the
            chip adds exactly in the same step (SpiNNaker's synapse cores), ``"none"`` when it cannot (TrueNorth:
            relays would have to spike), None = unknown (no split). The mechanism is in ``notes["fan_in_split"]``.
        fan_out_split: ``"exact"`` when a neuron's fan-out above ``fan_out`` can be served by identical neuron
            copies (TrueNorth), ``"none"`` / None otherwise.
        fan_out_unit: what ``fan_out`` counts: ``"neuron"`` (postsynaptic neurons per neuron; the default when
            null), ``"core"`` (destination cores per neuron: TrueNorth's one axon reaches every neuron of one core)
            or ``"population"`` (destination layers/cores per layer: Speck's two destination cores per core).
        full_leak: whether the chip's LIF can be set to *full leak* (membrane and any synaptic state emptied
            every step, the step's input still reaching the membrane), which makes ``Threshold -> LIF(tau=dt)``
            exact on the chip; None = unknown (no such lowering). The reason is in ``notes["full_leak"]``.
        sources: per-field source strings, where a limit comes from somewhere else than the profile's source.
        notes: per-field notes (caveats, the reasoning behind a capability such as ``full_leak``).
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
    full_leak: bool | None = None
    fan_in_split: str | None = None
    fan_out_split: str | None = None
    fan_out_unit: str | None = None
    sources: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))
    notes: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))

    def as_dict(self) -> dict[str, Any]:
        """The limits as plain data (None for unknown)."""
        out: dict[str, Any] = {}
        for f in fields(self):
            v = getattr(self, f.name)
            if f.name in ("sources", "notes"):
                out[f.name] = dict(v)
            elif isinstance(v, tuple):
                out[f.name] = list(v)
            else:
                out[f.name] = v
        return out


@dataclass(frozen=True)
class FixedPoint:
    """The integer formats of a chip's neuron and synapse (Loihi 2: Lava's bit-accurate models), with maxima.

    The widths come from the profile's ``fixed_point`` section, except ``weight_bits``, ``state_bits`` and
    ``max_delay``, which are the profile's limits of the same name (one place per fact).

    Attributes:
        weight_bits: signed weight mantissa width (Loihi 2: 8).
        state_bits: signed neuron state (u, v) width (Loihi 2: 24).
        threshold_mant_bits: unsigned threshold mantissa width (Loihi 2: 17).
        bias_mant_bits: signed bias mantissa width (Loihi 2: 13).
        bias_exp_bits: unsigned bias exponent width (Loihi 2: 3).
        decay_bits: decay width; a state decays as ``x * (2**decay_bits - d) >> decay_bits`` (Loihi 2: 12).
        act_shift_bits: left shift of the synaptic input before it is added to u (Loihi 2: 6).
        threshold_shift_bits: left shift of the threshold mantissa before the compare (Loihi 2: 6).
        decay_u_offset: added to the current decay ``du`` (Lava's ``ds_offset``: 1).
        decay_v_offset: added to the voltage decay ``dv`` (Lava's ``dm_offset``: 0).
        graded_spike_bits: widest integer payload of a graded spike (Loihi 2: 24); analog (direct-encoded) inputs
            travel as graded spikes of at most this width (None only for a
            FixedPoint built by hand).
        max_delay: largest synaptic delay in timesteps (None: unknown).
        sources: per-field source strings.

    Example:
        >>> fp = load_profile("loihi2").fixed_point
        >>> fp.mant_max, fp.vth_max, fp.state_max, fp.bias_mant_max, fp.bias_exp_max, fp.decay_unity
        (127, 131071, 8388607, 4095, 7, 4096)
    """

    weight_bits: int
    state_bits: int
    threshold_mant_bits: int
    bias_mant_bits: int
    bias_exp_bits: int
    decay_bits: int
    act_shift_bits: int
    threshold_shift_bits: int
    decay_u_offset: int
    decay_v_offset: int
    max_delay: int | None = None
    graded_spike_bits: int | None = None
    sources: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))

    @property
    def mant_max(self) -> int:
        """Largest weight mantissa magnitude of the symmetric signed format (8 bits: 127)."""
        return (1 << (self.weight_bits - 1)) - 1

    @property
    def vth_max(self) -> int:
        """Largest threshold mantissa (17 bits unsigned: ``2**17 - 1``)."""
        return (1 << self.threshold_mant_bits) - 1

    @property
    def state_max(self) -> int:
        """Largest state value (24 bits signed: ``2**23 - 1``)."""
        return (1 << (self.state_bits - 1)) - 1

    @property
    def state_limit(self) -> int:
        """``2**(state_bits - 1)`` (``2**23``): a two's-complement state wraps at +-this value."""
        return 1 << (self.state_bits - 1)

    @property
    def bias_mant_max(self) -> int:
        """Largest bias mantissa magnitude (13 bits signed: 4095)."""
        return (1 << (self.bias_mant_bits - 1)) - 1

    @property
    def bias_exp_max(self) -> int:
        """Largest bias exponent (3 bits: 7)."""
        return (1 << self.bias_exp_bits) - 1

    @property
    def decay_unity(self) -> int:
        """``2**decay_bits`` (4096): a decay ``d`` keeps ``(decay_unity - d) / decay_unity`` of the state."""
        return 1 << self.decay_bits

    @property
    def decay_max(self) -> int:
        """Largest decay value (12 bits: 4095)."""
        return self.decay_unity - 1


@dataclass(frozen=True)
class SystemSpec:
    """The multi-chip system a profile describes (its ``system`` section); one chip when absent.

    Attributes:
        name: the system's name (e.g. ``"SpiNN-5 board"``).
        chips: chips in the system (the mapper partitions a network over at most this many).
        source: where the system's facts come from.
        evidence: evidence grade of those facts.
        note: free text (inter-chip facts, caveats).

    Example:
        >>> load_profile("spinnaker").system.chips
        48
        >>> SystemSpec().chips
        1
    """

    name: str = "one chip"
    chips: int = 1
    source: str | None = None
    evidence: str | None = None
    note: str | None = None


@dataclass(frozen=True)
class NeuronSpec:
    """The chip's neuron for chip-fitted models (a profile's ``neuron`` section).

    Attributes:
        model: a :data:`neuroposter.models.chip_neurons.CHIP_NEURONS` name (``lif``, ``if``, ``xylo``).
        params: the neuron's numeric parameters given in the section (e.g. Xylo's ``dash_syn``).
        source: where the choice comes from.
        evidence: its evidence grade.
        note: why this neuron (free text).
    """

    model: str
    params: Mapping[str, float] = field(default_factory=lambda: MappingProxyType({}))
    source: str | None = None
    evidence: str | None = None
    note: str | None = None


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
        fixed_point: the chip's integer formats (:class:`FixedPoint`), or None when the profile has none.
        system: the multi-chip system the profile describes (:class:`SystemSpec`; one chip when absent).
        neuron: the chip's neuron for fitted models (:class:`NeuronSpec`), or None when the profile names none.
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
    fixed_point: FixedPoint | None = None
    system: SystemSpec = field(default_factory=SystemSpec)
    neuron: NeuronSpec | None = None
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
# The document has been validated by schema.check_profile before any of these run: they only convert.


def _texts(v: Any) -> tuple[str, ...]:
    if v is None:
        return ()
    return (v,) if isinstance(v, str) else tuple(v)


def _float(v: Any) -> float | None:
    return None if v is None else float(v)


def _parse_energy(raw: Mapping[str, Any] | None, prof_source: str, prof_evidence: str) -> tuple[dict, dict]:
    points: dict[str, float | None] = {}
    detail: dict[str, EnergyValue] = {}
    for key, val in (raw or {}).items():
        quantity, canon_unit = ("energy", "pj") if key.startswith("e_") else ("power", "mw")
        split = split_unit(key, quantity)
        assert split is not None
        term, unit = split
        scale = 10.0 ** (unit.exp - UNITS[canon_unit].exp)
        canon = f"{term}_{canon_unit}"
        entry = val if isinstance(val, dict) else {"value": val}

        def conv(x: Any) -> float | None:
            return None if x is None else float(x) * scale

        unbounded = "max" in entry and entry["max"] is None and entry.get("min") is not None
        detail[canon] = EnergyValue(conv(entry.get("value")), conv(entry.get("min")), conv(entry.get("max")),
                                    entry.get("source") or prof_source, entry.get("evidence") or prof_evidence,
                                    entry.get("note"), canon_unit, unbounded)
        points[canon] = detail[canon].point
    return points, detail


def _parse_keyed(raw: Mapping[str, Any] | None, rules: Mapping[str, Any]
                 ) -> tuple[dict[str, Any], dict[str, str], dict[str, str]]:
    """(values, sources, notes) of a ``limits``-style section, values converted by their rule's type."""
    kwargs: dict[str, Any] = {}
    sources: dict[str, str] = {}
    notes: dict[str, str] = {}
    for key, val in (raw or {}).items():
        if isinstance(val, dict):
            if val.get("source") is not None:
                sources[key] = val["source"]
            if val.get("note") is not None:
                notes[key] = val["note"]
            val = val.get("value")
        rule = rules[key]
        if val is None:
            kwargs[key] = None
        elif rule.type == "integer":
            kwargs[key] = tuple(int(x) for x in val) if isinstance(val, list) else int(val)
        elif rule.type == "number":
            kwargs[key] = float(val)
        elif rule.type == "texts":
            kwargs[key] = _texts(val)
        else:
            kwargs[key] = val
    return kwargs, sources, notes


def _parse_limits(raw: Mapping[str, Any] | None) -> Limits:
    kwargs, sources, notes = _parse_keyed(raw, limit_rules())
    return Limits(**kwargs, sources=MappingProxyType(sources), notes=MappingProxyType(notes))


def _parse_fixed_point(raw: Mapping[str, Any] | None, limits: Limits) -> FixedPoint | None:
    if raw is None:
        return None
    kwargs, sources, _ = _parse_keyed(raw, fixed_point_rules())
    sources.update({k: limits.sources[k] for k in ("weight_bits", "state_bits", "max_delay") if k in limits.sources})
    return FixedPoint(weight_bits=limits.weight_bits, state_bits=limits.state_bits,  # type: ignore[arg-type]
                      max_delay=limits.max_delay, sources=MappingProxyType(sources), **kwargs)


def _parse_system(raw: Mapping[str, Any] | None) -> SystemSpec:
    if not raw:
        return SystemSpec()
    vals = {k: (v.get("value") if isinstance(v, dict) else v) for k, v in raw.items()}
    return SystemSpec(name=vals.get("name") or SystemSpec.name, chips=int(vals.get("chips") or 1),
                      source=vals.get("source"), evidence=vals.get("evidence"), note=vals.get("note"))


def _parse_neuron(raw: Mapping[str, Any] | None) -> NeuronSpec | None:
    if not raw:
        return None
    text = ("model", "source", "evidence", "note")
    return NeuronSpec(model=str(raw["model"]), params=MappingProxyType({k: v for k, v in raw.items() if k not in text}),
                      source=raw.get("source"), evidence=raw.get("evidence"), note=raw.get("note"))


def _parse(raw: Any, *, where: str, path: Path | None) -> HardwareProfile:
    check_profile(raw, where=where, stem=path.stem if path is not None else None)
    evidence = raw["evidence"]
    source: str | tuple[str, ...] = raw["source"] if isinstance(raw["source"], str) else tuple(raw["source"])
    prof_source = source if isinstance(source, str) else "; ".join(source)
    energy, detail = _parse_energy(raw.get("energy"), prof_source, evidence)
    limits = _parse_limits(raw.get("limits"))
    return HardwareProfile(
        name=raw["name"],
        kind=raw["kind"],
        description=raw.get("description") or "",
        evidence=evidence,
        scope=raw["scope"],
        source=source,
        energy=MappingProxyType(energy),
        energy_detail=MappingProxyType(detail),
        limits=limits,
        nir_nodes=frozenset(_texts(raw.get("nir_nodes"))),
        fixed_point=_parse_fixed_point(raw.get("fixed_point"), limits),
        system=_parse_system(raw.get("system")),
        neuron=_parse_neuron(raw.get("neuron")),
        process_nm=_float(raw.get("process_nm")),
        voltage_v=_float(raw.get("voltage_v")),
        precision=raw.get("precision"),
        facts=MappingProxyType(dict(raw.get("facts") or {})),
        includes=_texts(raw.get("includes")),
        excludes=_texts(raw.get("excludes")),
        notes=raw.get("notes") or "",
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
        raise ProfileError(f"profile {path}: not valid YAML: {' '.join(str(exc).split())}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ProfileError(f"profile {path}: cannot be read: {exc}") from None
    return _parse(raw, where=str(path), path=path)


def load_profile(name_or_path: str | os.PathLike[str] | HardwareProfile) -> HardwareProfile:
    """Loads and validates one hardware profile.

    Args:
        name_or_path: a profile name (``"loihi2"``), a path to a YAML file, or a profile (returned as is).

    Returns:
        The validated :class:`HardwareProfile`.

    Raises:
        UnknownProfileError: unknown name (a KeyError and a UsageError); the message lists the available names.
        ProfileFileNotFoundError: a path that does not exist (a FileNotFoundError and a UsageError).
        ProfileError: the file is invalid (a UsageError; the message names the file, the key and the value).
    """
    if isinstance(name_or_path, HardwareProfile):
        return name_or_path
    s = os.fspath(name_or_path)
    p = Path(s)
    if s.endswith((".yaml", ".yml")) or os.sep in s or (os.altsep and os.altsep in s):
        if not p.is_file():
            raise ProfileFileNotFoundError(f"hardware profile file {p} not found")
        return _read_file(p)
    for d in profile_dirs():
        for ext in (".yaml", ".yml"):
            cand = d / f"{s}{ext}"
            if cand.is_file():
                return _read_file(cand)
    raise UnknownProfileError(f"unknown hardware profile {s!r}; available: {', '.join(list_profiles()) or '(none)'}")


def list_profiles() -> list[str]:
    """Names of all profiles found (first folder wins on duplicates), sorted."""
    names: set[str] = set()
    for d in profile_dirs():
        for f in list(d.glob("*.yaml")) + list(d.glob("*.yml")):
            names.add(f.stem)
    return sorted(names)
