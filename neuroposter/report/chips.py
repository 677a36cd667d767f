"""The per-chip table: for every chip target, the model that runs there, how accurate it is and what it costs.

One block per registered chip target (the ``loihi`` target and every profile-driven chip,
:func:`chip_target_profiles`), one row per export bundle on that chip that deployed something (``summary.json``
``ok``, the mapping fits and ``verification.deployed_vs_trained`` is recorded):

* **the model**: the run, and whether it is the full model (``"full model (sdt), partitioned"``: the run's model
  mapped as it is, over the cores and chips the mapping used) or a chip-fitted variant (``model.json`` names
  :data:`~neuroposter.models.CHIP_FITTED_MODELS` or holds a ``"fit"`` entry: its host projection, widths, neuron and weight bits), with its
  size: neurons and synapses from ``mapping.json`` ``totals``, weights from the bundle's own op counts;
* **accuracy**: the deployed network's test mAP and micro-F1 (``verification.deployed_vs_trained``, with the
  bundle's 95 % bootstrap interval) beside the FULL model's (the float :data:`~neuroposter.report.headline.SNN_MODEL`
  run's test metrics) and the best constant predictor (``metrics.json`` ``baselines``);
* **energy per inference**: the bundle's own ``op_counts.json`` (the deployed graph's counts,
  :func:`neuroposter.profiling.stored.chip_counts`) priced in the device view with the chip's profile: its
  ``"model"`` entry on the chip (a range where the constants have one; ``"unpublished"`` where the chip has no
  published per-op energy, as :func:`~neuroposter.profiling.energy.estimate_energy` reports it) and its
  ``"host"`` entry (a fitted model's host-side projection) on the report's host profile -- the profile that prices
  the front end in the device view of a neuromorphic chip (``frontend_profile``, default ``jetson_agx_orin``);
* **mapping**: chips used (of the system the profile describes), cores and synapse memory (``mapping.json``
  ``totals`` and, when the mapper records one, its ``placement``).

A chip with no such bundle gets one row ``nothing deployed`` with the refusal's one-line verdict (or, with no
bundle at all, the export command that would try). Read only: nothing here exports, simulates or counts.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

import pandas as pd

from neuroposter.errors import DataError
from neuroposter.models import CHIP_FITTED_MODELS
from neuroposter.profiling.energy import EnergyBreakdown, estimate_energy
from neuroposter.profiling.profiles import HardwareProfile, load_profile
from neuroposter.profiling.stored import read_op_counts

__all__ = ["CHIP_COLUMNS", "chip_target_profiles", "chip_rows", "chips_display", "chips_text"]

_REASON_CHARS = 300

CHIP_COLUMNS = [
    "chip", "profile", "status", "run", "model", "variant", "trained_with", "why", "neurons", "synapses", "weights",
    "samples", "deployed_map", "deployed_map_lo", "deployed_map_hi", "deployed_micro_f1", "deployed_micro_f1_lo",
    "deployed_micro_f1_hi", "full_run", "full_map", "full_micro_f1", "baseline_map", "baseline_map_name",
    "baseline_micro_f1", "chip_mj", "chip_low_mj", "chip_high_mj", "chip_energy", "chip_energy_reason",
    "host_profile", "host_mj", "host_low_mj", "host_high_mj", "host_energy", "energy_mj", "energy_low_mj",
    "energy_high_mj", "counts_source", "chips_used", "system_chips", "system", "cores", "synapse_bytes",
    "synapse_bytes_per_chip_max", "mapping_verdict", "verified", "bundle"]


def chip_target_profiles() -> dict[str, str]:
    """Every registered chip target -> the hardware profile it deploys on (``loihi`` -> ``loihi2``, each
    profile-driven chip -> the profile of its name), from the target registry."""
    from neuroposter.targets import chip_targets, get_target

    out: dict[str, str] = {}
    for name in ("loihi", *chip_targets()):
        prof = str(get_target(name).profile)
        out[name] = name if prof == "<target>" else prof
    return out


def _json(path: Path) -> dict[str, Any]:
    from neuroposter.report.collect import _maybe_json

    return _maybe_json(path)


def _get(obj: Any, key: str) -> Any:
    """``obj[key]`` or ``obj.key`` (None when neither): the mapper's and profile's newer fields are read defensively."""
    if obj is None:
        return None
    if isinstance(obj, Mapping):
        return obj.get(key)
    return getattr(obj, key, None)


def _one_line(text: Any, limit: int = _REASON_CHARS) -> str:
    s = " ".join(str(text or "").split())
    return s if len(s) <= limit else s[:limit - 3] + "..."


def _deployed(summ: Mapping[str, Any], mapping: Mapping[str, Any]) -> bool:
    """The bundle deployed a network: ok, the mapping fits, and the deployed network was verified."""
    fits = (summ.get("mapping") or {}).get("fits", mapping.get("fits"))
    return (summ.get("ok") is True and fits is not False
            and bool((summ.get("verification") or {}).get("deployed_vs_trained")))


def _refusal(summ: Mapping[str, Any], mapping: Mapping[str, Any]) -> str:
    """The one-line verdict of a bundle that deployed nothing."""
    for v in ((summ.get("mapping") or {}).get("verdict"), mapping.get("verdict"), summ.get("reason")):
        if v and not str(v).strip().startswith("fits"):
            return _one_line(v)
    if summ.get("ok") is False:
        return "refused (no reason recorded in summary.json)"
    return "no verified deployment recorded in the bundle (no deployed-vs-trained verification); export it again"


def _is_fitted(run: Any) -> bool:
    mj = getattr(run, "model_json", None) or {}
    return mj.get("model") in CHIP_FITTED_MODELS or bool(mj.get("fit"))


def _bits(summ: Mapping[str, Any]) -> str:
    wb = (summ.get("precision") or {}).get("weight_bits")
    if not wb:
        return ""
    return "1-bit weights" if int(wb) == 1 else f"int{int(wb)}"


def _fitted_text(run: Any, summ: Mapping[str, Any]) -> str:
    """``"fitted variant (chip-snn: host 1664->16, 63-8, xylo neuron, int8)"`` from ``model.json``."""
    mj = run.model_json or {}
    fit = mj.get("fit")
    if isinstance(fit, Mapping) and fit.get("summary"):
        return f"fitted variant ({mj.get('model', run.model)}: {_one_line(fit['summary'], 120)})"
    kw = mj.get("kwargs") or {}
    parts = []
    convs = kw.get("convs")
    if isinstance(convs, list) and convs:
        host = int(kw.get("host_layers") or 0)
        chans = [str(c[0]) for c in convs]
        if host:
            parts.append(f"host conv {'-'.join(chans[:host])}")
        parts.append(f"conv {'-'.join(chans[host:])}-{kw.get('n_classes', '?')} on {kw.get('image_size', '?')}px")
    d_in = kw.get("d_in")
    d_host = next((kw[k] for k in ("d_host", "host_dim", "host_width", "host") if kw.get(k)), None)
    if d_host:
        parts.append(f"host {d_in}->{d_host}" if d_in else f"host ->{d_host}")
    widths = next((kw[k] for k in ("widths", "hidden", "hidden_sizes", "chip_widths") if isinstance(kw.get(k), list)),
                  None)
    if widths is not None:
        tail = [kw["n_classes"]] if kw.get("n_classes") else []
        parts.append("-".join(str(w) for w in [*widths, *tail]))
    if kw.get("neuron"):
        parts.append(f"{kw['neuron']} neuron")
    if _bits(summ):
        parts.append(_bits(summ))
    name = mj.get("model", run.model)
    return f"fitted variant ({name}{': ' + ', '.join(parts) if parts else ''})"


def _full_text(run: Any, totals: Mapping[str, Any]) -> str:
    cores, chips = totals.get("cores"), totals.get("chips")
    split = (isinstance(cores, (int, float)) and cores > 1) or (isinstance(chips, (int, float)) and chips > 1)
    return f"full model ({run.model})" + (", partitioned" if split else "")


#: the full model a run of a model that reads the posters itself stands beside (its float run)
PIXEL_FULL_MODEL = "sdt-pixels"


def _full_run(runs: Sequence[Any], model: str | None = None) -> Any | None:
    """The full model's float run: the ``model`` (default :data:`SNN_MODEL`) run trained in float, the one of that
    name first."""
    from neuroposter.report.headline import SNN_MODEL

    model = model or SNN_MODEL
    cands = [r for r in runs if r.model == model and not (r.model_json or {}).get("deploy")]
    return next((r for r in cands if r.name == model), cands[0] if cands else None)


#: models whose chip rows stand beside the pixel SDT (the spiking front end keeps the feature SDT's head)
_PIXEL_VARIANTS = ("sdt-pixels", "chip-cnn")


def _pixel_variant(run: Any) -> bool:
    return run.model in _PIXEL_VARIANTS


def _price(counts: Any, profile: HardwareProfile) -> EnergyBreakdown:
    """Device-view energy of ``counts`` on ``profile`` (never an exception: unavailable with a reason)."""
    from neuroposter.report.tables import _finite

    try:
        return _finite(estimate_energy(counts, profile, view="device"))
    except ValueError as exc:
        return EnergyBreakdown(counts.name, profile.name, "device", available=False, reason=str(exc),
                               scope=profile.scope, evidence=profile.evidence)


def _mj(v: float | None) -> float | None:
    return None if v is None else v * 1e-9


def _energy(bundle: Path, profile: HardwareProfile | None, host_profile: HardwareProfile) -> dict[str, Any]:
    """The energy columns of a deployed bundle from its own ``op_counts.json``."""
    row: dict[str, Any] = {"chip_mj": None, "chip_low_mj": None, "chip_high_mj": None, "chip_energy": "not counted",
                           "chip_energy_reason": "", "host_profile": None, "host_mj": None, "host_low_mj": None,
                           "host_high_mj": None, "host_energy": "none", "energy_mj": None, "energy_low_mj": None,
                           "energy_high_mj": None, "counts_source": "", "weights": None}
    try:
        entries = read_op_counts(bundle)
        chip = entries["model"]
    except (DataError, KeyError) as exc:
        row["chip_energy_reason"] = (f"the bundle stores no op counts of its deployed graph ({_one_line(exc, 160)}); "
                                     "export it again")
        return row
    host = entries.get("host")
    row["counts_source"] = chip.provenance
    row["weights"] = int(chip.counts.n_weights + (host.counts.n_weights if host is not None else 0))
    if profile is None:
        row["chip_energy_reason"] = "the chip's profile does not load"
        return row
    b = _price(chip.counts, profile)
    if b.available:
        row.update(chip_mj=_mj(b.total_pj), chip_low_mj=_mj(b.low_pj), chip_high_mj=_mj(b.high_pj),
                   chip_energy="priced")
    else:
        row.update(chip_energy="unpublished", chip_energy_reason=b.reason)
    hb = None
    if host is not None:
        hb = _price(host.counts, host_profile)
        row["host_profile"] = host_profile.name
        if hb.available:
            row.update(host_mj=_mj(hb.total_pj), host_low_mj=_mj(hb.low_pj), host_high_mj=_mj(hb.high_pj),
                       host_energy="priced")
        else:
            row.update(host_energy="unpublished")
    if b.available and (hb is None or hb.available):
        parts = [b] if hb is None else [b, hb]
        row["energy_mj"] = _mj(sum(p.total_pj or 0.0 for p in parts))
        row["energy_low_mj"] = _mj(sum(p.low_pj or 0.0 for p in parts))
        row["energy_high_mj"] = (None if any(p.high_pj is None for p in parts)
                                 else _mj(sum(p.high_pj or 0.0 for p in parts)))
    return row


def _mapping(mapping: Mapping[str, Any], summ: Mapping[str, Any], profile: HardwareProfile | None) -> dict[str, Any]:
    totals = mapping.get("totals") or (summ.get("mapping") or {}).get("totals") or {}
    placement = mapping.get("placement") or (summ.get("mapping") or {}).get("placement") or {}
    system = _get(profile, "system")
    chips_used = next((placement[k] for k in ("chips_used", "chips") if isinstance(placement.get(k), (int, float))),
                      totals.get("chips"))
    sys_chips = next((placement[k] for k in ("system_chips", "chips_available") if placement.get(k) is not None),
                     _get(system, "chips"))
    sys_name = placement.get("system") if isinstance(placement.get("system"), str) else _get(system, "name")
    syn = placement.get("synapse_bytes", totals.get("synapse_bytes_min"))
    per_chip = placement.get("synapse_bytes_per_chip")
    per_chip_max = max(per_chip) if isinstance(per_chip, list) and per_chip else None
    verdict = mapping.get("verdict") or (summ.get("mapping") or {}).get("verdict") or ""
    return {"neurons": totals.get("neurons"), "synapses": totals.get("synapses", totals.get("stored_synapses")),
            "chips_used": chips_used, "system_chips": sys_chips, "system": sys_name, "cores": totals.get("cores"),
            "synapse_bytes": syn, "synapse_bytes_per_chip_max": per_chip_max, "mapping_verdict": _one_line(verdict)}


def _verified(summ: Mapping[str, Any]) -> str:
    """What the deployed network was checked against: the integer reference, and any simulator run."""
    ver = summ.get("verification") or {}
    out = ["trained model (deployed vs trained)"]
    for key, v in ver.items():
        if key == "deployed_vs_trained" or not isinstance(v, Mapping):
            continue
        sim = v.get("simulator") or v.get("name")
        if isinstance(sim, Mapping):
            sim = " ".join(str(x) for x in (sim.get("name"), sim.get("version")) if x)
        if v.get("exact") is not None:
            mism = v.get("mismatched_spikes")
            out.append(f"{sim or key}: " + ("spike-exact" if v["exact"] else f"{mism} spikes differ"))
        elif v.get("prediction_agreement") is not None:
            out.append(f"{sim or key}: prediction agreement {v['prediction_agreement']:.3f}")
    return "; ".join(out)


def _deployed_row(chip: str, prof_name: str, b: Any, run: Any, summ: Mapping[str, Any], mapping: Mapping[str, Any],
                  profile: HardwareProfile | None, host_profile: HardwareProfile, full: Any | None,
                  refusals: Mapping[str, str]) -> dict[str, Any]:
    from neuroposter.report.deployed import _trained_with
    from neuroposter.report.headline import _best_baseline, _test_metric

    entry = summ["verification"]["deployed_vs_trained"]
    iv = entry.get("intervals") or {}
    m = _mapping(mapping, summ, profile)
    fitted = _is_fitted(run)
    row: dict[str, Any] = {"chip": chip, "profile": prof_name, "status": "deployed", "run": b.run, "model": run.model,
                           "variant": _fitted_text(run, summ) if fitted else _full_text(run, m),
                           "trained_with": _trained_with(run)[0], "samples": entry.get("samples"),
                           "bundle": str(b.path), "verified": _verified(summ), **m}
    row["why"] = ("; ".join(f"{r}: {v}" for r, v in refusals.items()) if fitted and refusals else "")
    for key in ("map", "micro_f1"):
        row[f"deployed_{key}"] = (entry.get(key) or {}).get("deployed")
        row[f"deployed_{key}_lo"], row[f"deployed_{key}_hi"] = (iv.get(key) or {}).get("deployed") or [None, None]
    fm = (full.metrics or {}) if full is not None else {}
    row["full_run"] = full.name if full is not None else None
    row["full_map"], row["full_micro_f1"] = _test_metric(fm, "map"), _test_metric(fm, "micro_f1")
    own = run.metrics or {}
    base_src = own if own.get("baselines") else fm
    row["baseline_map"], row["baseline_map_name"] = _best_baseline(base_src, "map")
    row["baseline_micro_f1"], _ = _best_baseline(base_src, "micro_f1")
    row.update(_energy(b.path, profile, host_profile))
    return row


def chip_rows(bundles: Iterable[Any], runs: Sequence[Any], *, host_profile: str,
              targets: Mapping[str, str] | None = None,
              profiles: Mapping[str, HardwareProfile] | None = None) -> pd.DataFrame:
    """The per-chip table (see the module docstring): columns :data:`CHIP_COLUMNS`, chips in registry order.

    Args:
        bundles: the report's verified export bundles (``.path``, ``.target``, ``.run``).
        runs: the report's runs (``.name``, ``.model``, ``.model_json``, ``.metrics``).
        host_profile: the profile that prices a bundle's host-side counts (the report's ``frontend_profile``).
        targets: chip target -> its profile (default: :func:`chip_target_profiles`).
        profiles: profiles already loaded, by name (others are loaded here).

    Returns:
        One row per deployed chip bundle; one ``nothing deployed`` row per chip without one.
    """
    targets = dict(targets) if targets is not None else chip_target_profiles()
    loaded = dict(profiles or {})
    by_run = {r.name: r for r in runs}
    full = _full_run(runs)
    full_px = _full_run(runs, PIXEL_FULL_MODEL) or full   # beside a pixel model: the pixel SDT's float run
    hp = loaded.get(host_profile) or load_profile(host_profile)

    def profile_of(name: str) -> HardwareProfile | None:
        if name not in loaded:
            try:
                loaded[name] = load_profile(name)
            except Exception:  # noqa: BLE001 - a profile that does not load leaves the energy unpriced, not the table
                return None
        return loaded[name]

    by_chip: dict[str, list[Any]] = {}
    for b in bundles:
        if b.target in targets and b.run in by_run:
            by_chip.setdefault(b.target, []).append(b)
    order = {r.name: i for i, r in enumerate(runs)}
    rows: list[dict[str, Any]] = []
    for chip, default_profile in targets.items():
        mine = sorted(by_chip.get(chip, []), key=lambda b: (order.get(b.run, len(order)), str(b.path)))
        loaded_json = [(b, _json(b.path / "summary.json"), _json(b.path / "mapping.json")) for b in mine]
        refusals = {b.run: _refusal(s, m) for b, s, m in loaded_json if not _deployed(s, m)}
        done = 0
        for b, summ, mapping in loaded_json:
            if not _deployed(summ, mapping):
                continue
            named = summ.get("profile") or mapping.get("profile") or default_profile
            prof_name = str(named.get("name") or default_profile) if isinstance(named, Mapping) else str(named)
            rows.append(_deployed_row(chip, prof_name, b, by_run[b.run], summ, mapping, profile_of(prof_name), hp,
                                      full_px if _pixel_variant(by_run[b.run]) else full, refusals))
            done += 1
        if not done:
            why = ("; ".join(f"{r}: {v}" for r, v in refusals.items()) if refusals else
                   f"no export bundle on {chip} (`neuroposter export --target {chip} --run RUN`)")
            rows.append({"chip": chip, "profile": default_profile, "status": "nothing deployed", "why": why})
    return pd.DataFrame(rows, columns=CHIP_COLUMNS)


# ------------------------------------------------------------------------------------------------- display


def _nan(v: Any) -> bool:
    return v is None or (isinstance(v, float) and math.isnan(v))


def _f(v: Any, digits: int = 3) -> str:
    return "n/a" if _nan(v) else f"{float(v):.{digits}f}"


def _with_iv(v: Any, lo: Any, hi: Any) -> str:
    text = _f(v)
    return text + (f" [{_f(lo)}-{_f(hi)}]" if not _nan(lo) and not _nan(hi) and text != "n/a" else "")


def _count(v: Any) -> str:
    if _nan(v):
        return "?"
    v = float(v)
    for div, unit in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(v) >= div:
            return f"{v / div:.3g}{unit}"
    return f"{v:.0f}"


def _bytes(v: Any) -> str:
    if _nan(v):
        return "?"
    v = float(v)
    for div, unit in ((1e9, "GB"), (1e6, "MB"), (1e3, "kB")):
        if v >= div:
            return f"{v / div:.3g} {unit}"
    return f"{v:.0f} B"


def _energy_cell(r: Mapping[str, Any]) -> str:
    from neuroposter.report.tables import _cell

    if r["chip_energy"] == "priced":
        return _cell(r["chip_mj"], r["chip_low_mj"], r["chip_high_mj"], True)
    if r["chip_energy"] == "unpublished":
        return "unpublished"
    return "not counted"


def _host_cell(r: Mapping[str, Any]) -> str:
    from neuroposter.report.tables import _cell

    if r["host_energy"] == "none" or _nan(r["host_profile"]):
        return "-"
    if r["host_energy"] != "priced":
        return f"unpublished [{r['host_profile']}]"
    return f"{_cell(r['host_mj'], r['host_low_mj'], r['host_high_mj'], True)} [{r['host_profile']}]"


def _mapping_cell(r: Mapping[str, Any]) -> str:
    chips = _count(r["chips_used"])
    if not _nan(r["system_chips"]):
        chips += f" of {_count(r['system_chips'])}"
    chips += " chip" + ("" if r["chips_used"] == 1 and _nan(r["system_chips"]) else "s")
    if isinstance(r["system"], str) and r["system"]:
        chips += f" ({r['system']})"
    text = f"{chips}, {_count(r['cores'])} cores, synapse memory >= {_bytes(r['synapse_bytes'])}"
    if not _nan(r["synapse_bytes_per_chip_max"]) and not _nan(r["chips_used"]) and r["chips_used"] > 1:
        text += f" (at most {_bytes(r['synapse_bytes_per_chip_max'])} on one chip)"
    return text


def chips_display(rows: pd.DataFrame) -> pd.DataFrame:
    """The rows as strings: one line per chip bundle (or refused chip), energies in mJ per inference."""
    if rows.empty:
        return rows
    out = []
    for _, r in rows.iterrows():
        if r["status"] != "deployed":
            out.append({"chip": f"{r['chip']} [{r['profile']}]", "model running there": "nothing deployed",
                        "size (neurons / synapses / weights)": "-", "deployed mAP [95% CI]": "-",
                        "full model mAP": "-", "constant baseline mAP": "-", "deployed micro-F1": "-",
                        "chip mJ / inference": "-", "host mJ / inference": "-", "mapping": "-",
                        "verified against": "-", "note": _one_line(r["why"], 240)})
            continue
        model = f"{r['run']}: {r['variant']}"
        if r["trained_with"] and r["trained_with"] != "float":
            model += f", trained with {r['trained_with']}"
        out.append({
            "chip": f"{r['chip']} [{r['profile']}]", "model running there": model,
            "size (neurons / synapses / weights)": f"{_count(r['neurons'])} / {_count(r['synapses'])} / "
                                                   f"{_count(r['weights'])}",
            "deployed mAP [95% CI]": _with_iv(r["deployed_map"], r["deployed_map_lo"], r["deployed_map_hi"]),
            "full model mAP": f"{_f(r['full_map'])} ({r['full_run']})" if not _nan(r["full_run"]) else "n/a",
            "constant baseline mAP": _f(r["baseline_map"]),
            "deployed micro-F1": f"{_f(r['deployed_micro_f1'])} (full {_f(r['full_micro_f1'])}, "
                                 f"baseline {_f(r['baseline_micro_f1'])})",
            "chip mJ / inference": _energy_cell(r), "host mJ / inference": _host_cell(r),
            "mapping": _mapping_cell(r), "verified against": r["verified"],
            "note": _one_line(r["chip_energy_reason"] or (f"full model refused here -- {r['why']}" if r["why"] else ""),
                              240)})
    return pd.DataFrame(out)


def chips_text(rows: pd.DataFrame) -> list[str]:
    """One sentence per chip: what runs there (full or fitted), its deployed mAP beside the full model's, its
    energy -- or why nothing is deployed."""
    out: list[str] = []
    if rows.empty:
        return out
    for chip, grp in rows.groupby("chip", sort=False):
        dep = grp[grp["status"] == "deployed"]
        if dep.empty:
            out.append(f"{chip}: nothing deployed ({_one_line(grp.iloc[0]['why'], 200)}).")
            continue
        parts = []
        for _, r in dep.iterrows():
            kind = "fitted variant" if str(r["variant"]).startswith("fitted") else "full model"
            e = _energy_cell(r)
            e = {"unpublished": "chip energy unpublished", "not counted": "chip energy not counted"}.get(
                e, f"{e} mJ per inference on the chip")
            if r["host_energy"] == "priced":
                e += f" + {_host_cell(r).replace(' [', ' mJ on the host [')}"
            parts.append(f"{r['run']} ({kind}) deployed mAP {_f(r['deployed_map'])} vs full {_f(r['full_map'])}, {e}")
        out.append(f"{chip}: " + "; ".join(parts) + ".")
    return out
