"""Profiling a NIR graph written by any tool: load it, run it on spike inputs, count its ops, price them per chip.

The steps behind ``neuroposter profile GRAPH.nir``, each a function the CLI calls in turn:

1. :func:`load_graph` reads the file and makes it runnable with
   :func:`neuroposter.ir.interop.load_foreign` (its ``dt`` from the graph, ``--dt`` or the producer's step);
   :func:`check_runnable` refuses a node the reference simulator cannot run, naming it and its type.
2. :func:`read_inputs` (an ``.npy`` file ``[T, B, *input_shape]``) or :func:`bernoulli_inputs` (seeded
   Bernoulli spikes of rate ``p``) makes the inputs; both are validated against the graph's input shape.
3. :func:`profile_graph` runs the graph in the reference simulator (same step, float64, records on), counts its
   ops with :func:`neuroposter.profiling.counts.count_snn` (per inference = per sample of ``T`` steps; 8-bit
   weights, 16-bit state as the stored NIR counts) and prices them with
   :func:`neuroposter.profiling.energy.estimate_energy` in the ``device`` view on each profile
   (:func:`price`; default :func:`default_profiles`: every neuromorphic profile that publishes per-op energy).
4. :func:`format_profile` renders the result as text lines; :func:`write_profile` writes the ``profile``
   artifact (``graph.nir``, ``op_counts.json``, ``energy.csv``, ``summary.json``, ``manifest.json``) through
   :func:`neuroposter.artifact.write_artifact`.
"""

from __future__ import annotations

import csv
import io
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

import nir
import numpy as np

from neuroposter.errors import DataError, UsageError
from neuroposter.profiling.counts import OpCounts
from neuroposter.profiling.energy import EnergyBreakdown

__all__ = [
    "PROFILE_KIND",
    "energy_text",
    "VIEW",
    "GRAPH_NAME",
    "SUMMARY_NAME",
    "ENERGY_NAME",
    "ENERGY_COLUMNS",
    "InputSpec",
    "ForeignProfile",
    "load_graph",
    "check_runnable",
    "input_shape",
    "read_inputs",
    "bernoulli_inputs",
    "default_profiles",
    "price",
    "profile_graph",
    "format_profile",
    "energy_rows",
    "summary_of",
    "write_profile",
]

#: The manifest kind of the artifact :func:`write_profile` writes.
PROFILE_KIND = "profile"
#: The energy view used: op counts x each chip's published per-op constants.
VIEW = "device"
GRAPH_NAME = "graph.nir"
SUMMARY_NAME = "summary.json"
ENERGY_NAME = "energy.csv"
ENERGY_COLUMNS = ("profile", "kind", "scope", "view", "available", "energy_pj", "low_pj", "high_pj", "evidence",
                  "reason", "includes", "excludes")
_MODE, _ARITHMETIC = "same_step", "float"


@dataclass(frozen=True)
class InputSpec:
    """Where the inputs of a profile run come from (recorded in ``summary.json`` and the manifest).

    Attributes:
        kind: ``"npy"`` (a file) or ``"bernoulli"`` (seeded random spikes).
        shape: ``[T, B, *input_shape]`` of the inputs.
        path: the ``.npy`` file (``kind == "npy"``).
        rate: spike probability per element and step (``kind == "bernoulli"``).
        seed: the generator seed (``kind == "bernoulli"``).
    """

    kind: str
    shape: tuple[int, ...]
    path: str | None = None
    rate: float | None = None
    seed: int | None = None

    def describe(self) -> str:
        """One phrase, e.g. ``"Bernoulli spikes (rate 0.1, seed 0), [10, 16, 12]"``."""
        dims = f"[{', '.join(map(str, self.shape))}]"
        if self.kind == "npy":
            return f"{self.path} {dims}"
        return f"Bernoulli spikes (rate {self.rate:g}, seed {self.seed}) {dims}"

    def to_dict(self) -> dict[str, Any]:
        """Plain-data form."""
        return {"kind": self.kind, "shape": list(self.shape), "path": self.path, "rate": self.rate,
                "seed": self.seed}


@dataclass(frozen=True)
class ForeignProfile:
    """What :func:`profile_graph` measured.

    Attributes:
        source: the graph file.
        graph: the runnable graph (:func:`load_graph`).
        stats: :func:`neuroposter.ir.graph_io.graph_stats` of the graph.
        inputs: where the inputs came from.
        counts: op counts per inference (one sample of ``T`` steps, averaged over the batch).
        energy: one device-view breakdown per priced profile, in the order asked.
        not_shown: default profiles left out: name -> why (no per-op energy published).
    """

    source: str
    graph: nir.NIRGraph
    stats: Mapping[str, Any]
    inputs: InputSpec
    counts: OpCounts
    energy: tuple[EnergyBreakdown, ...]
    not_shown: Mapping[str, str] = field(default_factory=dict)

    @property
    def dt(self) -> float:
        """The graph's time step."""
        return float(self.graph.metadata["dt"])

    @property
    def producer(self) -> str:
        """The tool that wrote the graph (as given or recorded; ``"unknown"`` otherwise)."""
        return str(self.graph.metadata.get("producer", "unknown"))


# -------------------------------------------------------------------------------------------------
# graph and inputs
# -------------------------------------------------------------------------------------------------


def load_graph(path: str | os.PathLike[str], *, producer: str | None = None, dt: float | None = None
               ) -> nir.NIRGraph:
    """Reads a NIR file written by any tool and makes it runnable (:func:`neuroposter.ir.interop.load_foreign`).

    Args:
        path: the ``.nir`` file.
        producer: ``"snntorch"``, ``"norse"`` or ``"neuroposter"``: the default ``dt`` when the graph records none.
        dt: the graph's time step, overriding what it records.

    Returns:
        The type-checked graph with ``metadata["dt"]``, ``["producer"]``, ``["reset"]``, every node runnable.

    Raises:
        UsageError: no such file, a folder, an unknown producer, or no ``dt`` known.
        DataError: not a readable NIR file.
        InteropError: the graph's types do not check, or a node the simulator cannot run (named, with its type).
    """
    from neuroposter.ir.interop import FOREIGN_DT, load_foreign

    p = Path(path)
    if not p.exists():
        raise UsageError(f"{p}: no such file")
    if not p.is_file():
        raise UsageError(f"{p}: not a file (give a .nir file)")
    if producer is not None and producer not in FOREIGN_DT:
        raise UsageError(f"unknown producer {producer!r}; choose from {', '.join(FOREIGN_DT)}")
    try:
        raw = nir.read(str(p), type_check=False)
    except Exception as exc:  # noqa: BLE001 - h5py and nir raise assorted errors on a foreign file
        why = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise DataError(f"{p}: not a readable NIR file ({type(exc).__name__}: {why})") from None
    if not isinstance(raw, nir.NIRGraph):
        raise DataError(f"{p}: holds a single {type(raw).__name__} node, not a NIR graph")
    meta = raw.metadata if isinstance(raw.metadata, Mapping) else {}
    if dt is None and "dt" not in meta and producer is None:
        raise UsageError(f"{p} records no time step (metadata 'dt'); pass --dt (the producer's step) or "
                         f"--producer ({', '.join(f'{k}: {v:g}' for k, v in FOREIGN_DT.items())})")
    graph = load_foreign(raw, producer=producer, dt=dt)
    check_runnable(graph)
    return graph


def check_runnable(graph: nir.NIRGraph) -> None:
    """Refuses a graph the reference simulator cannot run before anything is simulated.

    Raises:
        InteropError: the graph does not flatten (no single Input/Output, missing shapes), or a node of a type
            the simulator has no semantics for; the message names the node and its type.
    """
    import torch

    from neuroposter.ir.graph import GraphError, executable
    from neuroposter.ir.interop import InteropError
    from neuroposter.ir.simulate import SimulationError, simulate

    try:
        flat = executable(graph)
    except GraphError as exc:
        raise InteropError(f"the graph cannot be run: {exc}") from None
    shape = flat.nodes[flat.input].out_shape
    try:   # one zero step of one sample builds every node's operator (which refuses an unknown type)
        simulate(flat, torch.zeros((1, 1, *shape), dtype=torch.float64), record=False)
    except SimulationError as exc:
        raise InteropError(str(exc)) from None


def input_shape(graph: nir.NIRGraph) -> tuple[int, ...]:
    """The shape of one input step (no time, no batch dim) of a runnable graph."""
    from neuroposter.ir.graph import executable

    flat = executable(graph)
    return tuple(int(s) for s in flat.nodes[flat.input].out_shape)


def _check_shape(x: np.ndarray, shape: tuple[int, ...], what: str) -> None:
    want = f"[T, B, {', '.join(map(str, shape))}]"
    if x.ndim != 2 + len(shape) or tuple(x.shape[2:]) != shape:
        raise UsageError(f"{what} has shape [{', '.join(map(str, x.shape))}]; the graph takes {want} "
                         "(time steps, samples, then the graph's input shape)")
    if x.shape[0] < 1 or x.shape[1] < 1:
        raise UsageError(f"{what} has shape [{', '.join(map(str, x.shape))}]: no time steps or no samples")


def read_inputs(path: str | os.PathLike[str], shape: Sequence[int]) -> tuple[np.ndarray, InputSpec]:
    """Reads graph inputs ``[T, B, *shape]`` from an ``.npy`` file.

    Args:
        path: the ``.npy`` file (numeric or boolean; no pickled objects).
        shape: the graph's input shape (:func:`input_shape`).

    Returns:
        ``(x as float64, spec)``.

    Raises:
        UsageError: no such file, not a numeric ``.npy`` array, the wrong shape, or non-finite values.
    """
    p = Path(path)
    if not p.is_file():
        raise UsageError(f"--inputs {p}: no such file")
    try:
        x = np.load(p, allow_pickle=False)
    except Exception as exc:  # noqa: BLE001 - numpy raises assorted errors on a bad file
        raise UsageError(f"--inputs {p}: not a .npy array ({type(exc).__name__}: {exc})") from None
    if not isinstance(x, np.ndarray) or x.dtype.kind not in "biuf":
        raise UsageError(f"--inputs {p}: expected a numeric array, got {getattr(x, 'dtype', type(x).__name__)}")
    shape = tuple(int(s) for s in shape)
    _check_shape(x, shape, f"--inputs {p}")
    x = x.astype(np.float64)
    if not np.isfinite(x).all():
        raise UsageError(f"--inputs {p}: holds non-finite values")
    return x, InputSpec("npy", tuple(int(s) for s in x.shape), path=str(p))


def bernoulli_inputs(shape: Sequence[int], *, rate: float, steps: int, samples: int, seed: int
                     ) -> tuple[np.ndarray, InputSpec]:
    """Seeded Bernoulli spike inputs ``[steps, samples, *shape]`` (1 with probability ``rate``, else 0).

    Returns:
        ``(x as float64 0/1, spec)``; the same seed gives the same spikes.

    Raises:
        UsageError: ``rate`` outside [0, 1], or ``steps``/``samples`` below 1.
    """
    if not 0.0 <= rate <= 1.0:
        raise UsageError(f"--rate must lie in [0, 1], got {rate:g}")
    if steps < 1 or samples < 1:
        raise UsageError(f"--steps and --samples must be >= 1, got {steps} and {samples}")
    full = (int(steps), int(samples), *(int(s) for s in shape))
    x = (np.random.default_rng(seed).random(full) < rate).astype(np.float64)
    return x, InputSpec("bernoulli", full, rate=float(rate), seed=int(seed))


# -------------------------------------------------------------------------------------------------
# counting and pricing
# -------------------------------------------------------------------------------------------------


def default_profiles() -> list[str]:
    """Every neuromorphic hardware profile (sorted by name)."""
    from neuroposter.profiling.profiles import list_profiles, load_profile

    return [n for n in list_profiles() if load_profile(n).kind == "neuromorphic"]


def price(counts: OpCounts, profiles: Sequence[str] | None = None
          ) -> tuple[tuple[EnergyBreakdown, ...], dict[str, str]]:
    """Energy per inference of ``counts`` on each profile, device view (op counts x the chip's per-op energies).

    Args:
        counts: SNN op counts per inference.
        profiles: profile names or YAML paths; None: :func:`default_profiles`, keeping those that publish the
            per-op energies the device view needs.

    Returns:
        ``(breakdowns, not_shown)``: one breakdown per profile asked (``available=False`` with the reason where a
        profile publishes no per-op energy), and, for the default, the profiles left out and why.

    Raises:
        UsageError: an unknown profile name or a bad profile file.
    """
    from neuroposter.profiling.energy import estimate_energy
    from neuroposter.profiling.profiles import load_profile

    names = list(profiles) if profiles is not None else default_profiles()
    loaded = [load_profile(n) for n in names]   # all validated before any is priced
    out: list[EnergyBreakdown] = []
    not_shown: dict[str, str] = {}
    for p in loaded:
        try:
            b = estimate_energy(counts, p, view=VIEW)
        except ValueError as exc:   # a view the profile refuses
            b = EnergyBreakdown(counts.name, p.name, VIEW, available=False, reason=str(exc), scope=p.scope,
                                evidence=p.evidence)
        if profiles is None and not b.available:
            not_shown[p.name] = b.reason
            continue
        out.append(b)
    return tuple(out), not_shown


def profile_graph(graph: nir.NIRGraph, x: np.ndarray, inputs: InputSpec, *, source: str | os.PathLike[str],
                  profiles: Sequence[str] | None = None) -> ForeignProfile:
    """Runs ``graph`` on ``x``, counts its ops and prices them on each profile.

    Args:
        graph: a runnable graph (:func:`load_graph`).
        x: inputs ``[T, B, *input_shape]`` (:func:`read_inputs` or :func:`bernoulli_inputs`).
        inputs: where ``x`` came from.
        source: the graph file (the counts' name is its stem).
        profiles: as for :func:`price`.

    Returns:
        The :class:`ForeignProfile`.

    Raises:
        UsageError: ``x`` of the wrong shape, or an unknown profile.
        SimulationError: the simulator fails on a node (named).
    """
    from neuroposter.ir.graph_io import graph_stats
    from neuroposter.ir.simulate import simulate
    from neuroposter.profiling.counts import count_snn
    from neuroposter.profiling.stored import SNN_STATE_BITS, SNN_WEIGHT_BITS

    shape = input_shape(graph)
    _check_shape(np.asarray(x), shape, "the inputs")
    src = Path(source)
    res = simulate(graph, x, mode=_MODE, arithmetic=_ARITHMETIC, record=True)
    meta = {"source": str(src), "producer": str(graph.metadata.get("producer", "unknown")),
            "dt": float(graph.metadata["dt"]), "inputs": inputs.to_dict(), "T": int(x.shape[0]),
            "samples": int(x.shape[1]), "simulator": f"neuroposter.ir.simulate(mode={_MODE!r}, "
                                                     f"arithmetic={_ARITHMETIC!r})"}
    counts = count_snn(graph, res, x=x, weight_bits=SNN_WEIGHT_BITS, state_bits=SNN_STATE_BITS, name=src.stem,
                       meta=meta)
    energy, not_shown = price(counts, profiles)
    return ForeignProfile(source=str(src), graph=graph, stats=graph_stats(graph), inputs=inputs, counts=counts,
                          energy=energy, not_shown=not_shown)


# -------------------------------------------------------------------------------------------------
# rendering and the artifact
# -------------------------------------------------------------------------------------------------


def energy_text(pj: float | None) -> str:
    """An energy in pJ as a short text in the largest unit that keeps it >= 1 (``"1.2 mJ"``; None: unbounded)."""
    if pj is None:
        return "unbounded"
    for unit, scale in (("mJ", 1e9), ("uJ", 1e6), ("nJ", 1e3)):
        if abs(pj) >= scale:
            return f"{pj / scale:.3g} {unit}"
    return f"{pj:.3g} pJ"


def _num(v: float) -> str:
    return f"{v:,.0f}" if float(v).is_integer() else f"{v:,.1f}"


def format_profile(r: ForeignProfile) -> list[str]:
    """The profile as text lines: graph summary, spikes per layer, op counts, one energy line per profile."""
    s, c = r.stats, r.counts
    types = ", ".join(f"{k} {v}" for k, v in s["nodes_by_type"].items())
    lines = [(f"graph {r.source} (producer {r.producer}, dt {r.dt:g}): {sum(s['nodes_by_type'].values())} nodes "
              f"({types}), {s['neurons']:,} neurons ({s['spiking_neurons']:,} spiking), "
              f"{s['synapses_stored']:,} synapses (stored weights; {s['synapses_expanded']:,} pre/post pairs)"),
             f"inputs: {r.inputs.describe()}; T = {c.T} steps per inference, averaged over {c.samples} samples",
             "spikes per inference by layer:"]
    neurons = [lc for lc in c.layers if lc.kind in ("neuron", "mask")]
    w = max([len(lc.name) for lc in neurons] + [5])
    lines += [f"  {lc.name:<{w}} {lc.op_type:<9} {lc.n_neurons:>7,} neurons  {_num(lc.spikes):>10} spikes  "
              f"firing rate {lc.firing_rate if lc.firing_rate is not None else float('nan'):.3f}" for lc in neurons]
    lines.append(f"op counts per inference: synaptic ACs {_num(c.acs)}, MACs {_num(c.macs)} (inputs not 0/1), "
                 f"neuron updates {_num(c.neuron_updates_dense)} ({_num(c.neuron_updates_effective)} driven), "
                 f"spikes {_num(c.spikes)}; dense equivalent {_num(c.dense_ops)} synaptic ops")
    lines.append("energy per inference (device view: these op counts x the profile's published per-op energies):")
    pw = max([len(b.profile) for b in r.energy] + [7])
    lines.append(f"  {'profile':<{pw}}  {'energy':>10}  {'range':<23} {'evidence':<10} includes")
    for b in r.energy:
        if not b.available:
            lines.append(f"  {b.profile:<{pw}}  {'n/a':>10}  {'':<23} {b.evidence:<10} ({b.reason})")
            continue
        rng = f"{energy_text(b.low_pj)} - {energy_text(b.high_pj)}"
        lines.append(f"  {b.profile:<{pw}}  {energy_text(b.total_pj):>10}  {rng:<23} {b.evidence:<10} "
                     f"{'; '.join(b.includes)}")
    if not r.energy:
        lines.append("  (no profile priced)")
    if r.not_shown:
        lines.append("  not shown (no per-op energy published): " + ", ".join(sorted(r.not_shown)))
    return lines


def energy_rows(r: ForeignProfile) -> list[dict[str, Any]]:
    """One ``energy.csv`` row per priced profile (columns :data:`ENERGY_COLUMNS`; energies in pJ per inference)."""
    from neuroposter.profiling.profiles import load_profile

    rows = []
    for b in r.energy:
        rows.append({"profile": b.profile, "kind": load_profile(b.profile).kind, "scope": b.scope, "view": b.view,
                     "available": b.available, "energy_pj": b.total_pj, "low_pj": b.low_pj, "high_pj": b.high_pj,
                     "evidence": b.evidence, "reason": b.reason, "includes": "; ".join(b.includes),
                     "excludes": "; ".join(b.excludes)})
    return rows


def summary_of(r: ForeignProfile) -> dict[str, Any]:
    """The ``summary.json`` content: graph, inputs, per-layer spikes, op totals, energy per profile."""
    c = r.counts
    return {
        "graph": {"source": r.source, "producer": r.producer, "dt": r.dt, "input_shape": list(input_shape(r.graph)),
                  **{k: r.stats[k] for k in ("nodes_by_type", "neurons", "spiking_neurons", "synapses_stored",
                                             "synapses_expanded", "edges")}},
        "inputs": r.inputs.to_dict(),
        "per_inference": {"T": c.T, "samples_averaged": c.samples, "acs": c.acs, "macs": c.macs,
                          "synops": c.synops, "dense_ops": c.dense_ops,
                          "neuron_updates": c.neuron_updates_dense,
                          "neuron_updates_driven": c.neuron_updates_effective, "spikes": c.spikes},
        "layers": [{"name": lc.name, "type": lc.op_type, "kind": lc.kind, "neurons": lc.n_neurons,
                    "spikes": lc.spikes, "firing_rate": lc.firing_rate, "synops": lc.synops}
                   for lc in c.layers],
        "energy": {"view": VIEW, "unit": "pJ per inference",
                   "profiles": {b.profile: {"available": b.available, "energy_pj": b.total_pj, "low_pj": b.low_pj,
                                            "high_pj": b.high_pj, "reason": b.reason, "includes": list(b.includes),
                                            "excludes": list(b.excludes)} for b in r.energy},
                   "not_shown": dict(r.not_shown)},
    }


def write_profile(r: ForeignProfile, out: str | os.PathLike[str], *, force: bool = False,
                  config: Mapping[str, Any] | None = None) -> Path:
    """Writes the ``profile`` artifact folder ``out`` atomically (:func:`neuroposter.artifact.write_artifact`).

    Files: ``graph.nir`` (the source file, byte for byte), ``op_counts.json``
    (:func:`neuroposter.profiling.stored.write_op_counts`, entry ``"model"``), ``energy.csv``
    (:func:`energy_rows`), ``summary.json`` (:func:`summary_of`) and ``manifest.json`` (kind ``"profile"``).

    Args:
        r: the profile.
        out: the artifact folder.
        force: replace an existing ``profile`` artifact there.
        config: the options that produced it (stored in the manifest).

    Returns:
        ``out``.

    Raises:
        UsageError: a destination that is not an empty folder, a new path or (with ``force``) a profile
            artifact, or one that overlaps the graph file.
    """
    from neuroposter._io import atomic_write_json, sha256_file
    from neuroposter.artifact import write_artifact
    from neuroposter.manifest import write_manifest
    from neuroposter.profiling.stored import StoredCounts, write_op_counts

    out = Path(out)
    src = Path(r.source)
    protect = [src] + ([Path(r.inputs.path)] if r.inputs.path else [])
    with write_artifact(out, PROFILE_KIND, force=force, protect=protect, option="--out") as tmp:
        shutil.copyfile(src, tmp / GRAPH_NAME)
        c = r.counts
        write_op_counts(tmp, {"model": StoredCounts(
            c, f"foreign NIR graph {src.name} (producer {r.producer}, dt {r.dt:g}) simulated on {c.samples} samples "
               f"of {r.inputs.describe()} (T={c.T}, same-step, float)", {"samples_requested": c.samples})})
        buf = io.StringIO()
        w = csv.DictWriter(buf, fieldnames=list(ENERGY_COLUMNS), lineterminator="\n")
        w.writeheader()
        w.writerows(energy_rows(r))
        (tmp / ENERGY_NAME).write_text(buf.getvalue(), encoding="utf-8")
        atomic_write_json(tmp / SUMMARY_NAME, summary_of(r))
        inputs: dict[str, Any] = {"graph": {"path": str(src), "sha256": sha256_file(src)}}
        if r.inputs.path:
            inputs["inputs"] = {"path": r.inputs.path, "sha256": sha256_file(r.inputs.path)}
        write_manifest(tmp, PROFILE_KIND, inputs=inputs, config=dict(config or {}),
                       extra={"outputs": sorted([GRAPH_NAME, "op_counts.json", ENERGY_NAME, SUMMARY_NAME])})
    return out
