r"""``neuroposter.profile(...)``: one call from a network and its inputs to NeuroBench-named metrics and energies.

:func:`profile` takes a project model (an SDT, a spiking MLP or a chip-fitted chain: anything
:func:`neuroposter.ir.lower.lower_model` lowers), a ``nir.NIRGraph`` or a path to a ``.nir`` file (written by
neuroposter, snnTorch, Norse, ...; made runnable by :func:`neuroposter.ir.interop.load_foreign`), runs it in the
reference simulator on the given spikes, counts its operations (:func:`neuroposter.profiling.counts.count_snn`)
and prices them (:func:`neuroposter.profiling.energy.estimate_energy`). :func:`from_counts` does the same from op
counts that already exist (a bundle's ``op_counts.json``); both return a :class:`ProfileResult`, which writes the
NeuroBench-style ``results.json`` (:meth:`ProfileResult.to_json`). Every run and every export bundle gets one
(:func:`write_run_results`, :func:`write_bundle_results`).

NeuroBench metrics (``ProfileResult.metrics``, named and shaped as the dict ``neurobench.Benchmark.run()``
returns; all per sample = one inference of ``T`` steps, averaged over the samples):

``synaptic_operations``: ``{"Effective_MACs", "Effective_ACs", "Dense"}``
    NeuroBench's ``SynapticOperations``: every connection layer with binarised inputs and weights and no bias,
    summed (= sum over non-zero inputs of their fan-out); a layer whose inputs all lie in {-1, 0, 1} counts
    ACs, otherwise MACs; ``Dense`` = the same with every input active. *Differs*: NeuroBench decides AC vs MAC
    per forward call (per step), the project per layer over the whole run (a layer that ever sees a non-binary
    input counts all its ops as MACs); the SDSA token sums/broadcasts (0/1 weights) are connection layers and
    count as ACs; ANN counts come from the ONNX graph, where every MAC counts (zero activations are not
    skipped, so ``Effective_MACs == Dense``; NeuroBench would skip exact-zero ReLU outputs).
``activation_sparsity``
    NeuroBench's ``ActivationSparsity``: zero activations / all activations over every spiking neuron layer,
    step and sample = ``1 - spikes / neuron-steps`` (LIF, IF, CubaLIF and Threshold nodes). *Differs*: the SDSA
    AND masks (Threshold nodes fed by two spike tensors) are products, not neuron layers, and are left out;
    non-spiking readouts (LI, I) too. ANN: None (ONNX counts hold no activation values; not measured).
``membrane_updates``
    NeuroBench's ``MembraneUpdates`` counts the neuron-steps whose membrane potential changed (and every neuron
    at the first step). The reference simulator does not record membranes, so the project reports its *driven*
    updates: neuron-steps whose input carried at least one event or a non-zero bias/leak current (the updates
    an event-driven chip performs). A leaky neuron decaying without input is a NeuroBench update but not a
    driven one, and a first step without input is not one. ANN: 0 (no membranes; NeuroBench reports 0 too).
``connection_sparsity``
    NeuroBench's ``ConnectionSparsity``: zero weights / all weights of the connection layers (not rounded;
    NeuroBench rounds to 4 decimals). Counted on the deployed NIR graph (BatchNorm folded into the weights).
    None where only stored op counts are known (they hold no weight values).
``parameter_count``
    Weight elements of the deployed network's connection layers (BatchNorm folded; the SDSA token-sum and
    broadcast maps included). *Differs*: NeuroBench counts the torch model's parameters (BatchNorm, biases and
    the unfolded weights); biases are not counted here.
``footprint``
    Bytes of those weights at the counts' deployment precision (``weight_bits``: 8 for SNN counts, 32 for
    ONNX). *Differs*: NeuroBench counts the torch model's parameters and buffers at their storage dtype
    (float32: 4 bytes each).

Beside the NeuroBench metrics: the first connection layer on its own (:attr:`ProfileResult.first_layer`: it
takes the encoded input; with multi-level counts or direct real-valued inputs its ops are MACs, and the
SDT-paper convention prices it as dense MACs even when its inputs are spikes, which is where most of that
estimate lies), per-layer counts (:attr:`ProfileResult.layers`, a pandas DataFrame) and one energy estimate per
view and profile (what it includes and excludes, its sources; unavailable ones with the reason).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable, Mapping, Sequence

import numpy as np

from neuroposter.profiling.counts import OpCounts
from neuroposter.profiling.energy import VIEWS, EnergyBreakdown

if TYPE_CHECKING:  # pragma: no cover
    import pandas as pd

__all__ = [
    "RESULTS_NAME",
    "FORMAT",
    "FORMAT_VERSION",
    "NEUROBENCH_METRICS",
    "RUN_SAMPLES",
    "ProfileResult",
    "profile",
    "from_counts",
    "neurobench_metrics",
    "first_layer_summary",
    "default_profiles",
    "price_views",
    "unavailable_result",
    "write_run_results",
    "write_bundle_results",
]

RESULTS_NAME = "results.json"
FORMAT = "neuroposter.results"
FORMAT_VERSION = 1
#: NeuroBench's metric names (``Benchmark.run()`` keys with string metric names), in the order written.
NEUROBENCH_METRICS = ("footprint", "connection_sparsity", "parameter_count", "activation_sparsity",
                      "membrane_updates", "synaptic_operations")
#: Test samples a run's ``results.json`` is measured on (the first ones; the nir bundle's ``count_samples``).
RUN_SAMPLES = 32
_MODE, _ARITHMETIC = "same_step", "float"
_SIMULATOR = f"neuroposter.ir.simulate(mode={_MODE!r}, arithmetic={_ARITHMETIC!r}, dtype='float64')"

_NOTES = {
    "synaptic_operations": "NeuroBench SynapticOperations per sample; AC vs MAC decided per layer over the whole run "
                           "(NeuroBench: per forward call); SDSA token sums/broadcasts count as ACs",
    "activation_sparsity": "1 - spikes / neuron-steps over the spiking neuron layers (SDSA AND masks and "
                           "non-spiking readouts left out)",
    "membrane_updates": "driven neuron updates (input event or bias/leak current) per sample; NeuroBench counts "
                        "changed membranes, including pure leak decay, which the simulator does not record",
    "connection_sparsity": "zero weights / weights of the deployed graph's connection layers (BatchNorm folded; "
                           "not rounded)",
    "parameter_count": "weight elements of the deployed graph's connection layers (BatchNorm folded, biases not "
                       "counted); NeuroBench counts the torch model's parameters",
    "footprint": "weight bytes at the deployment precision ({bits}-bit weights); NeuroBench counts the torch "
                 "model's float32 parameters and buffers",
}
_ANN_NOTES = {
    "synaptic_operations": "ANN counted from the ONNX graph: every MAC counts (Effective_MACs = Dense); NeuroBench "
                           "would skip exact-zero activations",
    "activation_sparsity": "unavailable: the ONNX op counts hold no activation values (ReLU outputs not recorded)",
    "membrane_updates": "an ANN has no membrane potentials (0; NeuroBench reports 0 too)",
}


# ------------------------------------------------------------------------------------------------- result


@dataclass(frozen=True)
class ProfileResult:
    """What :func:`profile` / :func:`from_counts` measured.

    Attributes:
        name: the network's label.
        counts: the op counts per inference (one sample of ``T`` steps, averaged over ``counts.samples``).
        metrics: NeuroBench's metrics dict (:data:`NEUROBENCH_METRICS`; None where unavailable).
        notes: per metric, how the project's definition differs from NeuroBench's, or why it is unavailable.
        first_layer: the first connection layer on its own (:func:`first_layer_summary`); None without one.
        energy: one breakdown per (view, profile[, variant]); ``available=False`` with the reason where a
            constant is unpublished or the profile refuses the view.
        profile_sources: profile name -> the sources its figures rest on.
        provenance: what was measured, on which inputs, with which simulator and precision.
        task: a run's test metrics beside its constant-predictor baselines (None outside a run).
        parts: further counted parts (a bundle's ``frontend`` or ``host`` entry), each a result of its own.
        graph: the NIR graph that was simulated (None when built from stored counts).
    """

    name: str
    counts: OpCounts | None
    metrics: Mapping[str, Any]
    notes: Mapping[str, str]
    first_layer: Mapping[str, Any] | None
    energy: tuple[EnergyBreakdown, ...]
    profile_sources: Mapping[str, tuple[str, ...]]
    provenance: Mapping[str, Any]
    task: Mapping[str, Any] | None = None
    parts: Mapping[str, ProfileResult] = field(default_factory=dict)
    graph: Any = field(default=None, compare=False, repr=False)

    @property
    def synaptic_operations(self) -> Mapping[str, float] | None:
        """NeuroBench's ``{"Effective_MACs", "Effective_ACs", "Dense"}`` per sample."""
        return self.metrics.get("synaptic_operations")

    @property
    def layers(self) -> pd.DataFrame:
        """Per-layer counts per sample (one row per connection / neuron / mask layer, in graph order)."""
        import pandas as pd

        return pd.DataFrame(_layer_rows(self.counts), columns=list(_LAYER_COLUMNS))

    def energy_of(self, view: str, profile: str, variant: str | None = None) -> EnergyBreakdown:
        """The breakdown of one view on one profile (``variant``: e.g. ``"first_layer=xT"``; default the first).

        Raises:
            KeyError: not priced (the message lists what was).
        """
        for b in self.energy:
            if b.view == view and b.profile == profile and (variant is None or b.variant == variant):
                return b
        have = ", ".join(sorted({f"{b.view}/{b.profile}" for b in self.energy})) or "nothing"
        raise KeyError(f"no {view!r} estimate on {profile!r} (priced: {have})")

    def energy_table(self) -> pd.DataFrame:
        """One row per estimate: view, profile, variant, available, energy_pj, low_pj, high_pj, evidence, reason."""
        import pandas as pd

        return pd.DataFrame([{"view": b.view, "profile": b.profile, "variant": b.variant, "available": b.available,
                              "energy_pj": b.total_pj, "low_pj": b.low_pj, "high_pj": b.high_pj,
                              "evidence": b.evidence, "scope": b.scope, "reason": b.reason} for b in self.energy])

    def to_dict(self) -> dict[str, Any]:
        """The ``results.json`` content (JSON-ready): NeuroBench's metrics dict under ``metrics``, then the
        project's first-layer view, totals, per-layer counts, energies and provenance."""
        from neuroposter._io import to_jsonable

        out: dict[str, Any] = {
            "format": FORMAT, "format_version": FORMAT_VERSION, "name": self.name,
            "metrics": {k: self.metrics.get(k) for k in NEUROBENCH_METRICS},
            "notes": dict(self.notes),
            "per": "sample (one inference of T steps, averaged over the samples)",
            "kind": None if self.counts is None else self.counts.kind,
            "T": None if self.counts is None else self.counts.T,
            "samples": None if self.counts is None else self.counts.samples,
            "first_layer": None if self.first_layer is None else dict(self.first_layer),
            "totals": None if self.counts is None else self.counts.totals(),
            "layers": _layer_rows(self.counts),
            "energy": {"unit": "pJ per inference",
                       "estimates": [_energy_dict(b, self.profile_sources.get(b.profile, ())) for b in self.energy]},
            "task": None if self.task is None else dict(self.task),
            "provenance": dict(self.provenance),
        }
        if self.parts:   # per-layer rows of a part are left out: its layers are listed in its op_counts.json entry
            out["parts"] = {k: {**v.to_dict(), "layers": None} for k, v in self.parts.items()}
        return to_jsonable(out)

    def to_json(self, path: str | os.PathLike[str]) -> Path:
        """Writes :meth:`to_dict` to ``path`` atomically (a folder gets ``results.json`` inside); returns the file."""
        from neuroposter._io import atomic_write_json

        p = Path(path)
        if p.is_dir():
            p = p / RESULTS_NAME
        atomic_write_json(p, self.to_dict())
        return p


_LAYER_COLUMNS = ("name", "op_type", "kind", "first_layer", "input", "neurons", "spikes", "firing_rate",
                  "activation_sparsity", "effective_acs", "effective_macs", "synops", "dense_ops",
                  "membrane_updates", "neuron_updates_dense", "n_weights", "weight_bytes", "sdsa")


def _layer_rows(counts: OpCounts | None) -> list[dict[str, Any]]:
    if counts is None:
        return []
    first = counts.first_layer
    rows = []
    for lc in counts.layers:
        neuron = lc.kind in ("neuron", "mask")
        rate = lc.firing_rate
        rows.append({
            "name": lc.name, "op_type": lc.op_type, "kind": lc.kind,
            "first_layer": first is not None and lc.name == first.name,
            "input": None if neuron else ("binary" if lc.effective_macs == 0 else "non-binary"),
            "neurons": lc.n_neurons if neuron else None, "spikes": lc.spikes if neuron else None,
            "firing_rate": rate, "activation_sparsity": None if rate is None else 1.0 - rate,
            "effective_acs": lc.effective_acs, "effective_macs": lc.effective_macs, "synops": lc.synops,
            "dense_ops": lc.dense_ops,
            "membrane_updates": lc.updates_effective if lc.kind == "neuron" else None,
            "neuron_updates_dense": lc.updates_dense if lc.kind == "neuron" else None,
            "n_weights": lc.n_weights, "weight_bytes": lc.weight_bytes, "sdsa": lc.sdsa,
        })
    return rows


def _energy_dict(b: EnergyBreakdown, sources: Sequence[str]) -> dict[str, Any]:
    d = b.to_dict()
    d.pop("per_layer", None)   # per-layer energies: price ProfileResult.layers / counts; kept out of the file
    d["total_mj"] = b.total_mj
    d["sources"] = list(sources)
    return d


# ------------------------------------------------------------------------------------------------ metrics


def _whole(v: float) -> float | int:
    return int(v) if float(v).is_integer() else float(v)


def neurobench_metrics(counts: OpCounts, graph: Any | None = None) -> tuple[dict[str, Any], dict[str, str]]:
    """NeuroBench's metrics from op counts (and, for ``connection_sparsity``, the counted graph's weights).

    Args:
        counts: per-inference op counts (:func:`~neuroposter.profiling.counts.count_snn` or ``count_onnx``).
        graph: the NIR graph the counts were made on (a ``nir.NIRGraph`` or its flattened ``Graph``); None:
            ``connection_sparsity`` is unavailable.

    Returns:
        ``(metrics, notes)``: the metrics dict (module docstring) and, per metric, how it differs from
        NeuroBench's definition or why it is None.
    """
    notes = {k: v.format(bits=counts.weight_bits) for k, v in _NOTES.items()}
    ann = counts.kind == "ann"
    if ann:
        notes.update(_ANN_NOTES)
    nb = counts.neurobench()
    metrics: dict[str, Any] = {
        "footprint": _whole(sum(lc.weight_bytes for lc in counts.layers)),
        "parameter_count": int(counts.n_weights),
        "synaptic_operations": {"Effective_MACs": nb["Effective_MACs"], "Effective_ACs": nb["Effective_ACs"],
                                "Dense": nb["Dense"]},
    }
    if ann:
        metrics["activation_sparsity"] = None
        metrics["membrane_updates"] = 0.0
    else:
        from neuroposter.ir.nodes import names

        spiking = set(names(role="neuron", spiking=True))
        act = [lc for lc in counts.layers if lc.kind == "neuron" and lc.op_type in spiking]
        steps = sum(lc.updates_dense for lc in act)
        if steps > 0:
            metrics["activation_sparsity"] = 1.0 - sum(lc.spikes for lc in act) / steps
        else:
            metrics["activation_sparsity"] = None
            notes["activation_sparsity"] = "unavailable: the network has no spiking neuron layer"
        metrics["membrane_updates"] = float(sum(lc.updates_effective for lc in counts.layers if lc.kind == "neuron"))
    metrics["connection_sparsity"] = None
    if graph is None:
        notes["connection_sparsity"] = ("unavailable: stored op counts hold no weight values "
                                        "(neuroposter.profile on the graph measures it)")
    else:
        sp = _connection_sparsity(counts, graph)
        if sp is None:
            notes["connection_sparsity"] = "unavailable: no weighted connection layer"
        metrics["connection_sparsity"] = sp
    return {k: metrics[k] for k in NEUROBENCH_METRICS}, notes


def _connection_sparsity(counts: OpCounts, graph: Any) -> float | None:
    from neuroposter.ir.graph import Graph, flatten

    g = graph if isinstance(graph, Graph) else flatten(graph)
    zeros = total = 0
    for lc in counts.layers:
        if lc.kind != "synapse" or lc.name not in g.nodes:
            continue
        w = getattr(g.nodes[lc.name].nir, "weight", None)   # pooling layers have none: not weights
        if w is None:
            continue
        w = np.asarray(w)
        zeros += int(np.count_nonzero(w == 0))
        total += int(w.size)
    return None if total == 0 else zeros / total


def first_layer_summary(counts: OpCounts, energy: Iterable[EnergyBreakdown] = ()) -> dict[str, Any] | None:
    """The first connection layer (the encoding layer) on its own.

    Keys: ``name``, ``op_type``, ``input`` (``"binary"``: its ops are ACs; ``"non-binary"``: MACs, e.g. multi-level
    spike counts or direct real-valued input), ``effective_macs``, ``effective_acs``, ``dense_ops`` (all steps),
    ``dense_ops_per_step``, ``sdt_paper_macs`` (``{"once": dense ops of one step, "xT": of every step}``: the MACs
    the SDT papers price it as, whatever its inputs), ``share_of_synaptic_ops`` (its effective ops / all
    effective synaptic ops) and ``share_of_sdt_paper_energy`` (per ``profile/variant``: its part of the SDT-paper
    estimate). None when the network has no connection layer.
    """
    first = counts.first_layer
    if first is None:
        return None
    eff = first.effective_acs + first.effective_macs
    total = counts.synops if counts.kind == "snn" else counts.macs
    per_step = first.dense_ops / max(counts.T, 1)
    shares: dict[str, float] = {}
    for b in energy:
        if b.view == "sdt_paper" and b.available and b.total_pj:
            part = b.term_pj("encoding_mac") if counts.kind == "snn" else b.per_layer.get(first.name, 0.0)
            shares[f"{b.profile}/{b.variant}" if b.variant else b.profile] = part / b.total_pj
    return {"name": first.name, "op_type": first.op_type,
            "input": "binary" if first.effective_macs == 0 else "non-binary",
            "effective_macs": first.effective_macs, "effective_acs": first.effective_acs,
            "dense_ops": first.dense_ops, "dense_ops_per_step": per_step,
            "sdt_paper_macs": {"once": per_step, "xT": first.dense_ops},
            "share_of_synaptic_ops": eff / total if total else None,
            "share_of_sdt_paper_energy": shares}


# ----------------------------------------------------------------------------------------------- pricing


def default_profiles() -> dict[str, tuple[str, ...] | None]:
    """The default pricing: view -> profiles (None: every profile in ``hardware_profiles/``).

    ``sdt_paper`` on Horowitz 45 nm fp32 (the papers' 4.6 / 0.9 pJ), ``precision`` on the three Horowitz
    precisions, ``memory`` on Lemaire's 45 nm model and Horowitz fp32, ``device`` on every profile.
    """
    return {"sdt_paper": ("horowitz_45nm_fp32",),
            "precision": ("horowitz_45nm_fp32", "horowitz_45nm_fp16", "horowitz_45nm_int8"),
            "memory": ("lemaire_45nm", "horowitz_45nm_fp32"),
            "device": None}


def _plan(profiles: Any) -> list[tuple[str, str]]:
    """``profiles`` (None, a name, names, or view -> names) as ``[(view, profile), ...]``."""
    from neuroposter.errors import UsageError
    from neuroposter.profiling.profiles import list_profiles

    if profiles is None:
        profiles = default_profiles()
    if isinstance(profiles, (str, os.PathLike)):
        profiles = [profiles]
    if not isinstance(profiles, Mapping):
        profiles = {v: list(profiles) for v in VIEWS}
    unknown = sorted(set(profiles) - set(VIEWS))
    if unknown:
        raise UsageError(f"unknown energy view(s) {unknown}; choose from {', '.join(VIEWS)}")
    plan = []
    for view in VIEWS:
        if view not in profiles:
            continue
        names = profiles[view]
        for p in (list_profiles() if names is None else ([names] if isinstance(names, str) else names)):
            plan.append((view, str(p)))
    return plan


def price_views(counts: OpCounts, profiles: Any = None
                ) -> tuple[tuple[EnergyBreakdown, ...], dict[str, tuple[str, ...]]]:
    """Prices ``counts`` per view and profile.

    Args:
        counts: per-inference op counts.
        profiles: None (:func:`default_profiles`), a profile name or YAML path (every view), a list of them
            (every view on each), or a mapping view -> names (None: every profile).

    Returns:
        ``(breakdowns, sources)``: one breakdown per (view, profile) -- two for an SNN's ``sdt_paper`` view
        (first layer priced once, and once per step) -- with ``available=False`` and the reason where a
        constant is unpublished or the profile refuses the view (an all-in figure is never split into
        per-term views); and each profile's sources.

    Raises:
        UsageError: an unknown view. ProfileError: an unknown profile or a bad profile file.
    """
    from neuroposter.profiling.energy import estimate_energy
    from neuroposter.profiling.profiles import load_profile

    plan = _plan(profiles)
    loaded = {p: load_profile(p) for p in dict.fromkeys(p for _, p in plan)}   # all validated first
    out: list[EnergyBreakdown] = []
    for view, name in plan:
        prof = loaded[name]
        variants = ("once", "xT") if view == "sdt_paper" and counts.kind == "snn" else ("once",)
        for fl in variants:
            try:
                out.append(estimate_energy(counts, prof, view=view, first_layer=fl))
            except ValueError as exc:   # the profile refuses the view (all-in figures)
                out.append(EnergyBreakdown(counts.name, prof.name, view,
                                           variant=f"first_layer={fl}" if len(variants) > 1 else "",
                                           available=False, reason=str(exc), scope=prof.scope,
                                           evidence=prof.evidence))
    return tuple(out), {p.name: tuple(p.sources) for p in loaded.values()}


# ------------------------------------------------------------------------------------------ the functions


def from_counts(counts: OpCounts, *, profiles: Any = None, graph: Any | None = None,
                provenance: Mapping[str, Any] | None = None, name: str | None = None) -> ProfileResult:
    """The result of op counts that exist already (a bundle's stored counts, or :func:`profile`'s own).

    Args:
        counts: per-inference op counts.
        profiles: as for :func:`price_views`.
        graph: the NIR graph the counts were made on (for ``connection_sparsity``).
        provenance: what was counted, on which inputs.
        name: the label (default ``counts.name``).
    """
    energy, sources = price_views(counts, profiles)
    metrics, notes = neurobench_metrics(counts, graph)
    prov = {"counts": {"T": counts.T, "samples": counts.samples, "weight_bits": counts.weight_bits,
                       "state_bits": counts.state_bits, "meta": dict(counts.meta)},
            **dict(provenance or {})}
    return ProfileResult(name=name or counts.name, counts=counts, metrics=metrics, notes=notes,
                         first_layer=first_layer_summary(counts, energy), energy=energy,
                         profile_sources=sources, provenance=prov, graph=graph)


def _as_array(x: Any) -> np.ndarray:
    if hasattr(x, "detach"):
        x = x.detach().cpu().numpy()
    a = np.asarray(x)
    if a.dtype.kind not in "biuf":
        from neuroposter.errors import UsageError

        raise UsageError(f"inputs must be numeric spikes [T, B, ...], got dtype {a.dtype}")
    return a.astype(np.float64)


def _resolve(network: Any, inputs: Any, *, name: str | None, producer: str | None, dt: float | None
             ) -> tuple[Any, np.ndarray, str, dict[str, Any]]:
    """(runnable graph, graph-layout inputs, name, provenance) of what :func:`profile` was given."""
    import nir

    from neuroposter.errors import UsageError
    from neuroposter.profiling import foreign

    if isinstance(network, (str, os.PathLike)):
        graph = foreign.load_graph(network, producer=producer, dt=dt)
        src = Path(network)
        label, prov = name or src.stem, {"source": str(src), "source_kind": "nir file"}
        x = _as_array(inputs)
    elif isinstance(network, nir.NIRGraph):
        meta = dict(network.metadata or {})
        if meta.get("producer") == "neuroposter" and producer is None and dt is None:
            graph = network                          # the project's own lowering: runnable as it is
        else:
            from neuroposter.ir.interop import load_foreign

            graph = load_foreign(network, producer=producer, dt=dt)
        foreign.check_runnable(graph)
        label = name or str(meta.get("source_run") or "") or "graph"
        prov, x = {"source": "nir.NIRGraph", "source_kind": "nir graph"}, _as_array(inputs)
    elif hasattr(network, "state_dict") and callable(getattr(network, "forward", None)):
        from neuroposter.ir.lower import lower_model, to_graph_input

        spikes = _as_array(inputs)
        if spikes.ndim != (5 if hasattr(network, "stem") else 4):   # a pixel model: currents [T, B, 3, S, S]
            raise UsageError(f"a project model takes inputs [T, B, N, D] (its own layout; a pixel model "
                             f"[T, B, 3, S, S]), got shape "
                             f"{list(spikes.shape)}")
        label = name or type(network).__name__
        graph = lower_model(network, T=int(spikes.shape[0]), source_run=label)
        x = to_graph_input(spikes, graph).astype(np.float64)
        prov = {"source": f"{type(network).__module__}.{type(network).__name__}", "source_kind": "project model",
                "lowering": "neuroposter.ir.lower.lower_model (BatchNorm folded, float64)",
                "model_input_shape": list(spikes.shape)}
    else:
        raise UsageError(f"cannot profile a {type(network).__name__}: give a project model (sdt, snn-mlp, "
                         "chip-snn), a nir.NIRGraph or a path to a .nir file")
    shape = foreign.input_shape(graph)
    foreign._check_shape(x, shape, "the inputs")
    if not np.isfinite(x).all():
        raise UsageError("the inputs hold non-finite values")
    meta = dict(graph.metadata or {})
    prov.update({"producer": str(meta.get("producer", producer or "unknown")), "dt": float(meta.get("dt", 1.0)),
                 "graph_input_shape": list(x.shape)})
    return graph, x, label, prov


def profile(model_or_nir_graph: Any, inputs: Any, profiles: Any = None, *, name: str | None = None,
            producer: str | None = None, dt: float | None = None, weight_bits: int | None = None,
            state_bits: int | None = None) -> ProfileResult:
    """Runs a network on spike inputs, counts its operations under NeuroBench's names and prices them.

    Args:
        model_or_nir_graph: a project model (``SpikeDrivenTransformer``, ``SpikingMLPNet``, ``ChipSNN``: lowered
            with :func:`neuroposter.ir.lower.lower_model`), a ``nir.NIRGraph`` or a path to a ``.nir`` file
            (another tool's graph is made runnable by :func:`neuroposter.ir.interop.load_foreign`).
        inputs: spikes ``[T, B, ...]`` (numpy or torch): a project model's own layout ``[T, B, N, D]``
            (converted with :func:`neuroposter.ir.lower.to_graph_input`), else the graph's input shape.
        profiles: which energies: None (:func:`default_profiles`), a profile name, a list, or view -> names.
        name: the label (default: the model's class, the file's stem, or the graph's ``source_run``).
        producer: the tool that wrote a foreign graph (``snntorch``, ``norse``): its default ``dt``.
        dt: a foreign graph's time step, overriding what it records.
        weight_bits: deployment weight precision of the byte terms (default 8, as the stored NIR counts).
        state_bits: deployment neuron-state precision (default 16).

    Returns:
        The :class:`ProfileResult` (per inference = one sample of ``T`` steps, averaged over the ``B`` samples).

    Raises:
        UsageError: inputs of the wrong shape, an unsupported object, an unknown view; ProfileError: an unknown
        profile; LoweringError: a model the lowering does not support; InteropError / DataError: a graph that
        cannot be read or run (the node named).
    """
    from neuroposter import __version__
    from neuroposter.ir.simulate import simulate
    from neuroposter.profiling.counts import count_snn
    from neuroposter.profiling.stored import SNN_STATE_BITS, SNN_WEIGHT_BITS

    graph, x, label, prov = _resolve(model_or_nir_graph, inputs, name=name, producer=producer, dt=dt)
    res = simulate(graph, x, mode=_MODE, arithmetic=_ARITHMETIC, record=True)
    wb = int(weight_bits or SNN_WEIGHT_BITS)
    sb = int(state_bits or SNN_STATE_BITS)
    counts = count_snn(graph, res, x=x, weight_bits=wb, state_bits=sb, name=label,
                       meta={"T": int(x.shape[0]), "samples": int(x.shape[1]), "simulator": _SIMULATOR})
    prov.update({"simulator": _SIMULATOR, "counter": "neuroposter.profiling.counts.count_snn",
                 "neuroposter": __version__})
    return from_counts(counts, profiles=profiles, graph=graph, provenance=prov, name=label)


def unavailable_result(name: str, reason: str, *, provenance: Mapping[str, Any] | None = None,
                       task: Mapping[str, Any] | None = None) -> ProfileResult:
    """A result with no counts: every metric None, each note the ``reason`` (never an invented number)."""
    return ProfileResult(name=name, counts=None, metrics={k: None for k in NEUROBENCH_METRICS},
                         notes={k: f"unavailable: {reason}" for k in NEUROBENCH_METRICS}, first_layer=None,
                         energy=(), profile_sources={}, provenance=dict(provenance or {}), task=task)


def _task(metrics: Mapping[str, Any] | None) -> dict[str, Any] | None:
    if not metrics:
        return None
    return {"split": "test", "test": metrics.get("test"), "baselines": metrics.get("baselines"),
            "note": "multi-label genre prediction; every metric beside its constant-predictor baselines"}


def write_run_results(directory: str | os.PathLike[str], model: Any, test_inputs: Any, *, kind: str, name: str,
                      metrics: Mapping[str, Any] | None = None, profiles: Any = None) -> Path:
    """Writes a run's ``results.json`` (call it before the run's manifest, so the file is hashed).

    An SNN run: :func:`profile` of ``model`` on the first :data:`RUN_SAMPLES` of ``test_inputs`` (the model's
    own layout ``[T, B, N, D]``). An ANN run: no counts here (they come from its ONNX export), so every metric is
    None with the reason. The run's test metrics and baselines go under ``task``. A profiling failure never
    loses a finished run: the file then says what failed.
    """
    import logging

    directory = Path(directory)
    task = _task(metrics)
    if kind != "snn":
        res = unavailable_result(name, "an ANN run is counted from its ONNX graph: `neuroposter export --target "
                                       f"onnx --run {name}` writes results.json into the bundle", task=task)
        return res.to_json(directory / RESULTS_NAME)
    x = test_inputs[:, :RUN_SAMPLES]
    try:
        res = profile(model, x, profiles, name=name)
    except Exception as exc:  # noqa: BLE001 - a profiling failure must not lose the trained run
        logging.getLogger(__name__).warning("run %s: results.json without counts (%s: %s)", name,
                                            type(exc).__name__, exc)
        res = unavailable_result(name, f"profiling failed ({type(exc).__name__}: {exc})", task=task)
        return res.to_json(directory / RESULTS_NAME)
    res = replace(res, task=task, provenance={**res.provenance, "inputs": f"the first {int(x.shape[1])} test "
                                                                          "samples of the run's inputs"})
    return res.to_json(directory / RESULTS_NAME)


def write_bundle_results(directory: str | os.PathLike[str], *, name: str, profiles: Any = None) -> Path:
    """Writes a bundle's ``results.json`` from its stored op counts (``op_counts.json`` in ``directory``).

    Entry ``model`` is the result; the other entries (``frontend``: the DenseNet-169 front end of an image
    model; ``host``: a chip bundle's host-side layers) are its ``parts``. A bundle without stored counts (a
    refusal verdict) gets a result whose metrics are None, with the reason.
    """
    from neuroposter.profiling.stored import OP_COUNTS_NAME, read_op_counts

    directory = Path(directory)
    if not (directory / OP_COUNTS_NAME).is_file():
        res = unavailable_result(name, "the bundle stores no op counts (a refused or uncounted export)")
        return res.to_json(directory / RESULTS_NAME)
    entries = read_op_counts(directory)

    def one(key: str) -> ProfileResult:
        e = entries[key]
        return from_counts(e.counts, profiles=profiles, name=e.counts.name,
                           provenance={"source": f"{OP_COUNTS_NAME} entry {key!r}", "entry": key,
                                       "description": e.provenance, "info": dict(e.info)})

    if "model" not in entries:
        res = unavailable_result(name, f"{OP_COUNTS_NAME} has no 'model' entry")
    else:
        res = one("model")
    parts = {k: one(k) for k in entries if k != "model"}
    if parts:
        res = replace(res, parts=parts)
    return res.to_json(directory / RESULTS_NAME)
