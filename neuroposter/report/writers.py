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
        blocks: ``("p", text)``, ``("note", text)`` (a small-print paragraph: captions, units),
            ``("list", [items])``, ``("table", DataFrame)``, ``("figure", (file, caption))``.
        collapsed: shown folded (HTML ``<details>``; Markdown keeps it as a normal section after the answer).
    """

    title: str
    blocks: list[tuple[str, Any]] = field(default_factory=list)
    collapsed: bool = False

    def p(self, text: str) -> Section:
        """Adds a paragraph."""
        self.blocks.append(("p", text))
        return self

    def note(self, text: str) -> Section:
        """Adds a small-print paragraph (a caption, the units of a table)."""
        self.blocks.append(("note", text))
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


def to_markdown(title: str, banner: str, sections: list[Section]) -> str:
    """Renders the sections as GitHub-flavoured Markdown (figures as relative PNG links): the title, the data
    banner, the sections shown open (the answer), a list of the rest, then the rest as normal sections."""
    out = [f"# {title}", "", f"> **{banner}**", ""]
    shown = [s for s in sections if not s.collapsed]
    rest = [s for s in sections if s.collapsed]
    for i, s in enumerate(shown + rest):
        if s is (rest[0] if rest else None):
            out += ["More detail (the sections below):", ""]
            out += [f"{j + 1}. [{r.title}](#{_anchor(r.title)})" for j, r in enumerate(rest)] + [""]
        out += [f"## {s.title}", ""]
        for kind, val in s.blocks:
            if kind == "p":
                out += [val, ""]
            elif kind == "note":
                out += [f"*{val}*", ""]
            elif kind == "list":
                out += [f"- {x}" for x in val] + [""]
            elif kind == "table":
                out += [_md_table(val), ""]
            elif kind == "figure":
                out += [f"![{val[1]}]({val[0]})", "", f"*{val[1]}*", ""]
    return "\n".join(out) + "\n"


_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Helvetica,Arial,sans-serif;max-width:1360px;margin:0.6em auto;
padding:0 1em;color:#222;line-height:1.4;font-size:14px}
h1{font-size:22px;margin:0.3em 0}
.banner{background:#fff4d6;border:1px solid #e0c36a;padding:6px 10px;font-size:13.5px;margin:0.4em 0}
table{border-collapse:collapse;font-size:12px;margin:0.4em 0 0.8em}th,td{border:1px solid #ccc;padding:3px 6px;
text-align:right}th{background:#f2f2f2}td:first-child,th:first-child{text-align:left}
figure{margin:0.5em 0}figure img{max-width:100%;border:1px solid #eee}figcaption{font-size:12px;color:#555}
h2{border-bottom:1px solid #ddd;padding-bottom:2px;margin:0.8em 0 0.3em;font-size:18px}
code{background:#f5f5f5;padding:0 3px}
.note{color:#555;font-size:12px;margin:0.2em 0}.wide{overflow-x:auto}
.answer li{margin:0.15em 0}.answer li:first-child{font-weight:600}
details{border-top:1px solid #ddd;padding:2px 0}summary{cursor:pointer}
summary h2{display:inline;border:0;font-size:16px;margin:0}
.first figure img{max-height:430px}
"""


def _html_blocks(s: Section, first: bool) -> list[str]:
    parts: list[str] = []
    for kind, val in s.blocks:
        if kind == "p":
            parts.append(f"<p>{html.escape(val)}</p>")
        elif kind == "note":
            parts.append(f"<p class='note'>{html.escape(val)}</p>")
        elif kind == "list":
            cls = " class='answer'" if first else ""
            parts.append(f"<ul{cls}>" + "".join(f"<li>{html.escape(x)}</li>" for x in val) + "</ul>")
        elif kind == "table":
            if val.empty:
                parts.append("<p class='note'>(empty)</p>")
            else:
                parts.append("<div class='wide'>" + val.to_html(index=False, na_rep="-", float_format=_fmt,
                                                                 border=0, escape=True) + "</div>")
        elif kind == "figure":
            parts.append(f"<figure><img src='{html.escape(val[0])}' alt='{html.escape(val[1])}'>"
                         f"<figcaption>{html.escape(val[1])}</figcaption></figure>")
    return parts


def to_html(title: str, banner: str, sections: list[Section]) -> str:
    """Renders the sections as one self-contained HTML page (figures are PNGs in the same folder): the title, the
    data banner, the open sections (the answer), then every collapsed section as a ``<details>`` element."""
    parts = [f"<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
             f"<style>{_CSS}</style></head><body>", f"<h1>{html.escape(title)}</h1>",
             f"<div class='banner' id='data'>{html.escape(banner)}</div>"]
    first = True
    for i, s in enumerate(sections):
        if s.collapsed:
            parts.append(f"<details><summary><h2 id='s{i}'>{html.escape(s.title)}</h2></summary>")
            parts += _html_blocks(s, False)
            parts.append("</details>")
        else:
            parts.append(f"<section class='{'first' if first else 'open'}'><h2 id='s{i}'>{html.escape(s.title)}</h2>")
            parts += _html_blocks(s, first)
            parts.append("</section>")
            first = False
    parts.append("</body></html>")
    return "\n".join(parts)
