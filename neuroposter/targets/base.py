"""The export-target interface: one request in, one bundle out."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping

__all__ = ["ExportRequest", "ExportResult", "UnsupportedNodeError"]


@dataclass(frozen=True)
class ExportRequest:
    """What `neuroposter export` asks a target to do.

    Attributes:
        target: registered target name (e.g. ``"loihi"``, ``"nir"``, ``"onnx"``, ``"xylo"``).
        run_dir: the training run to export (``WORKSPACE/runs/<name>``).
        out_dir: the bundle folder to write (``export/<target>/<run>`` unless ``--out``).
        workspace: the workspace root (to find datasets, features, encoded sets).
        options: target-specific options from the CLI (samples, agreement threshold, ...).
        force: replace an existing bundle at ``out_dir`` (``--force``); without it an existing bundle
            is refused. Whatever is not an export bundle is never replaced.
        write_config: writes ``resolved_config.yaml`` into the folder it is given (the CLI's writer);
            called inside the bundle before it is finalised, so the file is hashed with the rest.
    """

    target: str
    run_dir: Path
    out_dir: Path
    workspace: Path
    options: Mapping[str, Any] = field(default_factory=dict)
    force: bool = False
    write_config: Callable[[Path], None] | None = None


@dataclass(frozen=True)
class ExportResult:
    """What a target wrote and verified.

    Attributes:
        out_dir: the bundle folder (holds manifest.json and summary.json); for a failed verification
            the ``<name>.failed`` folder it was kept in.
        summary: the content of summary.json.
        lines: a short human-readable summary the CLI prints.
        ok: False when verification failed or the target refused the network (the CLI then exits 1
            after printing).
        failed: True when the verification failed: the new bundle was kept beside the requested one
            as ``<name>.failed`` and nothing was replaced. False for a success and for a deliberate
            refusal verdict (a chip that cannot host the network: ``ok`` False, bundle at its name,
            ``summary["reason"]`` says why).
    """

    out_dir: Path
    summary: Mapping[str, Any]
    lines: tuple[str, ...] = ()
    ok: bool = True
    failed: bool = False


class UnsupportedNodeError(Exception):
    """A target cannot host a node (type, fan-in, precision...); the message names node and limit."""

    def __init__(self, node: str, node_type: str, target: str, reason: str) -> None:
        super().__init__(f"{target} cannot host node {node!r} ({node_type}): {reason}")
        self.node, self.node_type, self.target, self.reason = node, node_type, target, reason
