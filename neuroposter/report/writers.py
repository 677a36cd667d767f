"""Markdown and HTML writers for the report (one section list, two renderings)."""

from __future__ import annotations

import html
import re
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

__all__ = ["Section", "to_markdown", "to_html"]


@dataclass
class Section:
    """One report section: paragraphs, tables and figures in order.

    Attributes:
        title: heading.
        blocks: ``("p", text)``, ``("list", [items])``, ``("table", DataFrame)``, ``("figure", (file, caption))``.
    """

    title: str
    blocks: list[tuple[str, Any]] = field(default_factory=list)

    def p(self, text: str) -> Section:
        """Adds a paragraph."""
        self.blocks.append(("p", text))
        return self

    def items(self, items: list[str]) -> Section:
        """Adds a bullet list."""
        self.blocks.append(("list", list(items)))
        return self

    def table(self, df: pd.DataFrame) -> Section:
        """Adds a table."""
        self.blocks.append(("table", df))
        return self

    def figure(self, file: str | None, caption: str) -> Section:
        """Adds a figure (a PNG in the report folder); None is skipped with a note."""
        if file is None:
            self.blocks.append(("p", f"_(no data for: {caption})_"))
        else:
            self.blocks.append(("figure", (file, caption)))
        return self


def _fmt(v: Any) -> str:
    if v is None or (isinstance(v, float) and v != v):
        return "-"
    if isinstance(v, float):
        if v == 0:
            return "0"
        if abs(v) >= 1e4 or abs(v) < 1e-3:
            return f"{v:.3g}"
        return f"{v:.4g}"
    return str(v)


def _md_table(df: pd.DataFrame) -> str:
    if df.empty:
        return "_(empty)_"
    cols = [str(c) for c in df.columns]
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for _, row in df.iterrows():
        lines.append("| " + " | ".join(_fmt(v).replace("|", "\\|").replace("\n", " ") for v in row.tolist()) + " |")
    return "\n".join(lines)


def _anchor(title: str) -> str:
    """GitHub's heading anchor: lower case, punctuation dropped, spaces to hyphens."""
    return re.sub(r"[^\w\- ]", "", title.strip().lower()).replace(" ", "-")


def to_markdown(title: str, intro: str, sections: list[Section]) -> str:
    """Renders the sections as GitHub-flavoured Markdown (figures as relative PNG links)."""
    out = [f"# {title}", "", intro, "", "Contents:", ""]
    out += [f"{i + 1}. [{s.title}](#{_anchor(s.title)})" for i, s in enumerate(sections)] + [""]
    for s in sections:
        out += [f"## {s.title}", ""]
        for kind, val in s.blocks:
            if kind == "p":
                out += [val, ""]
            elif kind == "list":
                out += [f"- {x}" for x in val] + [""]
            elif kind == "table":
                out += [_md_table(val), ""]
            elif kind == "figure":
                out += [f"![{val[1]}]({val[0]})", "", f"*{val[1]}*", ""]
    return "\n".join(out) + "\n"


_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Helvetica,Arial,sans-serif;max-width:1400px;margin:2em auto;
padding:0 1em;color:#222;line-height:1.45}
table{border-collapse:collapse;font-size:12px;margin:0.6em 0 1.2em}th,td{border:1px solid #ccc;padding:3px 6px;
text-align:right}th{background:#f2f2f2}td:first-child,th:first-child{text-align:left}
figure{margin:1em 0}figure img{max-width:100%;border:1px solid #eee}figcaption{font-size:12px;color:#555}
h2{border-bottom:1px solid #ddd;padding-bottom:3px;margin-top:1.8em}code{background:#f5f5f5;padding:0 3px}
.note{color:#555;font-size:13px}.wide{overflow-x:auto}
"""


def to_html(title: str, intro: str, sections: list[Section]) -> str:
    """Renders the sections as one self-contained HTML page (figures are PNGs in the same folder)."""
    parts = [f"<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
             f"<style>{_CSS}</style></head><body>", f"<h1>{html.escape(title)}</h1>", f"<p>{html.escape(intro)}</p>"]
    toc = "".join(f"<li><a href='#s{i}'>{html.escape(s.title)}</a></li>" for i, s in enumerate(sections))
    parts.append(f"<nav><b>Contents</b><ol class='note'>{toc}</ol></nav>")
    for i, s in enumerate(sections):
        parts.append(f"<h2 id='s{i}'>{html.escape(s.title)}</h2>")
        for kind, val in s.blocks:
            if kind == "p":
                parts.append(f"<p>{html.escape(val)}</p>")
            elif kind == "list":
                parts.append("<ul>" + "".join(f"<li>{html.escape(x)}</li>" for x in val) + "</ul>")
            elif kind == "table":
                if val.empty:
                    parts.append("<p class='note'>(empty)</p>")
                else:
                    parts.append("<div class='wide'>" + val.to_html(index=False, na_rep="-", float_format=_fmt,
                                                                     border=0, escape=True) + "</div>")
            elif kind == "figure":
                parts.append(f"<figure><img src='{html.escape(val[0])}' alt='{html.escape(val[1])}'>"
                             f"<figcaption>{html.escape(val[1])}</figcaption></figure>")
    parts.append("</body></html>")
    return "\n".join(parts)
