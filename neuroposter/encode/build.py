"""Building an encoded set from a feature store: fit on train, encode every split, report.

``encode_store(store, out_dir, ...)`` writes ``WORKSPACE/encoded/<name>/`` (layout in
:mod:`neuroposter.encode.encoded`) through :func:`neuroposter.artifact.write_artifact`: the folder
is built under a temporary name under the artifact's lock and swapped in at the end, so a reader
never sees half an encoded set, two writers never race, and a path naming anything but an encoded
set (a workspace, the feature store, another artifact) is refused.
"""

from __future__ import annotations

import logging
import math
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np

from neuroposter._io import atomic_write_json, sha256_json
from neuroposter._progress import progress
from neuroposter.artifact import check_destination, write_artifact
from neuroposter.encode.encoded import ENCODED_KIND, SPLITS
from neuroposter.encode.encoders import ENCODERS, SpikeEncoder, spike_code
from neuroposter.encode.events import pack_spikes
from neuroposter.encode.report import EncodingStats, constant_predictor, linear_probe, write_figure
from neuroposter.errors import DataError, UsageError
from neuroposter.manifest import MANIFEST_NAME, input_path, read_manifest, require_manifest, write_manifest

__all__ = ["FORMS", "STOCHASTIC_ENCODERS", "EncodeResult", "encode_store", "encoded_key"]

log = logging.getLogger(__name__)

FORMS: tuple[str, ...] = ("tokens", "pooled")
STOCHASTIC_ENCODERS = frozenset({"rate"})  # encoded one sample at a time with per-sample seeds
_VERSION = 1


@dataclass(frozen=True)
class EncodeResult:
    """What :func:`encode_store` did.

    Attributes:
        path: the encoded-set folder.
        status: ``"built"``, ``"rebuilt"`` (options or inputs changed) or ``"up-to-date"``.
        key: the manifest key.
        seconds: wall time.
        report: the encoding report (empty when up to date).
    """

    path: Path
    status: str
    key: str
    seconds: float
    report: dict[str, Any] = field(default_factory=dict, repr=False)


def encoded_key(features_key: str, config: dict[str, Any]) -> str:
    """Content key of an encoded set: the feature store key plus every encoding option."""
    return sha256_json({"version": _VERSION, "features": features_key, "config": config})


def _describe_difference(old: dict[str, Any], config: dict[str, Any], features_key: str) -> str:
    """What differs between an existing encoded set's manifest and this request, in words."""
    diffs = []
    if (old.get("inputs") or {}).get("features", {}).get("key") != features_key:
        diffs.append("the feature store")
    old_cfg = old.get("config") or {}
    for k, v in config.items():
        if old_cfg.get(k) != v:
            diffs.append(f"{k} {old_cfg.get(k)!r} -> {v!r}")
    return ", ".join(diffs) or "its inputs"


def sample_seed(seed: int, index: int) -> int:
    """The per-sample seed of a stochastic encoder: stable for (run seed, dataset index)."""
    return int(np.random.SeedSequence([int(seed), int(index)]).generate_state(1)[0])


def _fit_vectors(source: np.ndarray, rows: np.ndarray, n_tokens: int, max_vectors: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    n_samples = max(1, min(len(rows), max_vectors // max(n_tokens, 1)))
    sel = np.sort(rng.choice(rows, size=n_samples, replace=False)) if n_samples < len(rows) else rows
    vec = np.asarray(source[sel], dtype=np.float32).reshape(-1, source.shape[-1])
    if len(vec) > max_vectors:
        vec = vec[np.sort(rng.choice(len(vec), size=max_vectors, replace=False))]
    return vec


def encode_store(
    store: Any,
    out_dir: str | os.PathLike[str],
    *,
    encoder: str = "multilevel",
    T: int = 4,
    form: str = "tokens",
    seed: int = 0,
    per_feature: bool = True,
    quantile: float = 0.5,
    levels: str = "quantile",
    norm_quantile: float = 0.99,
    max_fit_vectors: int = 16384,
    chunk: int = 32,
    probe: bool = True,
    force: bool = False,
    show_progress: bool = True,
    before_commit: Callable[[Path], None] | None = None,
) -> EncodeResult:
    """Fits an encoder on the train split of a feature store and encodes every split as events.

    Args:
        store: a :class:`~neuroposter.features.FeatureStore` (with its dataset attached or loadable).
        out_dir: ``WORKSPACE/encoded/<name>``.
        encoder: a name from :data:`ENCODERS`.
        T: time steps.
        form: ``"tokens"`` (``N = H'*W'`` tokens per poster) or ``"pooled"`` (``N = 1``).
        seed: seed of stochastic encoders (per sample: ``SeedSequence([seed, dataset index])``)
            and of the fit subsample.
        per_feature: per-feature thresholds/levels (else global).
        quantile: ``threshold``: quantile of active values used as theta.
        levels: ``multilevel``: ``"quantile"`` or ``"uniform"``.
        norm_quantile: the normaliser's robust upper quantile.
        max_fit_vectors: cap on the training vectors used for fitting.
        chunk: samples per encoding batch.
        probe: run the linear probes (the slowest part of the report).
        force: replace an existing encoded set (one made from other features or options is
            replaced only with ``force``; an identical one is left as it is without it).
        show_progress: show a progress bar.
        before_commit: called with the finished temporary folder just before its manifest is
            written, to add files the manifest then covers (the CLI's ``resolved_config.yaml``).

    Returns:
        An :class:`EncodeResult`.

    Raises:
        DataError: an empty train split.
        KeyError: unknown encoder name (the message lists the valid ones).
        UsageError: a destination that is not an encoded set (a workspace, the feature store, another
            artifact), or an encoded set from other features or options without ``force``.
        ArtifactBusyError: another process is writing the same encoded set.
        ManifestError: an up-to-date encoded set whose files changed (rebuild it with ``force``).
    """
    ENCODERS.get(encoder)
    if form not in FORMS:
        raise ValueError(f"form must be one of {', '.join(FORMS)}, got {form!r}")
    out = Path(out_dir)
    config = {"encoder": encoder, "T": int(T), "form": form, "seed": int(seed), "per_feature": bool(per_feature),
              "quantile": float(quantile), "levels": levels, "norm_quantile": float(norm_quantile),
              "max_fit_vectors": int(max_fit_vectors)}
    key = encoded_key(store.key, config)
    protect = [store.path]
    check_destination(out, ENCODED_KIND, force=True, protect=protect, option="--name")
    status = "built"
    if (out / MANIFEST_NAME).is_file():
        old = read_manifest(out)
        if old.get("key") == key and old.get("status") != "failed" and not force:
            # up to date only if its files are still what was written
            require_manifest(out, ENCODED_KIND, rerun="neuroposter encode --force")
            return EncodeResult(out, "up-to-date", key, 0.0)
        if not force:
            raise UsageError(f"{out} already holds an encoded set made from other features or options "
                             f"({_describe_difference(old, config, store.key)}); pass --force to replace it, "
                             "or choose another --name")
        status = "rebuilt"
        log.info("re-encoding %s (%s)", out, "forced" if old.get("key") == key else "inputs or options changed")

    t0 = time.perf_counter()
    pooled = form == "pooled"
    source = store.pooled if pooled else store.tokens
    n_tokens = 1 if pooled else int(store.tokens.shape[1])
    dim = int(store.pooled.shape[1])
    split_rows = {s: np.asarray(store.split_rows(s), dtype=np.int64) for s in SPLITS}
    if len(split_rows["train"]) == 0:
        raise DataError(f"{store.path}: no training rows to fit the encoder on")
    labels_all = np.asarray(store.labels, dtype=np.uint8)
    dataset = store.dataset
    genres = list(dataset.genres)

    # 1. fit on train only
    train_vec = _fit_vectors(source, split_rows["train"], n_tokens, max_fit_vectors, seed)
    enc = SpikeEncoder(encoder, int(T)).fit(train_vec, per_feature=per_feature, quantile=quantile, levels=levels,
                                           norm_quantile=norm_quantile)
    del train_vec

    stats: dict[str, EncodingStats] = {}
    probe_in: dict[str, dict[str, np.ndarray]] = {}
    recon = EncodingStats(int(T), dim)
    table = train_mean = None
    total = sum(len(r) for r in split_rows.values())
    bar = progress(total=total, desc=f"encode {encoder}", unit="poster") if show_progress else None
    with write_artifact(out, ENCODED_KIND, force=force, protect=protect, option="--name") as tmp:
        enc.save(tmp)
        atomic_write_json(tmp / "genres.json", genres)
        for split in SPLITS:
            rows = split_rows[split]
            st = EncodingStats(int(T), dim)
            folder = tmp / f"events_{split}"
            folder.mkdir()
            writer = _EventWriter(folder, np.uint16 if dim <= 65536 else np.uint32)
            counts: list[np.ndarray] = []
            spk_feat: list[np.ndarray] = []
            u_feat: list[np.ndarray] = []
            for s in range(0, len(rows), chunk):
                r = rows[s:s + chunk]
                raw = np.asarray(source[r], dtype=np.float32)
                raw = raw[:, None, :] if pooled else raw  # [b, N, D]
                u = enc.normalize(raw)
                if encoder in STOCHASTIC_ENCODERS:
                    spikes = np.stack([enc.encode(u[i], seed=sample_seed(seed, store.rows[r[i]]), normalized=True)
                                       for i in range(len(r))], axis=1)  # [T, b, N, D]
                else:
                    spikes = enc.encode(u, seed=seed, normalized=True)  # [T, b, N, D]
                code = spike_code(spikes, encoder)  # [b, N, D]
                st.update(spikes, code, u)
                if split == "test" and table is not None:
                    recon.score(code, u, table, train_mean)
                x, c = pack_spikes(spikes)
                writer.append(x)
                counts.append(c)
                spk_feat.append(spikes.mean(axis=(0, 2), dtype=np.float32))  # [b, D]
                u_feat.append(u.mean(axis=1))  # [b, D]
                if bar is not None:
                    bar.update(len(r))
            cnt = np.concatenate(counts) if counts else np.zeros(0, np.int64)
            writer.close()
            np.save(folder / "offsets.npy", np.concatenate([[0], np.cumsum(cnt)]).astype(np.int64))
            np.save(folder / "rows.npy", rows)
            np.save(folder / "labels.npy", labels_all[rows])
            stats[split] = st
            probe_in[split] = {"spikes": np.concatenate(spk_feat) if spk_feat else np.zeros((0, dim), np.float32),
                               "features": np.concatenate(u_feat) if u_feat else np.zeros((0, dim), np.float32)}
            if split == "train":
                table = st.decoder()
                train_mean = st.sum_u / max(st.vectors, 1)
        if bar is not None:
            bar.close()

        report = _report(enc, form, n_tokens, dim, seed, stats, recon, probe_in, split_rows, labels_all, genres,
                         probe, tmp)
        write_figure(tmp / "encoding_report.png", report,
                     stats["train"].feature_spikes / max(stats["train"].vectors * T, 1),
                     _entropy(stats["train"]))
        seconds = time.perf_counter() - t0
        report["seconds"] = round(seconds, 3)
        atomic_write_json(tmp / "encoding_report.json", report)
        if before_commit is not None:
            before_commit(tmp)
        dataset_path = input_path(store.path, store.manifest, "dataset")
        write_manifest(
            tmp, ENCODED_KIND,
            inputs={"features": {"path": str(Path(store.path).resolve()), "key": store.key},
                    "dataset": {"path": str(dataset_path) if dataset_path is not None else None,
                                "key": (store.manifest.get("inputs", {}).get("dataset") or {}).get("key")}},
            config=config, key=key,
            extra={"T": int(T), "form": form, "n_tokens": n_tokens, "dim": dim, "encoder": encoder,
                   "genres": genres, "splits": {s: int(len(r)) for s, r in split_rows.items()},
                   "weights": store.weights,
                   "extra": {"T": int(T), "form": form, "n_tokens": n_tokens, "dim": dim, "encoder": encoder}},
        )
    return EncodeResult(out, status, key, seconds, report)


class _EventWriter:
    """Appends event chunks to ``x.npy`` without holding a split's events in memory."""

    def __init__(self, folder: Path, dtype: Any) -> None:
        self.folder, self.dtype = folder, np.dtype(dtype)
        self.raw_path = folder / "x.raw"
        self.fh = open(self.raw_path, "wb")
        self.n = 0

    def append(self, x: np.ndarray) -> None:
        self.fh.write(np.ascontiguousarray(x, dtype=self.dtype).tobytes())
        self.n += len(x)

    def close(self, block: int = 1 << 24) -> None:
        """Turns the raw stream into ``x.npy`` (a .npy header needs the final length)."""
        self.fh.close()
        out = np.lib.format.open_memmap(self.folder / "x.npy", mode="w+", dtype=self.dtype, shape=(self.n,))
        if self.n:
            raw = np.memmap(self.raw_path, dtype=self.dtype, mode="r", shape=(self.n,))
            for s in range(0, self.n, block):
                out[s:s + block] = raw[s:s + block]
            del raw
        out.flush()
        del out
        self.raw_path.unlink()


def _entropy(st: EncodingStats) -> np.ndarray:
    p = st.code_hist / np.maximum(st.code_hist.sum(axis=0, keepdims=True), 1)
    with np.errstate(divide="ignore", invalid="ignore"):
        return -np.nansum(np.where(p > 0, p * np.log2(p), 0.0), axis=0)


def _report(enc: SpikeEncoder, form: str, n_tokens: int, dim: int, seed: int, stats: dict[str, EncodingStats],
            recon: EncodingStats, probe_in: dict[str, dict[str, np.ndarray]], split_rows: dict[str, np.ndarray],
            labels_all: np.ndarray, genres: list[str], probe: bool, folder: Path) -> dict[str, Any]:
    T = enc.T
    splits = {s: st.summary() for s, st in stats.items()}
    total_events = sum(v["events"] for v in splits.values())
    total_vec = sum(v["vectors"] for v in splits.values())
    disk = sum(f.stat().st_size for f in folder.glob("events_*/*.npy"))
    test = stats["test"]
    n_test = test.vectors * dim
    mse = recon.sq_err / n_test if n_test else float("nan")
    mse0 = recon.sq_err_mean / n_test if n_test else float("nan")
    report: dict[str, Any] = {
        "encoder": enc.name, "T": T, "form": form, "n_tokens": n_tokens, "dim": dim, "seed": seed,
        "config": enc.config(),
        "normalisation": {"kind": "log1p + per-feature robust scale to [0, 1] (lower end 0, clipped)",
                          "quantile": enc.normalizer.quantile if enc.normalizer else None,
                          "fitted_on": "train"},
        "firing_rate": float(total_events / max(total_vec * T * dim, 1)),
        "bits_per_feature": {"capacity": enc.bits_per_feature,
                             "measured_train": splits["train"]["entropy_bits_per_feature"]["mean"]},
        "events": {"total": int(total_events), "bytes_on_disk": int(disk),
                   "dense_bits_bytes": int(math.ceil(total_vec * T * dim / 8))},
        "splits": splits,
        "reconstruction": {"decoder": "per-feature mean of the train values per spike code",
                           "split": "test", "mse": mse, "mse_predict_train_mean": mse0,
                           "r2": (1.0 - mse / mse0) if mse0 and not math.isnan(mse0) else None},
        "probe": None,
    }
    if probe and len(split_rows["test"]) and len(split_rows["train"]):
        y_tr, y_te = labels_all[split_rows["train"]], labels_all[split_rows["test"]]
        report["probe"] = {
            "model": "one-vs-rest logistic regression (C=0.1, standardised inputs), threshold 0.5",
            "inputs": {"spikes": "spike counts / T averaged over tokens",
                       "features": "normalised features averaged over tokens"},
            "split": "test",
            "spikes": linear_probe(probe_in["train"]["spikes"], y_tr, probe_in["test"]["spikes"], y_te, seed=seed),
            "features": linear_probe(probe_in["train"]["features"], y_tr, probe_in["test"]["features"], y_te,
                                     seed=seed),
            "constant": constant_predictor(y_tr, y_te),
        }
        report["probe"]["constant"]["genres"] = [genres[i] for i in report["probe"]["constant"].pop("labels")]
    return report
