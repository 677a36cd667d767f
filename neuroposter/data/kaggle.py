"""Reading the Kaggle ``MovieGenre.csv`` and importing it (with its posters) as a dataset.

The file's traps (see ``docs/sources.md#moviegenre``) are handled here once: its encoding
(latin-1 in the original; UTF-8 with or without a byte-order mark and UTF-16/32 are detected and
recorded), an optional leading unnamed index column, exact duplicate rows, empty ``Genre`` and
``Poster`` cells, titles without a year, NaN scores, non-integer ids, and missing, truncated or
escaping poster files, dangling symlinks. Every row is either kept or skipped with a counted reason,
and every kept poster's SHA-256 is recorded in ``items.csv`` (see
:func:`neuroposter.data.dataset.verify_poster`).
"""

from __future__ import annotations

import codecs
import hashlib
import io
import logging
import os
import re
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO, Callable, Sequence

import numpy as np

from neuroposter._io import atomic_write_json, safe_join, sha256_bytes, sha256_json
from neuroposter._progress import progress
from neuroposter.data.policy import ImagePolicy
from neuroposter.data.split import SPLITS, check_fractions, stratified_split
from neuroposter.errors import DataError
from neuroposter.artifact import check_destination, write_artifact
from neuroposter.manifest import write_manifest

__all__ = [
    "CSV_COLUMNS",
    "SKIP_REASONS",
    "decode_csv_bytes",
    "ImportResult",
    "read_kaggle_csv",
    "parse_id",
    "parse_title",
    "parse_genres",
    "check_poster",
    "import_kaggle",
]

log = logging.getLogger(__name__)

CSV_COLUMNS: tuple[str, ...] = ("imdbId", "Imdb Link", "Title", "IMDB Score", "Genre", "Poster")
SKIP_REASONS: tuple[str, ...] = (
    "bad_id",
    "duplicate_id",
    "missing_genre",
    "missing_poster_url",
    "poster_path_escape",
    "poster_file_missing",
    "poster_dangling_symlink",
    "poster_unreadable",
    "poster_corrupt",
    "no_kept_genre",
)
_N_EXAMPLES = 5
_TITLE_YEAR = re.compile(r"^(.*?)\s*\((\d{4})\)\s*$")
_ID = re.compile(r"^\d{1,9}$")
# Byte-order marks, longest first (the UTF-32 LE mark starts with the UTF-16 LE one).
_BOMS: tuple[tuple[bytes, str], ...] = (
    (codecs.BOM_UTF32_LE, "utf-32-le"), (codecs.BOM_UTF32_BE, "utf-32-be"), (codecs.BOM_UTF8, "utf-8"),
    (codecs.BOM_UTF16_LE, "utf-16-le"), (codecs.BOM_UTF16_BE, "utf-16-be"),
)
_MAX_POSTER_BYTES = 256 * 1024 * 1024


def decode_csv_bytes(data: bytes, path: str | os.PathLike[str] = "CSV") -> tuple[str, dict[str, Any]]:
    """Decodes a CSV file's bytes, detecting the encoding.

    A byte-order mark decides (UTF-8, UTF-16 LE/BE, UTF-32 LE/BE; the mark is stripped). Without
    one: UTF-16/32 is recognised by its ``imdbId`` header, valid UTF-8 is UTF-8, and anything else
    is latin-1 (the original Kaggle file's encoding, which decodes every byte).

    Returns:
        ``(text, {"encoding": codec name, "bom": bool})``.

    Raises:
        DataError: a byte-order mark whose encoding the bytes do not follow, or binary data; the
            message names the detected encoding and how to convert the file.
    """
    for bom, enc in _BOMS:
        if data.startswith(bom):
            try:
                return data[len(bom):].decode(enc), {"encoding": enc, "bom": True}
            except UnicodeDecodeError as exc:
                raise DataError(f"{path}: starts with a {enc.upper()} byte-order mark but is not valid {enc.upper()} "
                                f"(byte {exc.start + len(bom)}); re-save it as UTF-8, e.g. "
                                f"`iconv -f {enc.upper()} -t UTF-8`") from None
    if b"\x00" in data[:4096]:
        for enc in ("utf-16-le", "utf-16-be", "utf-32-le", "utf-32-be"):
            try:
                text = data.decode(enc)
            except UnicodeDecodeError:
                continue
            if "imdbId" in text[:200]:
                return text, {"encoding": enc, "bom": False}
        raise DataError(f"{path}: binary data (NUL bytes), not a CSV text file in UTF-8, UTF-16 or latin-1")
    try:
        return data.decode("utf-8"), {"encoding": "utf-8", "bom": False}
    except UnicodeDecodeError:
        return data.decode("latin-1"), {"encoding": "latin-1", "bom": False}


def read_kaggle_csv(path: str | os.PathLike[str]):  # -> pandas.DataFrame
    """Reads a Kaggle-format ``MovieGenre.csv`` with every cell as a string.

    The encoding is detected (:func:`decode_csv_bytes`: latin-1 as in the original, UTF-8 with or
    without a byte-order mark, UTF-16/32) and kept in ``df.attrs["encoding"]``. A leading unnamed
    index column (as in some redistributed copies) is dropped; the other columns must be exactly
    :data:`CSV_COLUMNS`. Empty cells stay empty strings (nothing is turned into NaN), so the
    caller decides what "missing" means.

    Raises:
        DataError: the file is missing, empty, not CSV, or has another header.
    """
    df, info, _ = _read_csv(Path(path))
    df.attrs["encoding"] = info
    return df


def _read_csv(path: Path):  # -> (pandas.DataFrame, encoding info, sha256 of the bytes)
    import pandas as pd

    if path.is_dir() or not path.exists():
        what = "is a directory, not a CSV file" if path.is_dir() else "CSV file not found"
        raise DataError(f"{path}: {what} (pass --csv FILE, or run `neuroposter data synth` for the built-in set)")
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise DataError(f"{path}: cannot read the CSV file ({exc.strerror or type(exc).__name__})") from None
    text, info = decode_csv_bytes(data, path)
    try:
        df = pd.read_csv(io.StringIO(text), dtype=str, keep_default_na=False, na_filter=False)
    except pd.errors.EmptyDataError:
        raise DataError(f"{path}: the CSV file is empty") from None
    except (pd.errors.ParserError, UnicodeDecodeError, ValueError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise DataError(f"{path}: not a readable CSV ({first})") from None
    cols = [str(c).strip().lstrip("\ufeff") for c in df.columns]
    if cols and (cols[0] == "" or cols[0].startswith("Unnamed: 0")) and tuple(cols[1:]) == CSV_COLUMNS:
        df = df.iloc[:, 1:]
        cols = cols[1:]
    if tuple(cols) != CSV_COLUMNS:
        missing = [c for c in CSV_COLUMNS if c not in cols]
        what = f"missing columns {missing}" if missing else f"columns {cols}"
        raise DataError(f"{path}: not a Kaggle MovieGenre.csv header ({what}; expected {','.join(CSV_COLUMNS)}; "
                        f"read as {info['encoding']}{' with a byte-order mark' if info['bom'] else ''})")
    df.columns = list(CSV_COLUMNS)
    return df.reset_index(drop=True), info, sha256_bytes(data)


def parse_id(cell: str) -> int | None:
    """The integer ``imdbId`` of a cell (digits only, no ``tt``), or None when it is not one."""
    cell = cell.strip()
    return int(cell) if _ID.match(cell) else None


def parse_title(title: str) -> tuple[str, int | None]:
    """Splits ``"Name (YYYY)"`` into ``("Name", YYYY)``; a title without a year gives ``None``."""
    title = title.strip()
    m = _TITLE_YEAR.match(title)
    if m and 1850 <= int(m.group(2)) <= 2100:
        return m.group(1), int(m.group(2))
    return title, None


def parse_genres(cell: str) -> list[str]:
    """Splits a ``Genre`` cell on ``|`` (whitespace stripped, empties and repeats dropped)."""
    out: list[str] = []
    for g in cell.split("|"):
        g = g.strip()
        if g and g not in out:
            out.append(g)
    return out


def check_poster(path: str | os.PathLike[str] | BinaryIO) -> tuple[bool, tuple[int, int] | None, str]:
    """Verifies a poster image fully: ``Image.verify()`` then a complete decode.

    Streams one image at a time (nothing kept in memory beyond that image).

    Args:
        path: a file path or a seekable binary file object.

    Returns:
        ``(ok, (W, H) or None, problem)``.
    """
    from PIL import Image

    try:
        with Image.open(path) as im:
            im.verify()
        with Image.open(path) as im:
            im.load()
            return True, im.size, ""
    except Exception as exc:  # noqa: BLE001 - PIL raises many types for broken files
        return False, None, f"{type(exc).__name__}: {exc}"


def _check_and_hash(path: Path) -> tuple[str, tuple[int, int] | None, str, str | None]:
    """Reads a poster once, verifies the image from those bytes and hashes them.

    Returns:
        ``(skip reason or "", (W, H) or None, problem, sha256 hex or None)``.
    """
    try:
        size = path.stat().st_size
        if size > _MAX_POSTER_BYTES:
            return "poster_corrupt", None, f"{size} bytes, more than a poster can be", None
        data = path.read_bytes()
    except OSError as exc:
        return "poster_unreadable", None, f"{type(exc).__name__}: {exc}", None
    ok, wh, problem = check_poster(io.BytesIO(data))
    if not ok:
        return "poster_corrupt", None, problem, None
    return "", wh, "", hashlib.sha256(data).hexdigest()


@dataclass
class ImportResult:
    """What :func:`import_kaggle` produced.

    Attributes:
        path: the dataset folder.
        key: the dataset's manifest key.
        report: the content of ``data_report.json``.
    """

    path: Path
    key: str
    report: dict[str, Any] = field(repr=False)


@dataclass
class _Skips:
    counts: Counter = field(default_factory=Counter)
    examples: dict[str, list[Any]] = field(default_factory=dict)

    def add(self, reason: str, ident: Any) -> None:
        self.counts[reason] += 1
        ex = self.examples.setdefault(reason, [])
        if len(ex) < _N_EXAMPLES:
            ex.append(ident)

    def as_dict(self) -> dict[str, Any]:
        return {r: {"count": int(self.counts[r]), "examples": self.examples.get(r, [])}
                for r in SKIP_REASONS if self.counts[r]}


def _entry_size(entry: os.DirEntry) -> int:
    try:
        return entry.stat().st_size
    except OSError:  # a dangling or looping symlink: listed, with no size
        return -1


def _poster_listing_hash(posters_dir: Path) -> tuple[str, int]:
    try:
        entries = sorted((e.name, _entry_size(e)) for e in os.scandir(posters_dir)
                         if e.name.lower().endswith(".jpg") and not e.name.startswith("."))
    except OSError as exc:
        raise DataError(f"{posters_dir}: cannot list the posters folder ({exc.strerror or type(exc).__name__})") from None
    return sha256_json(entries), len(entries)


def _select_genres(counts: Counter, top_genres: int | None, min_count: int) -> list[str]:
    ranked = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))
    kept = [g for g, c in ranked if c >= min_count]
    return kept[:top_genres] if top_genres is not None else kept


def _check_options(top_genres: int | None, min_count: int, split: Sequence[float], seed: int,
                   workers: int | None) -> tuple[float, float, float]:
    if top_genres is not None and (not isinstance(top_genres, int) or top_genres < 1):
        raise ValueError(f"top_genres must be a positive integer, got {top_genres!r}")
    if not isinstance(min_count, int) or min_count < 1:
        raise ValueError(f"min_count must be a positive integer, got {min_count!r}")
    if not isinstance(seed, int) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
    if workers is not None and (not isinstance(workers, int) or workers < 1):
        raise ValueError(f"workers must be a positive integer, got {workers!r}")
    return check_fractions(split)


def import_kaggle(
    csv_path: str | os.PathLike[str],
    posters_dir: str | os.PathLike[str],
    out_dir: str | os.PathLike[str],
    *,
    top_genres: int | None = None,
    min_count: int = 1,
    split: Sequence[float] = (0.7, 0.15, 0.15),
    seed: int = 0,
    image_policy: ImagePolicy | None = None,
    workers: int | None = None,
    force: bool = False,
    before_commit: Callable[[Path], None] | None = None,
) -> ImportResult:
    """Imports a Kaggle-format CSV and its posters as a dataset folder (contract section 2).

    Every row is kept or skipped with a counted reason (:data:`SKIP_REASONS`): ``bad_id``,
    ``duplicate_id`` (the first row of an id wins), ``missing_genre``, ``missing_poster_url``,
    ``poster_path_escape``, ``poster_file_missing``, ``poster_dangling_symlink`` (a symlink to nothing,
    or a loop), ``poster_unreadable`` (e.g. no read permission), ``poster_corrupt`` and, after the genre
    vocabulary is cut to genres with at least ``min_count`` usable rows (then the
    ``top_genres`` most frequent), ``no_kept_genre``. The kept rows get an iterative-stratified
    split that gives every non-zero fraction at least one poster. Each kept poster's SHA-256 goes
    into the ``sha256`` column of ``items.csv`` (and into the dataset key); the CSV's detected
    encoding into ``data_report.json`` (``csv_encoding``, ``csv_bom``). The folder is built under a
    temporary name and swapped in only when complete, so a failure leaves any previous dataset at
    ``out_dir`` intact.

    Args:
        csv_path: the ``MovieGenre.csv`` file (latin-1, UTF-8 or UTF-16/32; detected).
        posters_dir: the folder of ``<imdbId>.jpg`` posters.
        out_dir: the dataset folder to (re)create, e.g. ``WORKSPACE/datasets/default``.
        top_genres: keep only the N most frequent genres (after ``min_count``); None keeps all.
        min_count: drop genres with fewer usable rows than this.
        split: ``(train, val, test)`` fractions summing to 1.
        seed: split seed.
        image_policy: how images are resized later (recorded; default ``native``).
        workers: threads verifying posters (default ``min(8, CPUs)``).
        force: replace an existing dataset at ``out_dir`` (anything else there is never replaced).
        before_commit: called with the temporary folder before it is swapped in (e.g. to write
            ``resolved_config.yaml``).

    Returns:
        The dataset path, key and report.

    Raises:
        DataError: unreadable CSV, missing posters folder, nothing left after filtering, or fewer
            usable posters than non-empty splits.
        ValueError: bad options.
    """
    t0 = time.perf_counter()
    fractions = _check_options(top_genres, min_count, split, seed, workers)
    policy = image_policy or ImagePolicy()
    csv_path, posters_dir, out_dir = Path(csv_path), Path(posters_dir), Path(out_dir)
    protect = [csv_path, posters_dir]
    check_destination(out_dir, "dataset", force=force, protect=protect)   # refuse before the slow part
    df, csv_info, csv_sha = _read_csv(csv_path)
    if not posters_dir.is_dir():
        raise DataError(f"{posters_dir}: posters folder not found (run `neuroposter data download` "
                        "or pass --posters)")

    skips = _Skips()
    seen: dict[int, tuple[str, ...]] = {}
    n_dup_differ = 0
    cand: list[tuple[int, str, list[str], Path]] = []  # (id, title cell, genres, file)
    for row in df.itertuples(index=False, name=None):
        raw_id, _link, title, _score, genre, poster = row
        ident = parse_id(raw_id)
        if ident is None:
            skips.add("bad_id", raw_id.strip())
            continue
        if ident in seen:
            skips.add("duplicate_id", ident)
            n_dup_differ += seen[ident] != row
            continue
        seen[ident] = row
        genres = parse_genres(genre)
        if not genres:
            skips.add("missing_genre", ident)
            continue
        if not poster.strip():
            skips.add("missing_poster_url", ident)
            continue
        try:
            file = safe_join(posters_dir, f"{ident}.jpg")
        except DataError:
            skips.add("poster_path_escape", ident)
            continue
        except (RuntimeError, OSError):  # a symlink loop cannot be resolved
            skips.add("poster_dangling_symlink", ident)
            continue
        if not file.is_file():
            dangling = (posters_dir / f"{ident}.jpg").is_symlink()
            skips.add("poster_dangling_symlink" if dangling else "poster_file_missing", ident)
            continue
        cand.append((ident, title, genres, file))

    n_workers = workers or max(1, min(8, os.cpu_count() or 1))
    sizes: Counter = Counter()
    usable: list[tuple[int, str, list[str], Path]] = []
    hashes: dict[int, str] = {}
    with ThreadPoolExecutor(max_workers=n_workers) as pool:
        results = pool.map(_check_and_hash, [c[3] for c in cand])
        for item, (reason, size, problem, digest) in zip(cand, progress(results, desc="verify posters",
                                                                        total=len(cand), unit="poster")):
            if not reason:
                usable.append(item)
                hashes[item[0]] = str(digest)
                sizes[f"{size[0]}x{size[1]}"] += 1
            else:
                skips.add(reason, item[0])
                log.debug("poster %s unusable: %s", item[3], problem)

    all_counts: Counter = Counter(g for item in usable for g in item[2])
    vocab = _select_genres(all_counts, top_genres, min_count)
    col = {g: j for j, g in enumerate(vocab)}
    kept: list[tuple[int, str, list[str], Path]] = []
    for ident, title, genres, file in usable:
        gk = [g for g in genres if g in col]
        if gk:
            kept.append((ident, title, gk, file))
        else:
            skips.add("no_kept_genre", ident)

    if not kept:
        reasons = ", ".join(f"{r} {c}" for r, c in skips.counts.most_common()) or "no data rows"
        raise DataError(f"{csv_path}: no usable rows left out of {len(df)} ({reasons})")

    labels = np.zeros((len(kept), len(vocab)), dtype=np.uint8)
    for i, (_, _, gk, _) in enumerate(kept):
        labels[i, [col[g] for g in gk]] = 1
    splits = stratified_split(labels, fractions, seed)

    import pandas as pd

    titles_years = [parse_title(t) for _, t, _, _ in kept]
    items = pd.DataFrame({
        "index": np.arange(len(kept)),
        "imdbId": [k[0] for k in kept],
        "title": [t for t, _ in titles_years],
        "year": pd.array([y for _, y in titles_years], dtype="Int64"),
        "genres": ["|".join(k[2]) for k in kept],
        "split": splits,
        "poster": [f"{k[0]}.jpg" for k in kept],
        "sha256": [hashes[k[0]] for k in kept],
    })

    listing_hash, n_files = _poster_listing_hash(posters_dir)
    content_hash = sha256_json([[k[0], hashes[k[0]]] for k in kept])
    config = {"top_genres": top_genres, "min_count": min_count, "split": list(fractions), "seed": seed,
              "image_policy": policy.to_dict()}
    key = sha256_json({"csv": csv_sha, "options": config, "posters": listing_hash, "content": content_hash})
    report = _build_report(len(df), skips, n_dup_differ, all_counts, vocab, labels, splits, sizes, policy)
    report["csv_encoding"] = csv_info["encoding"]
    report["csv_bom"] = bool(csv_info["bom"])
    report["seconds"] = round(time.perf_counter() - t0, 3)

    with write_artifact(out_dir, "dataset", force=force, protect=protect) as tmp:
        items.to_csv(tmp / "items.csv", index=False, encoding="utf-8", lineterminator="\n")
        np.save(tmp / "labels.npy", labels)
        atomic_write_json(tmp / "genres.json", vocab)
        atomic_write_json(tmp / "data_report.json", report)
        write_manifest(
            tmp, "dataset",
            inputs={"csv": {"path": str(csv_path.resolve()), "sha256": csv_sha},
                    "posters": {"path": str(posters_dir.resolve()), "n_files": n_files,
                                "listing_sha256": listing_hash, "content_sha256": content_hash}},
            config=config, key=key,
            extra={"n_items": len(kept), "genres": vocab},
        )
        if before_commit is not None:
            before_commit(tmp)
    log.debug("imported %d of %d rows into %s (%d genres)", len(kept), len(df), out_dir, len(vocab))
    return ImportResult(path=out_dir, key=key, report=report)


def _build_report(n_rows: int, skips: _Skips, n_dup_differ: int, all_counts: Counter, vocab: list[str],
                  labels: np.ndarray, splits: np.ndarray, sizes: Counter,
                  policy: ImagePolicy) -> dict[str, Any]:
    n = labels.shape[0]
    per_row = labels.sum(1)
    counts = labels.sum(0)
    split_sizes = {s: int((splits == s).sum()) for s in SPLITS}
    split_prev = {s: {g: round(float(labels[splits == s, j].mean()), 4) if split_sizes[s] else None
                      for j, g in enumerate(vocab)} for s in SPLITS}
    warnings = []
    for j, g in enumerate(vocab):
        missing = [s for s in SPLITS if split_sizes[s] and labels[splits == s, j].sum() == 0]
        if missing:
            warnings.append(f"genre {g!r} ({int(counts[j])} items) has no example in {'/'.join(missing)}")
    return {
        "rows_read": n_rows,
        "rows_kept": n,
        "rows_skipped": int(sum(skips.counts.values())),
        "skipped": skips.as_dict(),
        "duplicate_rows_differing_from_first": int(n_dup_differ),
        "genres": vocab,
        "genres_dropped": {g: int(c) for g, c in sorted(all_counts.items(), key=lambda kv: (-kv[1], kv[0]))
                           if g not in vocab},
        "genre_counts": {g: int(c) for g, c in zip(vocab, counts)},
        "genre_prevalence": {g: round(float(c) / n, 4) for g, c in zip(vocab, counts)},
        "label_cardinality": round(float(per_row.mean()), 4),
        "label_count_histogram": {str(k): int(v) for k, v in sorted(Counter(per_row.tolist()).items())},
        "split_sizes": split_sizes,
        "split_genre_prevalence": split_prev,
        "poster_sizes": dict(sizes.most_common(10)),
        "image_policy": policy.to_dict(),
        "warnings": warnings,
    }
