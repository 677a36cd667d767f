"""The one bundle writer of the export targets: bundle folders, manifests, summaries, option bounds.

A bundle is ``export/<target>/<run>/`` (or ``--out``) holding the artifacts, ``manifest.json``
(kind ``"export"``: source run, hashes of the artifacts and of the run checkpoint, library
versions, options, every file's size and SHA-256), ``summary.json`` (what the target measured and
checked) and ``resolved_config.yaml`` (the options the command ran with).

Every target writes its bundle through :func:`bundle_dir`, a thin wrapper of
:func:`neuroposter.artifact.write_artifact`: the destination is checked before anything is written
(never the run, a workspace, its poster / dataset / feature / encoded / run / report folders, a
folder of other files or a folder inside another artifact; an existing bundle only with
``--force``), one writer at a time, and the finished bundle is swapped in atomically. A failed
verification calls :func:`reject_bundle`: the new bundle is kept beside the good one as
``<name>.failed`` and the good one is left untouched.

The run's evaluation inputs are loaded by :mod:`neuroposter.targets.inputs` (the one loader).
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import Any, Iterable, Iterator, Mapping

from neuroposter._io import atomic_write_json, sha256_file
from neuroposter.errors import UsageError
from neuroposter.manifest import write_manifest

__all__ = [
    "DEFAULT_RUNS",
    "default_run",
    "protected_paths",
    "check_bundle_destination",
    "bundle_dir",
    "reject_bundle",
    "write_bundle",
    "run_record",
    "samples_option",
    "fraction_option",
    "SAMPLES_LIMIT",
]

# Default run per target: the SDT for the neuromorphic targets; onnx picks by --model.
DEFAULT_RUNS = {"onnx": "cnn"}
# Most test samples a target simulates (the CLI's `--samples all` is this many; every target then
# takes min(samples, size of the test split)).
SAMPLES_LIMIT = 100_000
# The workspace folders a bundle may never be written over or into.
_WORKSPACE_FOLDERS = ("raw", "datasets", "features", "encoded", "runs", "reports", "exports.json")


def default_run(target: str, model: str | None = None) -> str:
    """The run a target exports when ``--run`` is not given (``sdt``; onnx: ``--model``, default cnn)."""
    if target == "onnx":
        return model or DEFAULT_RUNS["onnx"]
    return "sdt"


# -- where a bundle may be written -------------------------------------------------------------------


def protected_paths(request: Any, extra: Iterable[str | os.PathLike[str] | None] = ()) -> list[Path]:
    """What a bundle must not overlap: the run, the workspace's artifact folders, the run's inputs."""
    root = Path(request.workspace)
    out: list[Path] = [Path(request.run_dir)] + [root / name for name in _WORKSPACE_FOLDERS]
    out += [Path(p) for p in extra if p is not None]
    return out


def _refuse_workspace_root(out_dir: Path, root: Path) -> None:
    """The workspace root itself (or a folder holding it) is never a bundle folder."""
    out_r, root_r = out_dir.resolve(), root.resolve()
    if out_r == root_r:
        raise UsageError(f"{out_dir} is the workspace {root}; choose another --out (it is never replaced)")
    if out_r in root_r.parents:
        raise UsageError(f"{out_dir} holds the workspace {root}; choose another --out (it is never replaced)")


def check_bundle_destination(request: Any, extra: Iterable[str | os.PathLike[str] | None] = ()) -> None:
    """Refuses a bundle destination that could destroy data (call it before a long export).

    Raises:
        UsageError: ``request.out_dir`` is the workspace or holds it, overlaps the run, a workspace
            folder or an input, is a folder of other files, lies inside another artifact, or holds
            a bundle and ``request.force`` is not set. The message says what to do.
    """
    from neuroposter.artifact import check_destination

    out_dir = Path(request.out_dir)
    _refuse_workspace_root(out_dir, Path(request.workspace))
    check_destination(out_dir, "export", force=bool(getattr(request, "force", False)),
                      protect=protected_paths(request, extra), option="--out")


@contextlib.contextmanager
def bundle_dir(request: Any, *, protect: Iterable[str | os.PathLike[str] | None] = (),
               needs_bytes: int | None = None) -> Iterator[Path]:
    """A temporary folder that becomes the bundle ``request.out_dir`` when the block succeeds.

    The block writes the bundle and its manifest (:func:`write_bundle` or
    :func:`neuroposter.manifest.write_manifest` with kind ``"export"``); ``resolved_config.yaml``
    (``request.write_config``) is written after it, still inside the temporary folder, and hashed
    with the rest. A block that calls :func:`reject_bundle` leaves the bundle as ``<name>.failed``.

    Args:
        request: the :class:`~neuroposter.targets.base.ExportRequest`.
        protect: further paths the bundle must not overlap (the run's inputs).
        needs_bytes: an estimate of the bundle's size, checked against the free disk space first.

    Raises:
        UsageError: refused destination (see :func:`check_bundle_destination`).
        ArtifactBusyError: another process writes the same bundle.
        ResourceError: not enough disk space.
    """
    from neuroposter.artifact import write_artifact

    out_dir = Path(request.out_dir)
    _refuse_workspace_root(out_dir, Path(request.workspace))
    with write_artifact(out_dir, "export", force=bool(getattr(request, "force", False)),
                        protect=protected_paths(request, protect), option="--out",
                        needs_bytes=needs_bytes) as tmp:
        yield tmp
        writer = getattr(request, "write_config", None)
        if writer is not None:
            writer(tmp)


def reject_bundle(tmp: str | os.PathLike[str], out_dir: str | os.PathLike[str], reason: str) -> Path:
    """Marks the bundle being written as a failed verification; returns where it will be kept.

    Call inside :func:`bundle_dir`: the new bundle becomes ``<name>.failed`` beside ``out_dir``, and
    whatever ``out_dir`` held is left untouched.
    """
    from neuroposter.artifact import failed_path, reject

    reject(tmp, reason)
    return failed_path(out_dir)


def failed_line(out_dir: str | os.PathLike[str], failed: str | os.PathLike[str]) -> str:
    """The summary line saying where a failed bundle was kept and that nothing was replaced."""
    kept = "the previous bundle there is unchanged" if Path(out_dir).is_dir() else "nothing was written there"
    return f"  the failed bundle is kept at {failed} for inspection; {kept}"


# -- bundle files ------------------------------------------------------------------------------------


def write_bundle(
    directory: str | os.PathLike[str],
    *,
    target: str,
    run_dir: str | os.PathLike[str],
    run_manifest: Mapping[str, Any] | None,
    artifacts: list[str],
    summary: Mapping[str, Any],
    options: Mapping[str, Any],
    inputs: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Writes ``results.json`` (:func:`neuroposter.profiling.api.write_bundle_results`, from the bundle's
    ``op_counts.json``), ``summary.json`` and ``manifest.json`` of a bundle.

    Args:
        directory: the bundle folder (usually the temporary one of :func:`bundle_dir`).
        target: target name.
        run_dir: the exported run.
        run_manifest: the run's manifest (its key is recorded).
        artifacts: file names inside ``directory`` to hash.
        summary: the summary to write.
        options: the export options (the manifest's config).
        inputs: further inputs to record (e.g. the encoded set the verification ran on).

    Returns:
        The manifest.
    """
    from neuroposter.profiling.api import RESULTS_NAME, write_bundle_results

    directory, run_dir = Path(directory), Path(run_dir)
    if RESULTS_NAME not in artifacts:   # NeuroBench-named metrics + energies from the stored op counts
        write_bundle_results(directory, name=run_dir.name)
        artifacts = [*artifacts, RESULTS_NAME]
    hashes = {name: sha256_file(directory / name) for name in artifacts}
    atomic_write_json(directory / "summary.json", summary)
    return write_manifest(directory, "export", inputs={"run": run_record(run_dir, run_manifest), **dict(inputs or {})},
                          config=dict(options), extra={"target": target, "source_run": run_dir.name,
                                                       "artifacts": hashes})


def run_record(run_dir: str | os.PathLike[str], run_manifest: Mapping[str, Any] | None) -> dict[str, Any]:
    """The bundle manifest's ``inputs.run``: where the run is, its key and its checkpoint's SHA-256.

    ``report`` compares the key and the checkpoint hash with the run as it is now (a stale bundle is
    refused), so every bundle -- a refusal verdict too -- records both.
    """
    run_dir = Path(run_dir)
    files = (run_manifest or {}).get("files") or {}
    ckpt_hash = (files.get("checkpoint.pt") or {}).get("sha256") if isinstance(files, Mapping) else None
    ckpt = run_dir / "checkpoint.pt"
    return {
        "path": str(run_dir.resolve()),
        "key": (run_manifest or {}).get("key"),
        "checkpoint_sha256": ckpt_hash or (sha256_file(ckpt) if ckpt.is_file() else None),
    }


# -- options -----------------------------------------------------------------------------------------


def samples_option(options: Mapping[str, Any], default: int, *, flag: str = "--samples") -> int:
    """``options["samples"]``: None (or absent) is the target's ``default``; otherwise 1..SAMPLES_LIMIT.

    0 never means "all" (the CLI's ``--samples all`` is :data:`SAMPLES_LIMIT`).

    Args:
        options: holds ``"samples"``.
        default: the value when it is absent.
        flag: the option's name in the error message.

    Raises:
        UsageError: not an integer in ``[1, SAMPLES_LIMIT]``.
    """
    value = options.get("samples")
    if value is None:
        return int(default)
    bad = f"{flag} must be an integer in [1, {SAMPLES_LIMIT}] (or `all`), got"
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise UsageError(f"{bad} {value!r}")
    try:
        n = int(str(value).strip())
    except ValueError:
        if str(value).strip().lower() == "all":
            return SAMPLES_LIMIT
        raise UsageError(f"{bad} {value!r}") from None
    if not 1 <= n <= SAMPLES_LIMIT:
        raise UsageError(f"{bad} {n}")
    return n


def fraction_option(options: Mapping[str, Any], name: str, default: float) -> float:
    """A fraction option such as ``min_agreement``: None (or absent) is ``default``, else in [0, 1].

    Raises:
        UsageError: not a number in ``[0, 1]``.
    """
    import math

    value = options.get(name)
    if value is None:
        return float(default)
    flag = "--" + name.replace("_", "-")
    try:
        x = float(value)
    except (TypeError, ValueError):
        raise UsageError(f"{flag} must be a number in [0, 1], got {value!r}") from None
    if isinstance(value, bool) or not math.isfinite(x) or not 0.0 <= x <= 1.0:
        raise UsageError(f"{flag} must be a number in [0, 1], got {value!r}")
    return x


def store_chip_counts(ctx: Any, graph: Any, x_all: Any, *, graph_label: str = "graph_q") -> None:
    """Adds ``op_counts.json`` to a chip bundle: ``graph`` (the deployed graph) on the first ``count_samples``
    evaluation samples of ``x_all`` (the graph's input layout ``[T, B, ...]``), split into the chip part and the
    host part (:func:`neuroposter.profiling.stored.chip_counts`); the report prices them on the chip's profile.

    Args:
        ctx: the export's context (``options["count_samples"]``, ``profile``, ``files``, ``lines``).
        graph: the deployed graph (nested ``nir.NIRGraph``).
        x_all: every evaluation sample in the graph's input layout.
        graph_label: what the counted graph is, for the provenance.
    """
    import numpy as np

    from neuroposter.profiling.stored import chip_counts, write_op_counts

    n = min(int(ctx.options["count_samples"]), int(x_all.shape[1]))
    lim = ctx.profile.limits
    entries = chip_counts(graph, np.ascontiguousarray(x_all[:, :n]), run_dir=ctx.request.run_dir,
                          encoded=str(ctx.inputs.path), chip=ctx.request.target,
                          samples_requested=int(ctx.options["count_samples"]), weight_bits=lim.weight_bits,
                          state_bits=lim.state_bits, graph_label=graph_label)
    ctx.files["op_counts.json"] = lambda p: write_op_counts(p.parent, entries)
    host = entries.get("host")
    ctx.lines.append(f"  op counts on {n} test samples stored in op_counts.json: {entries['model'].counts.synops:,.0f} "
                     "synaptic ops per inference on the chip"
                     + (f", {host.counts.synops:,.0f} on the host" if host is not None else ""))
