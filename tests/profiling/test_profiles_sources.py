"""Every source the code, the profiles and the docs cite is in the repository (docs/sources.md and its anchors)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SOURCES = ROOT / "docs" / "sources.md"
# Where citations live: the package, the profiles, the docs, examples, benchmarks and test fixtures.
SCANNED = ("neuroposter", "hardware_profiles", "docs", "examples", "benchmarks", "tests/fixtures", "README.md")
SUFFIXES = {".py", ".yaml", ".yml", ".md"}
# Research notes that live outside the repository: citing them leaves the reader with nothing to open.
OUTSIDE = re.compile(r"nir_lava\.md|energy_figures\.md|chip_toolchains\.md|poster_dataset\.md|style_anchors\.md|"
                     r"shared/reference")
# A citation of an in-repo Markdown file: docs/<x>.md or hardware_profiles/<x>.md, optionally with an anchor
# (another repository's file is written owner/repo:path, which this does not match).
CITED = re.compile(r"(?<![\w:/.-])((?:docs|hardware_profiles)/[\w./-]+\.md)(#[\w-]+)?")


def _files() -> list[Path]:
    out: list[Path] = []
    for rel in SCANNED:
        p = ROOT / rel
        if p.is_file():
            out.append(p)
        elif p.is_dir():
            out += [f for f in sorted(p.rglob("*")) if f.is_file() and f.suffix in SUFFIXES]
    return out


def _anchors(md: Path) -> set[str]:
    text = md.read_text(encoding="utf-8")
    explicit = set(re.findall(r'<a id="([\w-]+)"></a>', text))
    headings = {re.sub(r"[^\w\- ]", "", h.strip().lower()).replace(" ", "-")
                for h in re.findall(r"^#+ (.+)$", text, flags=re.M)}
    return explicit | headings


@pytest.fixture(scope="module")
def files() -> list[Path]:
    if not SOURCES.is_file():
        pytest.skip("no source checkout")
    return _files()


def test_nothing_cites_notes_outside_the_repository(files):
    bad = [f"{f.relative_to(ROOT)}:{i}: {line.strip()}" for f in files
           for i, line in enumerate(f.read_text(encoding="utf-8").splitlines(), 1) if OUTSIDE.search(line)]
    assert not bad, "cite docs/sources.md instead:\n" + "\n".join(bad)


def test_every_cited_markdown_file_and_anchor_exists(files):
    cited = 0
    bad = []
    for f in files:
        for path, anchor in CITED.findall(f.read_text(encoding="utf-8")):
            cited += 1
            target = ROOT / path
            if not target.is_file():
                bad.append(f"{f.relative_to(ROOT)}: {path} does not exist")
            elif anchor and anchor[1:] not in _anchors(target):
                bad.append(f"{f.relative_to(ROOT)}: {path}{anchor}: no such anchor")
    assert cited > 20            # the profiles and the code do cite it
    assert not bad, "\n".join(bad)


def test_every_neuromorphic_profile_cites_docs_sources():
    import yaml

    for f in sorted((ROOT / "hardware_profiles").glob("*.yaml")):
        raw = yaml.safe_load(f.read_text(encoding="utf-8"))
        if raw.get("kind") == "neuromorphic" and raw["name"] not in ("odin", "akida_akd1000"):
            assert "docs/sources.md#" in f.read_text(encoding="utf-8"), f.name
