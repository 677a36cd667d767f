"""A deterministic synthetic movie-poster set in the exact Kaggle on-disk format.

``generate_synth`` writes ``MovieGenre.csv`` (latin-1, the six Kaggle columns, Amazon-style poster
URLs) and ``posters/<imdbId>.jpg`` (182x268 by default), so ``neuroposter data import`` reads it
like the real data. Same seed, same bytes.

Labels: 8 real genre names, 1-3 per poster (mean about 2), drawn with realistic co-occurrence
(Crime+Thriller, Action+Adventure, Comedy+Romance, Horror+Thriller, ...) and prevalence ordered
like the real data (Drama about 50%, Comedy about 32%, the others 17-22%).

Images: each genre nudges palette (hue, saturation, brightness), background layout, big shapes,
grain and title placement; the cues overlap between genres (Crime and Thriller are both dark,
Comedy and Romance both warm and bright), every poster gets random jitter and distractor
shapes, and about 8% of posters are drawn from a perturbed genre set (label noise). The cues are
coarse on purpose (colour statistics, brightness, large shapes, textures), so they survive the
randomly initialised DenseNet-169 used offline; the task is learnable but far from trivial.
"""

from __future__ import annotations

import colorsys
import csv
import io
import logging
import os
import time
import unicodedata
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
from PIL import Image, ImageDraw, ImageFilter, ImageFont

from neuroposter._progress import progress
from neuroposter.artifact import check_destination, write_artifact
from neuroposter.manifest import write_manifest

__all__ = ["SYNTH_GENRES", "SYNTH_SIZES", "SynthResult", "synth_labels", "render_poster", "generate_synth"]

log = logging.getLogger(__name__)

SYNTH_GENRES: tuple[str, ...] = ("Drama", "Comedy", "Romance", "Action", "Crime", "Thriller", "Horror",
                                 "Adventure")
SYNTH_SIZES: dict[str, int] = {"tiny": 48, "default": 800}
SYNTH_KIND = "raw"
JPEG_QUALITY = 90
LABEL_NOISE = 0.08

# Genre sampler: number of genres 1/2/3 with these probabilities, then genres drawn one by one
# with weight base[g] * prod(affinity[chosen, g]). The base weights were calibrated (fixed-point
# iteration on 20k samples, 30 rounds) so that the prevalences come out at about
# Drama .50, Comedy .32, Romance .22, Action .21, Crime .20, Thriller .19, Horror .18, Adventure .18.
_K_PROBS = np.array([0.28, 0.42, 0.30])
_BASE = np.array([0.3332, 0.1763, 0.0711, 0.0858, 0.0735, 0.0645, 0.1190, 0.0767])
# Pair lifts that come out (P(a,b) / P(a)P(b)): Horror+Thriller 2.3, Action+Adventure 1.8,
# Comedy+Romance 1.7, Crime+Thriller 1.6; Comedy+Thriller 0.1, Horror+Romance 0.1.
_PAIR_AFFINITY = {
    ("Crime", "Thriller"): 6.0, ("Crime", "Drama"): 2.0, ("Action", "Adventure"): 6.0,
    ("Action", "Crime"): 3.0, ("Action", "Thriller"): 3.0, ("Comedy", "Romance"): 4.0,
    ("Drama", "Romance"): 2.5, ("Horror", "Thriller"): 6.0, ("Comedy", "Horror"): 0.3,
    ("Horror", "Romance"): 0.2, ("Comedy", "Thriller"): 0.3, ("Comedy", "Crime"): 0.5,
    ("Adventure", "Comedy"): 2.0, ("Drama", "Horror"): 0.4, ("Drama", "Adventure"): 0.6,
    ("Action", "Romance"): 0.5,
}


def _affinity() -> np.ndarray:
    aff = np.ones((len(SYNTH_GENRES), len(SYNTH_GENRES)))
    for (a, b), v in _PAIR_AFFINITY.items():
        i, j = SYNTH_GENRES.index(a), SYNTH_GENRES.index(b)
        aff[i, j] = aff[j, i] = v
    return aff


_AFF = _affinity()


@dataclass(frozen=True)
class _Style:
    """How one genre pushes a poster's look (mixed over the poster's genres)."""

    hue: float          # base hue in [0, 1)
    sat: float          # saturation in [0, 1]
    val: float          # brightness in [0, 1]
    accent: float       # hue offset of the second gradient colour
    grain: float        # film grain amplitude (0-255 scale)
    vignette: float     # darkening of the corners, 0..1
    title_top: float    # probability the title block sits at the top


_STYLES: dict[str, _Style] = {
    "Drama": _Style(hue=0.58, sat=0.25, val=0.55, accent=0.05, grain=6, vignette=0.3, title_top=0.5),
    "Comedy": _Style(hue=0.13, sat=0.80, val=0.92, accent=0.08, grain=2, vignette=0.0, title_top=0.8),
    "Romance": _Style(hue=0.94, sat=0.50, val=0.85, accent=-0.06, grain=3, vignette=0.1, title_top=0.5),
    "Action": _Style(hue=0.06, sat=0.85, val=0.70, accent=0.50, grain=8, vignette=0.3, title_top=0.3),
    "Crime": _Style(hue=0.60, sat=0.30, val=0.30, accent=0.02, grain=10, vignette=0.5, title_top=0.4),
    "Thriller": _Style(hue=0.50, sat=0.45, val=0.28, accent=0.10, grain=12, vignette=0.6, title_top=0.2),
    "Horror": _Style(hue=0.00, sat=0.70, val=0.18, accent=0.30, grain=16, vignette=0.8, title_top=0.2),
    "Adventure": _Style(hue=0.30, sat=0.60, val=0.72, accent=-0.20, grain=4, vignette=0.1, title_top=0.6),
}

_WORDS = {
    "Drama": ["Silence", "Letters", "Winter", "Mother", "River", "Years", "Promise", "Quiet"],
    "Comedy": ["Crazy", "Party", "Wedding", "Buddies", "Holiday", "Trouble", "Fun", "Café"],
    "Romance": ["Love", "Heart", "Kiss", "Paris", "Forever", "Amélie", "Summer", "Dance"],
    "Action": ["Strike", "Force", "Fury", "Impact", "Target", "Rampage", "Steel", "Fire"],
    "Crime": ["Heist", "Mob", "Dirty", "Money", "Street", "Cartel", "Justice", "Señor"],
    "Thriller": ["Shadow", "Edge", "Witness", "Trap", "Panic", "Secret", "Hunt", "Signal"],
    "Horror": ["Blood", "Curse", "Night", "Grave", "Haunting", "Evil", "Scream", "Noël"],
    "Adventure": ["Quest", "Island", "Journey", "Lost", "Kingdom", "Treasure", "Jungle", "Voyage"],
}
_ALNUM = np.array(list("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"))


@dataclass
class SynthResult:
    """What :func:`generate_synth` wrote.

    Attributes:
        out_dir: the raw folder (``MovieGenre.csv`` + ``posters/``).
        csv_path: the CSV file.
        posters_dir: the posters folder.
        n: number of posters.
        prevalence: genre -> share of posters carrying it.
        seconds: wall time.
    """

    out_dir: Path
    csv_path: Path
    posters_dir: Path
    n: int
    prevalence: dict[str, float]
    seconds: float


def synth_labels(n: int, rng: np.random.Generator) -> np.ndarray:
    """Draws ``n`` genre sets as a ``bool [n, 8]`` matrix over :data:`SYNTH_GENRES`."""
    g = len(SYNTH_GENRES)
    out = np.zeros((n, g), dtype=bool)
    ks = rng.choice(3, size=n, p=_K_PROBS) + 1
    for i in range(n):
        w = _BASE.copy()
        for _ in range(ks[i]):
            p = w * ~out[i]
            j = rng.choice(g, p=p / p.sum())
            out[i, j] = True
            w = w * _AFF[j]
    return out


def _hsv(h: float, s: float, v: float) -> np.ndarray:
    r, g, b = colorsys.hsv_to_rgb(h % 1.0, float(np.clip(s, 0, 1)), float(np.clip(v, 0, 1)))
    return np.array([r, g, b]) * 255.0


def _mix_style(genres: list[str], rng: np.random.Generator) -> dict[str, float]:
    """The weighted mix of the genres' styles plus per-poster jitter."""
    w = rng.dirichlet(np.full(len(genres), 2.0)) if len(genres) > 1 else np.ones(1)
    styles = [_STYLES[g] for g in genres]
    ang = np.array([s.hue * 2 * np.pi for s in styles])
    hue = (np.arctan2((w * np.sin(ang)).sum(), (w * np.cos(ang)).sum()) / (2 * np.pi)) % 1.0
    mix = {f: float(sum(wi * getattr(s, f) for wi, s in zip(w, styles)))
           for f in ("sat", "val", "accent", "grain", "vignette", "title_top")}
    mix["hue"] = float(hue + rng.normal(0, 0.07))
    mix["sat"] = float(np.clip(mix["sat"] + rng.normal(0, 0.15), 0.05, 1.0))
    mix["val"] = float(np.clip(mix["val"] + rng.normal(0, 0.15), 0.08, 1.0))
    mix["accent"] += float(rng.normal(0, 0.1))
    return mix


# ---------------------------------------------------------------------------------------------
# Motifs: large shapes, one family per genre. Each draws on an RGBA layer in relative coordinates.

Motif = Callable[[ImageDraw.ImageDraw, int, int, np.random.Generator, dict], None]


def _rgba(c: np.ndarray, a: int) -> tuple[int, int, int, int]:
    c = np.clip(c, 0, 255).astype(int)
    return int(c[0]), int(c[1]), int(c[2]), int(a)


def _figure(d: ImageDraw.ImageDraw, cx: float, base: float, scale: float, color: tuple) -> None:
    """A person silhouette: head, shoulders and body, standing on ``base``."""
    head = 0.16 * scale
    d.ellipse([cx - head / 2, base - scale, cx + head / 2, base - scale + head], fill=color)
    d.rounded_rectangle([cx - 0.22 * scale, base - scale + head * 1.05, cx + 0.22 * scale, base],
                        radius=int(0.1 * scale), fill=color)


def _m_drama(d, w, h, rng, st):
    shade = _rgba(_hsv(st["hue"], st["sat"] * 0.5, st["val"] * 0.35), 235)
    _figure(d, w * rng.uniform(0.35, 0.65), h * rng.uniform(0.85, 1.0), h * rng.uniform(0.55, 0.75), shade)


def _m_comedy(d, w, h, rng, st):
    for _ in range(int(rng.integers(12, 35))):
        r = w * rng.uniform(0.03, 0.09)
        x, y = rng.uniform(0, w), rng.uniform(0, h)
        col = _rgba(_hsv(rng.uniform(0, 1), 0.8, 1.0), 220)
        d.ellipse([x - r, y - r, x + r, y + r], fill=col)


def _m_romance(d, w, h, rng, st):
    for _ in range(int(rng.integers(1, 3))):
        r = w * rng.uniform(0.15, 0.25)
        x, y = rng.uniform(0.3, 0.7) * w, rng.uniform(0.3, 0.6) * h
        col = _rgba(_hsv(rng.uniform(0.92, 1.02), 0.6, 0.95), 170)
        d.ellipse([x - r, y - r, x + 0.1 * r, y + 0.6 * r], fill=col)
        d.ellipse([x - 0.1 * r, y - r, x + r, y + 0.6 * r], fill=col)
        d.polygon([(x - 0.97 * r, y + 0.1 * r), (x + 0.97 * r, y + 0.1 * r), (x, y + 1.4 * r)], fill=col)
    dark = _rgba(_hsv(st["hue"], 0.4, 0.25), 200)
    _figure(d, w * 0.4, h, h * 0.45, dark)
    _figure(d, w * 0.6, h, h * 0.42, dark)


def _m_action(d, w, h, rng, st):
    cx, cy = rng.uniform(0.2, 0.8) * w, rng.uniform(0.3, 0.7) * h
    n = int(rng.integers(9, 16))
    r_out, r_in = w * rng.uniform(0.35, 0.6), w * rng.uniform(0.12, 0.2)
    ang = np.linspace(0, 2 * np.pi, 2 * n, endpoint=False) + rng.uniform(0, np.pi)
    rad = np.where(np.arange(2 * n) % 2 == 0, r_out, r_in)
    d.polygon(list(zip(cx + rad * np.cos(ang), cy + rad * np.sin(ang))), fill=_rgba(_hsv(0.1, 0.9, 1.0), 210))
    for _ in range(int(rng.integers(2, 5))):
        x0 = rng.uniform(-0.5, 1.0) * w
        thick = w * rng.uniform(0.04, 0.1)
        d.polygon([(x0, h), (x0 + thick, h), (x0 + thick + 0.8 * h, 0), (x0 + 0.8 * h, 0)],
                  fill=_rgba(_hsv(0.58, 0.7, 0.6), 150))


def _m_crime(d, w, h, rng, st):
    x = 0.0
    while x < w:
        bw = w * rng.uniform(0.08, 0.2)
        top = h * rng.uniform(0.35, 0.7)
        d.rectangle([x, top, x + bw, h], fill=_rgba(_hsv(0.6, 0.2, 0.12), 235))
        for _ in range(int(rng.integers(0, 4))):
            wx, wy = x + rng.uniform(0.2, 0.7) * bw, rng.uniform(top, h - 6)
            d.rectangle([wx, wy, wx + bw * 0.2, wy + bw * 0.2], fill=_rgba(_hsv(0.14, 0.7, 0.95), 230))
        x += bw + w * rng.uniform(0.0, 0.05)


def _m_thriller(d, w, h, rng, st):
    cx = rng.uniform(0.3, 0.7) * w
    d.polygon([(cx - 0.05 * w, 0), (cx + 0.05 * w, 0), (cx + 0.45 * w, h), (cx - 0.45 * w, h)],
              fill=_rgba(_hsv(st["hue"], 0.15, 0.95), 90))
    _figure(d, cx, h * 0.95, h * 0.28, _rgba(np.zeros(3), 240))


def _m_horror(d, w, h, rng, st):
    n = int(rng.integers(6, 12))
    xs = np.linspace(0, w, n + 1)
    for a, b in zip(xs[:-1], xs[1:]):
        d.polygon([(a, h), (b, h), ((a + b) / 2, h * rng.uniform(0.35, 0.75))], fill=_rgba(np.zeros(3), 245))
    for _ in range(int(rng.integers(2, 6))):
        r = w * rng.uniform(0.04, 0.12)
        x, y = rng.uniform(0, w), rng.uniform(0, 0.6 * h)
        d.ellipse([x - r, y - r, x + r, y + 1.6 * r], fill=_rgba(_hsv(0.0, 0.95, 0.6), 220))


def _m_adventure(d, w, h, rng, st):
    r = w * rng.uniform(0.12, 0.2)
    sx, sy = rng.uniform(0.2, 0.8) * w, rng.uniform(0.15, 0.35) * h
    d.ellipse([sx - r, sy - r, sx + r, sy + r], fill=_rgba(_hsv(0.12, 0.7, 1.0), 235))
    horizon = h * rng.uniform(0.55, 0.7)
    for _ in range(int(rng.integers(2, 5))):
        px, pw = rng.uniform(-0.1, 1.1) * w, w * rng.uniform(0.3, 0.6)
        d.polygon([(px - pw, h), (px + pw, h), (px, horizon - h * rng.uniform(0.1, 0.3))],
                  fill=_rgba(_hsv(rng.uniform(0.25, 0.4), 0.6, rng.uniform(0.3, 0.55)), 240))


_MOTIFS: dict[str, Motif] = {
    "Drama": _m_drama, "Comedy": _m_comedy, "Romance": _m_romance, "Action": _m_action,
    "Crime": _m_crime, "Thriller": _m_thriller, "Horror": _m_horror, "Adventure": _m_adventure,
}


def _background(w: int, h: int, st: dict, rng: np.random.Generator) -> np.ndarray:
    top = _hsv(st["hue"], st["sat"], st["val"] * rng.uniform(0.8, 1.15))
    bottom = _hsv(st["hue"] + st["accent"], st["sat"] * rng.uniform(0.7, 1.1), st["val"] * rng.uniform(0.5, 1.0))
    t = np.linspace(0.0, 1.0, h)[:, None, None] ** rng.uniform(0.6, 1.6)
    img = (1 - t) * top + t * bottom
    img = np.broadcast_to(img, (h, w, 3)).copy()
    if st["vignette"] > 0:
        yy, xx = np.mgrid[0:h, 0:w]
        r2 = ((xx - w / 2) / (w / 2)) ** 2 + ((yy - h / 2) / (h / 2)) ** 2
        img *= (1 - st["vignette"] * np.clip(r2 / 2, 0, 1))[..., None]
    return img


def _font(size: int) -> ImageFont.ImageFont:
    try:
        return ImageFont.load_default(size=size)
    except (TypeError, OSError):  # Pillow without FreeType: the fixed bitmap font
        return ImageFont.load_default()


def render_poster(genres: list[str], title: str, rng: np.random.Generator, width: int = 182,
                  height: int = 268) -> Image.Image:
    """Draws one synthetic poster for a set of (visual) genres.

    Args:
        genres: genre names from :data:`SYNTH_GENRES` whose cues the poster carries.
        title: title text for the title block.
        rng: the poster's random generator (all randomness comes from it).
        width: image width in pixels.
        height: image height in pixels.

    Returns:
        An RGB image of ``width x height``.
    """
    w, h = width, height
    st = _mix_style(genres, rng)
    bg = _background(w, h, st, rng)
    img = Image.fromarray(np.clip(bg, 0, 255).astype(np.uint8), "RGB").convert("RGBA")
    layer = Image.new("RGBA", (w, h), (0, 0, 0, 0))
    d = ImageDraw.Draw(layer)
    drawn = [g for g in genres if rng.random() < 0.85] or [genres[int(rng.integers(len(genres)))]]
    if rng.random() < 0.35:  # a distractor motif from any genre
        drawn.append(SYNTH_GENRES[int(rng.integers(len(SYNTH_GENRES)))])
    for g in rng.permutation(drawn):
        _MOTIFS[str(g)](d, w, h, rng, st)
    img = Image.alpha_composite(img, layer)
    if rng.random() < 0.5:
        img = img.filter(ImageFilter.GaussianBlur(radius=rng.uniform(0.3, 1.2)))
    # title block
    top = rng.random() < st["title_top"]
    bh = int(h * rng.uniform(0.12, 0.2))
    y0 = int(h * 0.04) if top else h - bh - int(h * 0.04)
    band = Image.new("RGBA", (w, h), (0, 0, 0, 0))
    bd = ImageDraw.Draw(band)
    light = st["val"] < 0.5
    band_col = _rgba(_hsv(st["hue"] + 0.5, 0.3, 0.9 if light else 0.15), int(rng.uniform(60, 160)))
    bd.rectangle([0, y0, w, y0 + bh], fill=band_col)
    text_col = (240, 235, 220, 255) if light else (20, 18, 30, 255)
    font = _font(max(8, w // 11))
    # the default font has no accented capitals: draw "CAFE" for "Café"
    plain = unicodedata.normalize("NFKD", title).encode("ascii", "ignore").decode("ascii")
    words = plain.upper().split()
    lines, line = [], ""
    for word in words:
        cand = f"{line} {word}".strip()
        if line and bd.textlength(cand, font=font) > 0.9 * w:
            lines.append(line)
            line = word
        else:
            line = cand
    lines.append(line)
    step = max(8, w // 10)
    for k, text in enumerate(lines[:2]):
        tw = bd.textlength(text, font=font)
        bd.text(((w - tw) / 2, y0 + 4 + k * step), text, fill=text_col, font=font)
    img = Image.alpha_composite(img, band).convert("RGB")
    amp = st["grain"] * rng.uniform(0.6, 1.4)
    if amp > 0.5:
        arr = np.asarray(img, dtype=np.float32) + rng.normal(0.0, amp, (h, w, 1)).astype(np.float32)
        img = Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8), "RGB")
    return img


def _title(genres: list[str], rng: np.random.Generator) -> str:
    pool = [wd for g in genres for wd in _WORDS[g]]
    words = [str(pool[int(rng.integers(len(pool)))]) for _ in range(int(rng.integers(1, 4)))]
    prefix = ["The ", "", "", "A ", ""][int(rng.integers(5))]
    return prefix + " ".join(dict.fromkeys(words))


def _visual_genres(labels: list[str], rng: np.random.Generator) -> list[str]:
    """The genres a poster is drawn with: its labels, except for ~LABEL_NOISE of posters."""
    if rng.random() >= LABEL_NOISE:
        return labels
    out = list(labels)
    others = [g for g in SYNTH_GENRES if g not in out]
    out[int(rng.integers(len(out)))] = others[int(rng.integers(len(others)))]
    return out


def generate_synth(out_dir: str | os.PathLike[str], *, n: int = SYNTH_SIZES["default"], seed: int = 0,
                   width: int = 182, height: int = 268, force: bool = False,
                   before_commit: Callable[[Path], None] | None = None) -> SynthResult:
    """Writes a synthetic poster set in the Kaggle on-disk format.

    Writes ``out_dir/MovieGenre.csv`` (latin-1), ``out_dir/posters/<imdbId>.jpg`` and a manifest
    (kind ``"raw"``) through :func:`neuroposter.artifact.write_artifact`: the folder is built under
    a temporary name under the artifact's lock and swapped in whole. An existing synthetic set is
    replaced only with ``force``; any other existing folder (a workspace, a real poster folder,
    another artifact, a folder of your own files) is never replaced.

    Args:
        out_dir: the raw folder, e.g. ``WORKSPACE/raw/synth``.
        n: number of posters (>= 1).
        seed: random seed; the same seed gives byte-identical CSV and JPEG files.
        width: poster width in pixels (Kaggle: 182).
        height: poster height in pixels (Kaggle: 268).
        force: replace an existing synthetic set at ``out_dir``.
        before_commit: called with the finished temporary folder just before its manifest is
            written, to add files the manifest then covers (the CLI's ``resolved_config.yaml``).

    Returns:
        Paths, count and label prevalence.

    Raises:
        ValueError: bad arguments.
        UsageError: ``out_dir`` holds something else, or a synthetic set and ``force`` is False.
        ArtifactBusyError: another process is writing the same folder.
    """
    if not isinstance(n, int) or isinstance(n, bool) or n < 1 or n > 1_000_000:
        raise ValueError(f"n must be an integer in [1, 1000000], got {n!r}")
    if not isinstance(seed, int) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
    for name, v in (("width", width), ("height", height)):
        if not isinstance(v, int) or v < 32 or v > 2048:
            raise ValueError(f"{name} must be an integer in [32, 2048], got {v!r}")
    t0 = time.perf_counter()
    out_dir = Path(out_dir)
    check_destination(out_dir, SYNTH_KIND, force=force, option="--out")  # before the slow part
    rng = np.random.default_rng(seed)
    labels = synth_labels(n, rng)
    ids = rng.choice(np.arange(10_000, 3_000_000), size=n, replace=False)
    years = rng.integers(1950, 2018, size=n)
    scores = np.round(np.clip(rng.normal(6.4, 1.0, size=n), 1.5, 9.6), 1)

    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(["imdbId", "Imdb Link", "Title", "IMDB Score", "Genre", "Poster"])
    with write_artifact(out_dir, SYNTH_KIND, force=force, option="--out",
                        needs_bytes=n * width * height // 3 + (1 << 20)) as tmp:  # JPEGs: ~1/3 byte per pixel
        posters = tmp / "posters"
        posters.mkdir()
        for i in progress(range(n), desc="synth posters", total=n, unit="poster"):
            prng = np.random.default_rng([seed, i])
            names = [SYNTH_GENRES[j] for j in prng.permutation(np.flatnonzero(labels[i]))]
            title = _title(names, prng)
            img = render_poster(_visual_genres(names, prng), title, prng, width, height)
            img.save(posters / f"{int(ids[i])}.jpg", format="JPEG", quality=JPEG_QUALITY, optimize=False)
            token = "".join(prng.choice(_ALNUM, size=28))
            url = (f"https://images-na.ssl-images-amazon.com/images/M/MV5B{token}@._V1_UX{width}_CR0,0,"
                   f"{width},{height}_AL_.jpg")
            writer.writerow([int(ids[i]), f"http://www.imdb.com/title/tt{int(ids[i])}", f"{title} ({years[i]})",
                             f"{scores[i]:g}", "|".join(names), url])
        (tmp / "MovieGenre.csv").write_bytes(buf.getvalue().encode("latin-1"))
        prevalence = {g: round(float(p), 4) for g, p in zip(SYNTH_GENRES, labels.mean(0))}
        if before_commit is not None:
            before_commit(tmp)
        write_manifest(tmp, SYNTH_KIND, config={"n": n, "seed": seed, "width": width, "height": height},
                       extra={"generator": "synth", "genres": list(SYNTH_GENRES), "prevalence": prevalence})
    seconds = time.perf_counter() - t0
    log.debug("wrote %d synthetic posters to %s in %.1f s", n, out_dir, seconds)
    return SynthResult(out_dir=out_dir, csv_path=out_dir / "MovieGenre.csv", posters_dir=out_dir / "posters",
                       n=n, prevalence=prevalence, seconds=seconds)
