"""Streaming, resumable DenseNet-169 feature extraction into a :mod:`~neuroposter.features.store`.

One pass over the dataset in fixed batches: images are loaded and normalised in a background
thread while the previous batch runs through the backbone under ``torch.inference_mode``; both
outputs (pooled ``[1664]`` and the token map ``[H'*W', 1664]``) go straight into float16
memory maps, so the whole set is never held in RAM. After every batch the memmaps are flushed
and the batch is marked in ``done.npy``; an interrupted run resumes with the missing batches only.
Batches have fixed boundaries (row ``b*batch_size`` onwards), so a resumed run computes every row
in the same batch as an uninterrupted one and gives identical numbers.

Safety: the store's lock is held for the whole run (a second extraction into the same store fails at
once); the destination is checked first (:func:`neuroposter.artifact.check_destination`: never a
workspace, dataset, raw folder or other artifact); the space the memory maps need is checked and
reserved before any is written (a full disk is a one-line error, not a SIGBUS); a poster whose bytes
differ from the hash recorded at import stops the run; the manifest hashes every final file.
"""

from __future__ import annotations

import concurrent.futures
import errno
import logging
import os
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np

from neuroposter._io import atomic_write_json, read_json, sha256_json, swap_dir
from neuroposter._progress import progress
from neuroposter.artifact import artifact_lock, check_destination, check_free_space
from neuroposter.errors import DataError, NeuroposterError, ResourceError, UsageError
from neuroposter.features.backbone import (
    BACKBONE_NAME,
    FEATURE_DIM,
    WeightsSpec,
    build_backbone,
    feature_grid,
    preprocess_batch,
    resolve_weights,
)
from neuroposter.features.store import STORE_KIND, partial_dir, store_key
from neuroposter.manifest import MANIFEST_NAME, read_manifest, record_files, require_manifest, write_manifest

__all__ = ["ExtractionResult", "extract_features", "select_rows", "run_backbone"]

log = logging.getLogger(__name__)

_PROGRESS = "progress.json"  # marker of a valid partial store (written last at initialisation)
_FP16_MAX = float(np.finfo(np.float16).max)


@dataclass(frozen=True)
class ExtractionResult:
    """What :func:`extract_features` did.

    Attributes:
        path: the store folder.
        status: ``"built"`` (from scratch), ``"resumed"`` (finished an interrupted run) or
            ``"up-to-date"`` (nothing to do).
        rows: rows in the store.
        computed: rows computed by this call.
        seconds: wall time of loading, inference and writing (network construction excluded; 0 when up to date).
        cpu_seconds: CPU time of this process over the same span (all threads; robust to a busy machine).
        weights: the weights id used.
        weights_note: why it differs from what was asked (e.g. the ``auto`` fallback), or "".
        grid: ``(H', W')`` of the token map.
        key: the store key.
    """

    path: Path
    status: str
    rows: int
    computed: int
    seconds: float
    weights: str
    weights_note: str
    grid: tuple[int, int]
    key: str
    manifest: dict[str, Any] = field(default_factory=dict, repr=False)
    cpu_seconds: float = 0.0

    @property
    def images_per_s(self) -> float | None:
        """Throughput of this call (None when nothing was computed)."""
        return self.computed / self.seconds if self.computed and self.seconds > 0 else None


def select_rows(dataset: Any, limit: int | None) -> np.ndarray:
    """Dataset indices to extract: all of them, or ``limit`` spread over the splits.

    With a limit, each split keeps its first ``round(limit * share)`` items (at least one when the
    split is not empty), so a limited store still has train, val and test rows.
    """
    n = len(dataset)
    if limit is None or limit >= n:
        return np.arange(n, dtype=np.int64)
    if limit < 1:
        raise ValueError(f"limit must be >= 1, got {limit}")
    chosen: list[np.ndarray] = []
    try:
        splits = [np.asarray(dataset.indices(s), dtype=np.int64) for s in ("train", "val", "test")]
    except (AttributeError, ValueError, KeyError):
        splits = []
    if not splits or sum(len(s) for s in splits) == 0:
        return np.arange(limit, dtype=np.int64)
    for idx in splits:
        if len(idx):
            k = max(1, int(round(limit * len(idx) / n)))
            chosen.append(idx[:k])
    rows = np.sort(np.concatenate(chosen))
    return rows[:limit] if len(rows) > limit else rows


def run_backbone(model: Any, batch: Any) -> tuple[np.ndarray, np.ndarray]:
    """One forward pass -> (pooled float32 ``[B, 1664]``, tokens float32 ``[B, H'*W', 1664]``).

    ``pooled`` is the mean of the token map over space (torchvision's global average pooling).
    """
    import torch

    with torch.inference_mode():
        fmap = model(batch)  # [B, C, H', W']
        tokens = fmap.flatten(2).transpose(1, 2)  # [B, H'*W', C], row-major over (H', W')
        pooled = fmap.mean(dim=(2, 3))  # [B, C]
    return pooled.numpy(), tokens.contiguous().numpy()


def _describe_difference(old: dict[str, Any], new: dict[str, Any]) -> str:
    diffs = []
    for k in ("dataset_key", "weights", "image_policy", "rows", "backbone"):
        if old.get(k) != new.get(k):
            if k == "rows":
                diffs.append(f"rows ({old.get('n_rows')} -> {new.get('n_rows')}, --limit changed)")
            elif k == "dataset_key":
                diffs.append("the dataset")
            else:
                diffs.append(f"{k} ({old.get(k)!r} -> {new.get(k)!r})")
    return ", ".join(diffs) or "its inputs"


def _store_bytes(n: int, n_tok: int) -> dict[str, int]:
    """Bytes of each array of a store of ``n`` rows (the .npy headers are covered by a small margin)."""
    return {"pooled.npy": n * FEATURE_DIM * 2, "tokens.npy": n * n_tok * FEATURE_DIM * 2, "done.npy": n,
            "rows.npy": n * 8}


_MARGIN = 1 << 16  # .npy headers, progress.json, the manifest


def _no_space(where: Path, needed: int) -> ResourceError:
    return ResourceError(f"no space left on device: {where} (about {max(needed / 1e6, 1):,.0f} MB needed "
                         "for the feature store; free some space or write it elsewhere with --name PATH)")


def _preallocate(path: Path, needed: int, where: Path) -> None:
    """Reserves the blocks of ``path`` now, so a full disk is an error here, not a SIGBUS in a memmap write."""
    fd = os.open(path, os.O_RDWR)
    try:
        size = os.fstat(fd).st_size
        if size:
            os.posix_fallocate(fd, 0, size)
    except OSError as exc:
        if exc.errno == errno.ENOSPC:
            raise _no_space(where, needed) from None
        if exc.errno not in (errno.EOPNOTSUPP, errno.EINVAL, errno.ENOSYS):
            raise
    finally:
        os.close(fd)


def _progress_of(part: Path) -> dict[str, Any] | None:
    """The progress record of a partial store, or None when it has none (a start that never finished).

    A partial whose progress was already removed at the final step still has its manifest; it is
    read back from there so the run finishes instead of starting over.
    """
    if (part / _PROGRESS).is_file():
        return read_json(part / _PROGRESS)
    if (part / MANIFEST_NAME).is_file():
        try:
            m = read_json(part / MANIFEST_NAME)
        except NeuroposterError:
            return None
        if isinstance(m, dict) and m.get("kind") == STORE_KIND and isinstance(m.get("identity"), dict):
            return {**m["identity"], "batch_size": (m.get("config") or {}).get("batch_size")}
    return None


def extract_features(
    dataset: Any,
    out_dir: str | os.PathLike[str],
    *,
    weights: str | WeightsSpec = "auto",
    batch_size: int = 16,
    limit: int | None = None,
    force: bool = False,
    on_batch: Callable[[int], None] | None = None,
    show_progress: bool = True,
    before_commit: Callable[[Path], None] | None = None,
) -> ExtractionResult:
    """Extracts pooled and token DenseNet-169 features of ``dataset`` into a store at ``out_dir``.

    The store's lock (:func:`neuroposter.artifact.artifact_lock`) is held for the whole call, so a
    second extraction into the same store fails at once. The destination must be a new path, an
    empty folder or a feature store (:func:`neuroposter.artifact.check_destination`): a workspace,
    a dataset, a raw poster folder or another kind of artifact is never replaced, even with ``force``.

    Args:
        dataset: a :class:`neuroposter.data.PosterDataset` (or anything with ``key``,
            ``image_policy``, ``load_image(i)``, ``indices(split)`` and ``len()``).
        out_dir: the store folder, e.g. ``WORKSPACE/features/default``.
        weights: ``"auto"``, ``"imagenet"``, ``"random"``, a state-dict path, or a resolved spec.
        batch_size: images per forward pass.
        limit: extract only this many images (spread over the splits); part of the store key.
        force: rebuild even if a store (or an interrupted one) with other inputs exists.
        on_batch: called with the batch number after each batch is safely on disk (tests use it
            to simulate an interruption).
        show_progress: show a progress bar.
        before_commit: called with the finished (not yet swapped-in) folder just before its
            manifest is written, to add files that the manifest then covers (the CLI's
            ``resolved_config.yaml``).

    Returns:
        An :class:`ExtractionResult`; ``status == "up-to-date"`` when nothing had to be done.

    Raises:
        UsageError: a refused destination, or a store built from different inputs exists and
            ``force`` is False.
        ArtifactBusyError: another process is writing the same store.
        ResourceError: not enough free disk space for the store.
        ManifestError: an up-to-date store whose files changed (rebuild it with ``force``).
        NeuroposterError: the weights are unavailable.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    out = Path(out_dir)
    protect = [p for p in (getattr(dataset, "root", None), getattr(dataset, "posters_dir", None)) if p]
    check_destination(out, STORE_KIND, force=True, protect=protect, option="--name")
    spec = weights if isinstance(weights, WeightsSpec) else resolve_weights(weights)
    with artifact_lock(out):
        # again under the lock: another writer may have finished in between
        check_destination(out, STORE_KIND, force=True, protect=protect, option="--name")
        return _extract_locked(dataset, out, spec, batch_size, limit, force, on_batch, show_progress,
                               before_commit)


def _extract_locked(dataset: Any, out: Path, spec: WeightsSpec, batch_size: int, limit: int | None, force: bool,
                    on_batch: Callable[[int], None] | None, show_progress: bool,
                    before_commit: Callable[[Path], None] | None) -> ExtractionResult:
    rows = select_rows(dataset, limit)
    limited = len(rows) < len(dataset)
    policy = dataset.image_policy.to_dict()
    height, width = dataset.image_policy.output_size
    grid = feature_grid(height, width)
    n_tok = grid[0] * grid[1]
    key = store_key(getattr(dataset, "key", None), spec.id, policy, rows if limited else None)
    identity = {"key": key, "dataset_key": getattr(dataset, "key", None), "weights": spec.id,
                "image_policy": policy, "backbone": BACKBONE_NAME, "n_rows": int(len(rows)),
                "rows": sha256_json(rows.tolist())[:16] if limited else None}

    # 1. A complete store already there? (check_destination made sure anything there is a feature store)
    if (out / MANIFEST_NAME).is_file():
        old = read_manifest(out)
        old_id = old.get("identity", {})
        if old.get("key") == key and old.get("complete") and old.get("status") != "failed" and not force:
            # up to date only if its files are still what was written
            old = require_manifest(out, STORE_KIND, rerun="neuroposter features --force")
            log.info("features at %s are up to date (key %s)", out, key[:12])
            return ExtractionResult(out, "up-to-date", int(len(rows)), 0, 0.0, spec.id,
                                    str(old.get("weights_note") or ""), grid, key, old)
        if not force:
            raise UsageError(
                f"{out} already holds features from different inputs ({_describe_difference(old_id, identity)}); "
                "pass --force to rebuild it, or --name to write a separate store"
            )

    # 2. Resume or start a partial store under the hidden temporary name.
    part = partial_dir(out)
    status = "built"
    n = len(rows)
    sizes = _store_bytes(n, n_tok)
    needed = sum(sizes.values()) + _MARGIN
    if part.exists():
        prog = _progress_of(part)
        if prog is not None and prog.get("key") == key and not force:
            status = "resumed"
            # keep the interrupted run's batch boundaries (the docstring's promise), whatever --batch-size says now
            batch_size = int(prog.get("batch_size") or batch_size)
        elif prog is not None and not force:
            raise UsageError(
                f"an interrupted extraction with different inputs ({_describe_difference(prog, identity)}) "
                f"is at {part}; rerun with its options to resume it, or pass --force to discard it"
            )
        else:
            shutil.rmtree(part)
    model = None
    if status == "built":
        # Build (and so validate) the backbone before anything is written: unusable weights must not
        # leave behind a partial store that later runs would take for an interrupted extraction.
        model = build_backbone(spec)
        # Check the space first and reserve it: a memory map on a full disk dies by SIGBUS.
        check_free_space(out, needed, "the feature store")
        part.mkdir(parents=True)
        try:
            for name, shape, dtype in (("pooled.npy", (n, FEATURE_DIM), np.float16),
                                       ("tokens.npy", (n, n_tok, FEATURE_DIM), np.float16),
                                       ("done.npy", (n,), np.bool_)):
                np.lib.format.open_memmap(part / name, mode="w+", dtype=dtype, shape=shape).flush()
                _preallocate(part / name, needed, out)
            np.save(part / "rows.npy", rows)
            atomic_write_json(part / _PROGRESS, {**identity, "batch_size": batch_size,
                                                 "started": time.strftime("%Y-%m-%dT%H:%M:%S")})
        except BaseException as exc:
            # nothing was computed yet: leave nothing behind
            shutil.rmtree(part, ignore_errors=True)
            if isinstance(exc, OSError) and exc.errno == errno.ENOSPC:
                raise _no_space(out, needed) from None
            raise
    else:
        # a partial written by an older version may hold sparse files: reserve their blocks now
        for name in ("pooled.npy", "tokens.npy", "done.npy"):
            if (part / name).is_file():
                _preallocate(part / name, needed, out)

    try:
        pooled = np.lib.format.open_memmap(part / "pooled.npy", mode="r+")
        tokens = np.lib.format.open_memmap(part / "tokens.npy", mode="r+")
        done = np.lib.format.open_memmap(part / "done.npy", mode="r+")
    except (OSError, ValueError) as exc:
        raise DataError(f"{part}: unreadable partial store ({exc}); pass --force to restart") from None
    if tokens.shape[1:] != (n_tok, FEATURE_DIM) or len(done) != len(rows) or len(pooled) != len(rows):
        raise DataError(f"{part}: partial store has unexpected shapes; pass --force to restart")

    # 3. Fixed batch boundaries; skip batches that are complete.
    batches = [(b, s, min(s + batch_size, n)) for b, s in enumerate(range(0, n, batch_size))]
    todo = [(b, s, e) for (b, s, e) in batches if not bool(done[s:e].all())]
    n_todo = sum(e - s for _, s, e in todo)
    if status == "resumed":
        log.info("resuming %s: %d of %d rows left", out, n_todo, n)

    computed = 0
    max_value = 0.0
    if todo and model is None:
        model = build_backbone(spec)
    t0 = time.perf_counter()  # throughput excludes building the network
    c0 = time.process_time()
    try:
        if todo:
            # a PosterDataset checks each poster's bytes against the SHA-256 recorded at import and
            # decodes exactly the checked bytes (an edited poster stops the run with one line)
            verified = callable(getattr(dataset, "verify_poster", None))

            def load(s: int, e: int) -> Any:
                if verified:
                    return preprocess_batch([dataset.load_image(int(i), verify=True) for i in rows[s:e]])
                return preprocess_batch([dataset.load_image(int(i)) for i in rows[s:e]])

            bar = progress(total=n_todo, desc="features", unit="img") if show_progress else _NoBar()
            with concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool:
                fut = pool.submit(load, todo[0][1], todo[0][2])
                try:
                    for j, (b, s, e) in enumerate(todo):
                        batch = fut.result()
                        if tuple(batch.shape[2:]) != (height, width):
                            raise DataError(
                                f"image of size {tuple(batch.shape[2:])} in rows {s}..{e - 1}; the image policy "
                                f"promises {height}x{width}"
                            )
                        if j + 1 < len(todo):
                            fut = pool.submit(load, todo[j + 1][1], todo[j + 1][2])
                        p, tk = run_backbone(model, batch)
                        max_value = max(max_value, float(tk.max(initial=0.0)))
                        pooled[s:e] = np.minimum(p, _FP16_MAX)
                        tokens[s:e] = np.minimum(tk, _FP16_MAX)
                        pooled.flush()
                        tokens.flush()
                        done[s:e] = True
                        done.flush()
                        computed += e - s
                        bar.update(e - s)
                        if on_batch is not None:
                            on_batch(b)
                finally:
                    bar.close()
                    if not fut.done():
                        fut.cancel()
    except BaseException:
        if status == "built" and computed == 0:
            # nothing was computed (e.g. an edited or missing poster, unusable weights): leave nothing behind
            del pooled, tokens, done
            shutil.rmtree(part, ignore_errors=True)
        raise
    seconds = time.perf_counter() - t0
    cpu_seconds = time.process_time() - c0
    if max_value > _FP16_MAX:
        log.warning("feature values up to %.3g exceed float16; clipped to %.0f", max_value, _FP16_MAX)
    if not bool(np.asarray(done).all()):  # pragma: no cover - every batch above sets its rows
        raise NeuroposterError(f"{part}: {int((~np.asarray(done)).sum())} rows missing after extraction")
    del pooled, tokens, done

    # 4. Complete: manifest (hashing every final file), then swap the finished folder in.
    fields = {
        "complete": True,
        "grid": list(grid),
        "n_tokens": n_tok,
        "dim": FEATURE_DIM,
        "n_rows": int(n),
        "limited": bool(limited),
        "input_size": [int(height), int(width)],
        "weights": spec.id,
        "weights_note": spec.note,
        "weights_path": str(spec.path) if spec.path is not None else None,
        "backbone": BACKBONE_NAME,
        "dtype": "float16",
        "seconds": round(seconds, 3),
        "images_per_s": round(computed / seconds, 3) if computed and seconds > 0 else None,
    }
    if before_commit is not None:
        before_commit(part)
    root = getattr(dataset, "root", None)
    write_manifest(
        part, STORE_KIND,
        inputs={"dataset": {"path": str(Path(root).resolve()) if root else None,
                            "key": getattr(dataset, "key", None)}},
        config={"backbone": BACKBONE_NAME, "weights": spec.id, "image_policy": policy,
                "preprocess": {"mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225]},
                "batch_size": int(batch_size), "limit": limit},
        key=key,
        extra={**fields, "identity": identity, "extra": dict(fields)},
    )
    # progress.json goes only now (a crash before this point still resumes), and the manifest's file
    # list is brought up to date without it (unchanged files are not re-read)
    if (part / _PROGRESS).is_file():
        (part / _PROGRESS).unlink()
    manifest = record_files(part)
    swap_dir(part, out)
    log.info("features written to %s (%d rows, grid %s, weights %s)", out, n, grid, spec.id)
    return ExtractionResult(out, status, int(n), computed, seconds, spec.id, spec.note, grid, key, manifest,
                            cpu_seconds)


class _NoBar:
    def update(self, n: int) -> None:
        pass

    def close(self) -> None:
        pass
