"""The energy profiling report: tables (pandas), figures (matplotlib Agg), HTML + Markdown writers.

``build_report(workspace, name=..., runs=..., profiles=..., samples=...)`` writes
``WORKSPACE/reports/<name>/`` atomically: ``report.html``, ``report.md``, ``energy.csv``, ``accuracy.csv``,
``accuracy_ci.csv`` (paired-bootstrap intervals over the test posters), ``layers.csv``, ``provenance.csv``,
``counts.json``, PNG figures and ``manifest.json``.

Modules: ``collect`` (runs, bundles and the op counts they store), ``compute`` (every number of the report,
:class:`~neuroposter.report.compute.ReportData`), ``tables`` / ``headline`` / ``uncertainty`` (the tables),
``figures``, ``sections`` (the text) and ``build`` (renders and writes). The report computes no op counts: the
exports store them in their bundles (``op_counts.json``).
"""

from __future__ import annotations

from typing import Any

__all__ = ["build_report", "ReportResult"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        from neuroposter.report import build

        return getattr(build, name)
    raise AttributeError(f"module 'neuroposter.report' has no attribute {name!r}")
