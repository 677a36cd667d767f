"""Which models the report compares: a model card per run, and the standard architectures priced at the same input.

Issue #14: "the ``vit`` baseline is a 186k-parameter ViT trained from scratch on 96x96 images, not the ViT a reader
imagines (ViT-B/16: 17.56 GMAC); the report never says which ViT it is". Two tables answer it, computed from what
the workspace already holds (read-only, like the rest of :mod:`neuroposter.report`; nothing is exported or trained):

``model_cards(runs) -> pandas.DataFrame``
    One row per run (:class:`~neuroposter.report.collect.RunInfo`): ``run``, ``model``, ``kind``, ``architecture``
    (in words, from ``model.json`` with the model's defaults filled in, e.g. "SDT, 2 SDSA blocks, width 64, 4 heads,
    MLP 128, T=4, on 40 tokens of 1664-d DenseNet-169 features"), ``parameters`` (from ``checkpoint.pt``: the
    model's parameter tensors as stored; the architecture's count when the checkpoint is unreadable),
    ``trained_parameters`` (those the training updated: a frozen backbone is not), ``parameters_source``,
    ``input`` (what one inference reads), ``macs`` / ``synops`` per inference (the run's stored op counts,
    ``RunInfo.counts``; None without them), ``ops_source``, ``epochs_planned``, ``epochs_run``, ``best_epoch``,
    ``stopped_early``, ``training`` (the budget in words, e.g. "early-stopped after 14 of 40 epochs (patience 10);
    best epoch 4"; a quantisation-aware run says so) and ``notes``.
``model_cards_text(cards) -> list[str]``
    One Markdown bullet per card.
``stored_references(runs, bundles) -> (dict[str, StoredCounts], str)``
    The ``reference:<name>`` entries of ``op_counts.json`` (:mod:`neuroposter.profiling.reference_models`) from
    the ``onnx`` bundle of a run that stores the DenseNet-169 front end at the image size of the runs' feature store,
    and where they come from (or why there are none).
``reference_table(runs, bundles, profiles, *, evaluations=None, frontend_profile="jetson_agx_orin")
-> pandas.DataFrame``
    One row per reference model (DenseNet-169, ViT-B/16, ViT-S/16): ``reference``, ``title``, ``architecture``,
    ``parameters``, ``input_size`` (as priced), ``size_note``, ``macs``, ``other_ops``, per view ``<key>_mj``,
    ``<key>_low_mj``, ``<key>_high_mj`` (None: unbounded above), ``<key>_priced_on``, ``<key>_reason`` (empty when
    available), and ``status`` = :data:`NOT_TRAINED_HERE`. The views are the headline's ANN views
    (:func:`reference_evaluations`: SDT-paper fp32, Horowitz int8, Lemaire memory-aware, the ANN device profile),
    priced by :func:`neuroposter.profiling.energy.estimate_energy` on the stored counts exactly as the report prices
    an ANN run (:func:`neuroposter.report.tables.energy_table`). ``profiles``: name -> ``HardwareProfile``
    (``ReportData.profiles``; a profile not in it is loaded). Empty (with the columns) when no bundle stores them.
``reference_table_text(table, source="") -> list[str]``
    Markdown lines: what the rows are ("standard architecture, not trained here: cost only") and one bullet each.

Nothing here is wired into the report's sections; :mod:`neuroposter.report.build` calls these.
"""

from __future__ import annotations

import dataclasses
import inspect
import math
from pathlib import Path
from typing import Any, Mapping, Sequence

import pandas as pd

from neuroposter.profiling.energy import EnergyBreakdown, estimate_energy
from neuroposter.profiling.profiles import HardwareProfile, load_profile
from neuroposter.profiling.stored import StoredCounts, read_op_counts
from neuroposter.report.tables import (DEFAULT_FRONTEND_PROFILE, MEMORY_PROFILE, PAPER_PROFILE, Evaluation,
                                       _finite)

__all__ = ["model_cards", "model_cards_text", "stored_references", "reference_evaluations", "reference_table",
           "reference_table_text", "NOT_TRAINED_HERE", "CARD_COLUMNS", "REFERENCE_PREFIX"]

NOT_TRAINED_HERE = "standard architecture, not trained here: cost only"
REFERENCE_PREFIX = "reference:"
CARD_COLUMNS = ["run", "model", "kind", "architecture", "parameters", "trained_parameters", "parameters_source",
                "input", "macs", "synops", "ops_source", "epochs_planned", "epochs_run", "best_epoch",
                "stopped_early", "training", "notes"]
# the dataclass holding each model's hyper-parameters (the constructor's defaults), by registry name
_CONFIGS = {"sdt": ("neuroposter.models.sdt", "SDTConfig"),
            "snn-mlp": ("neuroposter.models.snn_mlp", "SpikingMLPConfig"),
            "chip-snn": ("neuroposter.models.chip_snn", "ChipSNNConfig"),
            "ann-transformer": ("neuroposter.models.ann_transformer", "ANNTransformerConfig")}
# keyword arguments that build the architecture without loading pretrained weights (the checkpoint holds them)
_NO_PRETRAINED = {"cnn": {"load_backbone_weights": False}, "vit": {"load_pretrained": False}}


# ----------------------------------------------------------------------------------------------- model cards


def _hyper(model: str, kwargs: Mapping[str, Any]) -> dict[str, Any]:
    """The model's hyper-parameters: ``model.json``'s kwargs over the constructor's (or config's) defaults."""
    import importlib

    if model in _CONFIGS:
        mod, cls = _CONFIGS[model]
        cfg = getattr(importlib.import_module(mod), cls)(**kwargs)
        return dataclasses.asdict(cfg)
    from neuroposter.models import model_class

    sig = inspect.signature(model_class(model).__init__)
    out = {k: p.default for k, p in sig.parameters.items()
           if k != "self" and p.default is not inspect.Parameter.empty and p.kind != p.VAR_KEYWORD}
    out.update(kwargs)
    return out


def _build_meta(model: str, kwargs: Mapping[str, Any]) -> Any:
    """The run's architecture on the ``meta`` device (shapes only: no memory, no initialisation cost)."""
    import torch

    from neuroposter.models import build_model

    with torch.device("meta"):
        return build_model(model, **dict(kwargs), **_NO_PRETRAINED.get(model, {}))


def _parameters(run: Any, module: Any) -> tuple[int | None, int | None, str]:
    """``(parameters, trained_parameters, source)``: the parameter tensors of ``module`` as ``checkpoint.pt``
    stores them (the architecture's own count when the checkpoint is missing or does not hold them all)."""
    import torch

    if module is None:
        return None, None, "model.json could not be rebuilt"
    named = dict(module.named_parameters())
    finetuned = bool(((run.model_json or {}).get("input_meta") or {}).get("finetune"))
    trained_names = {n for n, p in named.items() if p.requires_grad or finetuned}
    ckpt = Path(run.path) / "checkpoint.pt"
    try:
        state = torch.load(ckpt, map_location="cpu", weights_only=True, mmap=True)
    except Exception:  # noqa: BLE001 - missing or unreadable: fall back to the architecture
        state = None
    if isinstance(state, Mapping) and all(n in state for n in named):
        total = int(sum(state[n].numel() for n in named))
        trained = int(sum(state[n].numel() for n in trained_names))
        return total, trained, "checkpoint.pt (the model's parameter tensors)"
    total = int(sum(p.numel() for p in named.values()))
    trained = int(sum(named[n].numel() for n in trained_names))
    return total, trained, "model.json (architecture; checkpoint.pt unreadable or incomplete)"


def _features_size(run: Any) -> tuple[int, int] | None:
    """The poster size of the feature store the run read (its manifest), or None."""
    from neuroposter.manifest import input_path, read_manifest

    try:
        p = input_path(Path(run.path), run.manifest, "features")
        man = read_manifest(p) if p is not None and p.is_dir() else None
    except Exception:  # noqa: BLE001 - a card never fails the report
        return None
    size = ((man or {}).get("extra") or {}).get("input_size") or (man or {}).get("input_size")
    return (int(size[0]), int(size[1])) if isinstance(size, (list, tuple)) and len(size) == 2 else None


def _dims(size: tuple[int, int] | None) -> str:
    return f"{size[0]}x{size[1]}" if size else "?"


def _architecture(run: Any, h: Mapping[str, Any]) -> str:
    """The architecture in words."""
    mj = run.model_json or {}
    meta = mj.get("input_meta") or {}
    T = meta.get("T")
    feats = _features_size(run)
    on_feats = f"{h.get('d_in', meta.get('d_in', '?'))}-d DenseNet-169 features"
    if feats:
        on_feats += f" of {_dims(feats)} posters"
    model = run.model
    if model == "sdt":
        return (f"SDT, {h['depth']} SDSA blocks, width {h['d_model']}, {h['heads']} heads, MLP {h['mlp_hidden']}, "
                f"T={T}, on {h['n_tokens']} tokens of {on_feats}")
    if model == "sdt-pixels":
        s, c1, d = h["image_size"], h["c1"], h["d_model"]
        n = (int(s) // 4) ** 2
        return (f"pixel SDT: spiking stem conv3x3 3->{c1} + LIF, 2x2 pool, conv3x3 {c1}->{d} + LIF, 2x2 pool -> {n} "
                f"tokens; {h['depth']} SDSA blocks, width {d}, {h['heads']} heads, MLP {h['mlp_hidden']}, T={h['T']}, "
                f"on the {s}x{s} image (direct encoding: no front end)")
    if model == "ann-transformer":
        return (f"ANN transformer (the SDT's float twin), {h['depth']} blocks, width {h['d_model']}, {h['heads']} "
                f"heads, MLP {h['mlp_hidden']}, on {h['n_tokens']} tokens of {on_feats}")
    if model == "snn-mlp":
        return f"spiking MLP {h['d_in']}-{h['hidden1']}-{h['hidden2']}-{h['n_classes']}, T={T}, on pooled {on_feats}"
    if model == "chip-snn":
        host = f"host projection {h['d_in']}->{h['host_dim']}, " if h.get("host_dim") else ""
        widths = "-".join(str(w) for w in h["widths"])
        return (f"chip-fitted spiking chain for {h.get('chip') or '?'}: {host}chip layers {widths}-{h['n_classes']} "
                f"({h['neuron']} neuron), T={T}, on pooled {on_feats}")
    if model == "chip-cnn":
        convs = [tuple(c) for c in h.get("convs") or ()]
        host = int(h.get("host_layers") or 0)
        desc = [f"conv{k}x{k} {c}{f' /{p}' if int(p) > 1 else ''}" for c, k, p in convs]
        on_host = "; ".join(desc[:host])
        return (f"convolutional variant of the pixel SDT fitted to {h.get('chip') or '?'}: "
                + (f"host {on_host}, " if on_host else "") + f"chip {'; '.join(desc[host:])} "
                f"(channels, kernel, pool), then a linear read-out to {h['n_classes']} ({h['neuron']} neuron, no "
                f"attention, no membrane shortcuts), T={h['T']}, on the {h['image_size']}x{h['image_size']} image "
                "(direct encoding: no front end)")
    if model == "cnn":
        tuned = "fine-tuned" if meta.get("finetune") else "frozen"
        head = f"MLP head {h['d_feat']}-{h['head_hidden']}-{h['n_classes']}" if h.get("head_hidden") else \
            f"linear head {h['d_feat']}->{h['n_classes']}"
        return (f"CNN: DenseNet-169 backbone ({h.get('weights')} weights, {tuned}) + global average pool + {head}, "
                f"{_dims(feats)} input")
    if model == "vit":
        if h.get("weights") == "imagenet":
            return "ViT-B/16 (ImageNet-pretrained, new head): patch 16, depth 12, 12 heads, width 768, MLP 3072, 224x224 input"
        s = h.get("image_size")
        return (f"ViT from scratch: patch {h['patch_size']}, depth {h['num_layers']}, {h['num_heads']} heads, width "
                f"{h['hidden_dim']}, MLP {h['mlp_dim']}, {s}x{s} input")
    return f"{model}: " + ", ".join(f"{k}={v}" for k, v in h.items() if k != "n_classes")


def _input(run: Any, h: Mapping[str, Any]) -> str:
    """What one inference reads."""
    from neuroposter.models import MODELS

    meta = (run.model_json or {}).get("input_meta") or {}
    try:
        kind = MODELS.get(run.model).inputs
    except KeyError:
        return "?"
    feats = _features_size(run)
    d = h.get("d_in", meta.get("d_in"))
    if kind == "spike_tokens":
        return f"T={meta.get('T')} x {meta.get('n_tokens')} tokens x {d} spikes"
    if kind == "spike_pooled":
        return f"T={meta.get('T')} x {d} spikes (pooled)"
    if kind == "feature_tokens":
        return f"{meta.get('n_tokens')} tokens x {d} floats"
    if run.model == "vit":
        s = 224 if h.get("weights") == "imagenet" else h.get("image_size", meta.get("image_size"))
        return f"{s}x{s} RGB image"
    if run.model in ("sdt-pixels", "chip-cnn"):
        s = h.get("image_size", meta.get("image_size"))
        return f"{s}x{s} RGB image, the same current at each of T={h.get('T')} steps"
    return f"{_dims(feats)} RGB image"


def _epochs(run: Any) -> tuple[Any, Any, Any, Any, str]:
    """``(planned, run, best, stopped_early, words)`` from ``metrics.json`` and the manifest's config."""
    m = run.metrics or {}
    cfg = (run.manifest or {}).get("config") or {}
    qat_cfg = cfg.get("qat") if isinstance(cfg.get("qat"), Mapping) else None
    train = (qat_cfg or {}).get("train") if qat_cfg else cfg.get("train")
    train = train if isinstance(train, Mapping) else {}
    planned, patience = train.get("epochs"), train.get("patience")
    ran, best, early = m.get("epochs_run"), m.get("best_epoch"), m.get("stopped_early")
    if ran is None:
        return planned, ran, best, early, "training budget not recorded"
    of = f" of {planned}" if planned is not None else ""
    if early:
        words = f"early-stopped after {ran}{of} epochs" + (f" (patience {patience})" if patience is not None else "")
    else:
        words = f"{ran}{of} epochs, no early stop"
    if best is not None:
        words += f"; best epoch {best}"
    qat = m.get("qat") if isinstance(m.get("qat"), Mapping) else None
    if qat:
        words = f"quantisation-aware ({(qat.get('arithmetic') or {}).get('target', '?')} arithmetic): {words}"
        src = (qat.get("init_from") or {}).get("run") if isinstance(qat.get("init_from"), Mapping) else None
        fp = qat.get("float_phase") if isinstance(qat.get("float_phase"), Mapping) else None
        if src:
            words += f"; started from run {Path(str(src)).name}"
        elif fp:
            words += f"; after a float phase of {fp.get('epochs_run')} epochs (best {fp.get('best_epoch')})"
    return planned, ran, best, early, words


def _card(run: Any) -> dict[str, Any]:
    mj = run.model_json or {}
    kwargs = dict(mj.get("kwargs") or {})
    notes: list[str] = []
    try:
        h = _hyper(run.model, kwargs)
    except Exception as exc:  # noqa: BLE001 - a card never fails the report
        h = dict(kwargs)
        notes.append(f"defaults unknown ({type(exc).__name__}: {exc})")
    try:
        module = _build_meta(run.model, kwargs)
    except Exception as exc:  # noqa: BLE001
        module = None
        notes.append(f"architecture not rebuilt ({type(exc).__name__}: {exc})")
    params, trained, psrc = _parameters(run, module)
    try:
        arch = _architecture(run, h)
    except KeyError as exc:
        arch = f"{run.model} ({kwargs})"
        notes.append(f"hyper-parameter {exc} unknown")
    c = run.counts
    if c is None:
        notes.append("op counts in the per-chip table (priced on its chip)" if getattr(run, "fitted", False)
                     else "no op counts (see the report's warnings)")
    planned, ran, best, early, words = _epochs(run)
    return {"run": run.name, "model": run.model, "kind": run.kind, "architecture": arch, "parameters": params,
            "trained_parameters": trained, "parameters_source": psrc, "input": _input(run, h),
            "macs": None if c is None else float(c.macs),
            "synops": None if c is None or c.kind != "snn" else float(c.synops),
            "ops_source": run.counts_source if c is not None else "", "epochs_planned": planned, "epochs_run": ran,
            "best_epoch": best, "stopped_early": early, "training": words, "notes": "; ".join(notes)}


def model_cards(runs: Sequence[Any]) -> pd.DataFrame:
    """One model card per run (columns :data:`CARD_COLUMNS`; see the module docstring)."""
    return pd.DataFrame([_card(r) for r in runs], columns=CARD_COLUMNS)


def _count(v: Any) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "n/a"
    v = float(v)
    for div, unit in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(v) >= div:
            return f"{v / div:.3g}{unit}"
    return f"{v:.3g}"


def model_cards_text(cards: pd.DataFrame) -> list[str]:
    """One Markdown bullet per model card."""
    lines = []
    for r in cards.itertuples(index=False):
        has_synops = r.synops is not None and not pd.isna(r.synops)
        ops = [f"{_count(r.macs)} MACs"] if r.macs is not None and not pd.isna(r.macs) and (
            r.macs or not has_synops) else []
        if has_synops:
            ops.append(f"{_count(r.synops)} SynOps")
        trained = "" if r.trained_parameters in (None, r.parameters) or pd.isna(r.trained_parameters) else \
            f" ({_count(r.trained_parameters)} trained)"
        line = (f"- **{r.run}** ({r.model}): {r.architecture}; {_count(r.parameters)} parameters{trained}; input "
                f"{r.input}; {' + '.join(ops) + ' per inference' if ops else 'no op counts'}; {r.training}")
        if r.notes:
            line += f" ({r.notes})"
        lines.append(line + ".")
    return lines


# ---------------------------------------------------------------------------------------- reference models


def stored_references(runs: Sequence[Any], bundles: Sequence[Any]) -> tuple[dict[str, StoredCounts], str]:
    """The reference models' stored counts: the ``reference:*`` entries of an ``onnx`` bundle of the report's runs
    whose ``frontend`` entry is at the image size of the runs' feature store (the posters' size).

    Returns:
        ``({name: entry}, source)``: the registry name (``vit_b_16``) -> entry, and the bundle file they come from
        (or why there are none: then the dict is empty).
    """
    from neuroposter.errors import DataError, ManifestError
    from neuroposter.report.collect import _features_of, _image_size

    try:
        feats, fman = _features_of(list(runs))
        size = list(_image_size(feats, fman))
    except (DataError, ManifestError) as exc:
        return {}, f"no reference models: {exc}"
    names = {r.name for r in runs}
    for b in bundles:
        if b.target != "onnx" or b.run not in names:
            continue
        try:
            entries = read_op_counts(b.path)
        except DataError:
            continue
        fe = entries.get("frontend")
        refs = {k[len(REFERENCE_PREFIX):]: e for k, e in entries.items() if k.startswith(REFERENCE_PREFIX)
                and [int(v) for v in (e.info.get("requested_size") or ())] == size}
        if fe is not None and refs and [int(v) for v in fe.info.get("image_size") or ()] == size:
            return refs, str(Path(b.path) / "op_counts.json")
    return {}, (f"no onnx bundle of this report stores the reference models at the posters' {size[0]}x{size[1]}; "
                "run `neuroposter export --target onnx --run cnn --force`")


def reference_evaluations(frontend_profile: str = DEFAULT_FRONTEND_PROFILE) -> list[tuple[str, Evaluation]]:
    """The headline's ANN views, ``(key, evaluation)``: SDT-paper fp32 (:data:`PAPER_PROFILE`), precision-matched
    int8, memory-aware (:data:`MEMORY_PROFILE`), and the device view on the ANN platform ``frontend_profile``."""
    return [("sdt_paper", Evaluation("sdt_paper", PAPER_PROFILE, "once")),
            ("int8", Evaluation("precision", "horowitz_45nm_int8")),
            ("memory", Evaluation("memory", MEMORY_PROFILE)),
            ("device", Evaluation("device", frontend_profile))]


def _price(entry: StoredCounts, ev: Evaluation, prof: HardwareProfile) -> EnergyBreakdown:
    """As the report prices an ANN run (:func:`neuroposter.report.tables.energy_table`)."""
    c = entry.counts
    try:
        b = estimate_energy(c, prof, view=ev.view, first_layer=ev.first_layer)
    except ValueError as exc:   # all-in profile under a per-term view
        b = EnergyBreakdown(c.name, prof.name, ev.view, available=False, reason=str(exc), scope=prof.scope,
                            evidence=prof.evidence)
    return _finite(b)


def _columns(keys: Sequence[str]) -> list[str]:
    base = ["reference", "title", "architecture", "parameters", "input_size", "size_note", "macs", "other_ops"]
    per = [f"{k}_{s}" for k in keys for s in ("mj", "low_mj", "high_mj", "priced_on", "reason")]
    return [*base, *per, "status", "counts_source"]


def reference_table(runs: Sequence[Any], bundles: Sequence[Any], profiles: Mapping[str, HardwareProfile], *,
                    evaluations: Sequence[tuple[str, Evaluation]] | None = None,
                    frontend_profile: str = DEFAULT_FRONTEND_PROFILE) -> pd.DataFrame:
    """One row per reference model priced in the report's views (see the module docstring)."""
    evs = list(evaluations) if evaluations is not None else reference_evaluations(frontend_profile)
    refs, source = stored_references(runs, bundles)
    rows = []
    for name, e in refs.items():
        c = e.counts
        size = e.info.get("image_size") or []
        row: dict[str, Any] = {
            "reference": name, "title": e.info.get("title", name), "architecture": e.info.get("architecture", ""),
            "parameters": e.info.get("parameters"), "input_size": "x".join(str(v) for v in size),
            "size_note": e.info.get("size_note", ""), "macs": float(c.macs), "other_ops": float(c.other_ops),
            "status": NOT_TRAINED_HERE, "counts_source": f"{source}: {e.provenance}"}
        for key, ev in evs:
            prof = profiles.get(ev.profile) or load_profile(ev.profile)
            b = _price(e, ev, prof)
            ok = b.available and b.total_pj is not None
            row[f"{key}_mj"] = b.total_pj * 1e-9 if ok else None
            row[f"{key}_low_mj"] = b.low_pj * 1e-9 if ok and b.low_pj is not None else None
            row[f"{key}_high_mj"] = b.high_pj * 1e-9 if ok and b.high_pj is not None else None
            row[f"{key}_priced_on"] = f"{ev.label}"
            row[f"{key}_reason"] = "" if ok else (b.reason or "not available")
        rows.append(row)
    out = pd.DataFrame(rows, columns=_columns([k for k, _ in evs]))
    out.attrs["source"] = source
    return out


def reference_table_text(table: pd.DataFrame, source: str = "") -> list[str]:
    """Markdown lines for :func:`reference_table`: what the rows are, then one bullet per reference model."""
    src = source or table.attrs.get("source", "")
    if table.empty:
        return [f"Standard architectures not priced: {src}" if src else "Standard architectures not priced."]
    keys = [c[:-3] for c in table.columns if c.endswith("_mj") and not c.endswith(("_low_mj", "_high_mj"))]
    lines = [f"Standard architectures at the posters' input ({NOT_TRAINED_HERE}; random weights, MACs from their "
             f"ONNX graphs; counts: {src}). Energy per inference:"]
    for r in table.to_dict("records"):
        cells = []
        for k in keys:
            v = r.get(f"{k}_mj")
            if v is None or pd.isna(v):
                cells.append(f"{r[f'{k}_priced_on']}: n/a")
                continue
            hi = r.get(f"{k}_high_mj")
            lo = r.get(f"{k}_low_mj")
            rng = ""
            if hi is None or pd.isna(hi):
                rng = " (lower bound)"
            elif lo is not None and not pd.isna(lo) and f"{lo:.3g}" != f"{hi:.3g}":
                rng = f" ({lo:.3g}-{hi:.3g})"
            cells.append(f"{r[f'{k}_priced_on']}: {v:.3g} mJ{rng}")
        note = f" ({r['size_note']})" if r.get("size_note") else ""
        lines.append(f"- **{r['title']}** -- {r['architecture']}; {_count(r['parameters'])} parameters; "
                     f"{_count(r['macs'])} MACs{note}; " + "; ".join(cells) + ".")
    return lines
