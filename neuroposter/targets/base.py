"""The export-target interface: one request in, one bundle out."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

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
    """

    target: str
    run_dir: Path
    out_dir: Path
    workspace: Path
    options: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class ExportResult:
    """What a target wrote and verified.

    Attributes:
        out_dir: the bundle folder (holds manifest.json and summary.json).
        summary: the content of summary.json.
        lines: a short human-readable summary the CLI prints.
        ok: False when verification failed (the CLI then exits 1 after printing).
    """

    out_dir: Path
    summary: Mapping[str, Any]
    lines: tuple[str, ...] = ()
    ok: bool = True


class UnsupportedNodeError(Exception):
    """A target cannot host a node (type, fan-in, precision...); the message names node and limit."""

    def __init__(self, node: str, node_type: str, target: str, reason: str) -> None:
        super().__init__(f"{target} cannot host node {node!r} ({node_type}): {reason}")
        self.node, self.node_type, self.target, self.reason = node, node_type, target, reason
