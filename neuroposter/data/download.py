"""Fetching the poster URLs of a Kaggle ``MovieGenre.csv`` into ``posters/<imdbId>.jpg``.

Resumable (files that exist and decode as images are skipped), bounded concurrency, per-request
timeout, retries with backoff for transient failures, atomic writes, and a
``download_report.json`` that counts failures by kind. When the first requests all fail with a
network error the machine is offline (or the host is gone): the download stops at once with
one clear message instead of failing 40,000 times.
"""

from __future__ import annotations

import http.client
import io
import logging
import os
import socket
import time
import urllib.error
import urllib.request
from collections import Counter
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from neuroposter import __version__
from neuroposter._io import atomic_write_bytes, atomic_write_json, safe_join
from neuroposter._progress import progress
from neuroposter.data.kaggle import check_poster, parse_id, read_kaggle_csv
from neuroposter.errors import DataError

__all__ = ["DownloadResult", "fetch_poster", "download_posters", "REPORT_NAME"]

log = logging.getLogger(__name__)

REPORT_NAME = "download_report.json"
MAX_BYTES = 20 * 1024 * 1024
_PROBE = 3  # requests that decide "offline" when they all fail with a network error
_USER_AGENT = f"neuroposter/{__version__} (poster dataset downloader)"


@dataclass
class _Outcome:
    ident: int
    url: str
    kind: str            # "ok", or a failure kind: http_<status>, timeout, network, not_an_image, bad_url
    detail: str = ""


@dataclass
class DownloadResult:
    """What :func:`download_posters` did.

    Attributes:
        posters_dir: the posters folder.
        report_path: the ``download_report.json`` written there.
        requested: posters that were fetched (or tried).
        downloaded: posters fetched and written.
        present: posters already there (skipped).
        failures: failure kind -> count.
        report: the full report.
    """

    posters_dir: Path
    report_path: Path
    requested: int
    downloaded: int
    present: int
    failures: dict[str, int]
    report: dict[str, Any] = field(repr=False)


def _is_timeout(exc: BaseException) -> bool:
    return isinstance(exc, (socket.timeout, TimeoutError)) or "timed out" in str(exc).lower()


def fetch_poster(url: str, dest: Path, *, timeout: float, retries: int, backoff: float = 0.5) -> tuple[str, str]:
    """Downloads one image to ``dest`` (atomically) after checking it decodes.

    Retries timeouts, network errors and HTTP 5xx/429 up to ``retries`` times; other HTTP
    errors and non-images fail at once.

    Returns:
        ``(kind, detail)``: kind ``"ok"`` or a failure kind (``http_<status>``, ``timeout``,
        ``network``, ``not_an_image``, ``bad_url``).
    """
    if not url.lower().startswith(("http://", "https://")):
        return "bad_url", f"not an http(s) URL: {url[:80]!r}"
    req = urllib.request.Request(url, headers={"User-Agent": _USER_AGENT})
    kind, detail = "network", ""
    for attempt in range(retries + 1):
        if attempt:
            time.sleep(backoff * 2 ** (attempt - 1))
        try:
            with urllib.request.urlopen(req, timeout=timeout) as resp:  # noqa: S310 - scheme checked above
                data = resp.read(MAX_BYTES + 1)
        except urllib.error.HTTPError as exc:
            kind, detail = f"http_{exc.code}", str(exc.reason)
            if exc.code in (429,) or exc.code >= 500:
                continue
            return kind, detail
        except urllib.error.URLError as exc:
            reason = exc.reason
            kind = "timeout" if _is_timeout(reason) else "network"
            detail = f"{type(reason).__name__}: {reason}" if isinstance(reason, BaseException) else str(reason)
            continue
        except (socket.timeout, TimeoutError) as exc:
            kind, detail = "timeout", str(exc) or "read timed out"
            continue
        except http.client.HTTPException as exc:  # e.g. IncompleteRead: the connection broke mid-body
            kind, detail = "network", f"{type(exc).__name__}: {exc}"
            continue
        except (ConnectionError, OSError) as exc:
            kind, detail = ("timeout" if _is_timeout(exc) else "network"), f"{type(exc).__name__}: {exc}"
            continue
        except ValueError as exc:  # malformed URL
            return "bad_url", str(exc)
        if len(data) > MAX_BYTES:
            return "not_an_image", f"response larger than {MAX_BYTES} bytes"
        ok, _, problem = check_poster(io.BytesIO(data))
        if not ok:
            return "not_an_image", problem[:200]
        atomic_write_bytes(dest, data)
        return "ok", ""
    return kind, detail


def _targets(csv_path: Path) -> list[tuple[int, str]]:
    """``(imdbId, url)`` of every row with a valid id and a URL; the first row of an id wins."""
    df = read_kaggle_csv(csv_path)
    seen: set[int] = set()
    out = []
    for raw_id, url in zip(df["imdbId"], df["Poster"]):
        ident, url = parse_id(raw_id), url.strip()
        if ident is None or not url or ident in seen:
            continue
        seen.add(ident)
        out.append((ident, url))
    return out


def download_posters(
    csv_path: str | os.PathLike[str],
    posters_dir: str | os.PathLike[str],
    *,
    workers: int = 8,
    timeout: float = 10.0,
    retries: int = 2,
    limit: int | None = None,
) -> DownloadResult:
    """Downloads every poster of a Kaggle-format CSV that is not already on disk.

    Args:
        csv_path: ``MovieGenre.csv``.
        posters_dir: where ``<imdbId>.jpg`` files go (created if needed).
        workers: concurrent requests.
        timeout: per-request timeout in seconds.
        retries: extra attempts for timeouts, network errors and HTTP 5xx/429.
        limit: fetch at most this many missing posters (None: all).

    Returns:
        Counts and the report (also written to ``posters_dir/download_report.json``).

    Raises:
        DataError: unreadable CSV, or the first requests all failed with network errors or
            timeouts (offline).
        ValueError: bad options.
    """
    if not isinstance(workers, int) or workers < 1 or workers > 64:
        raise ValueError(f"workers must be an integer in [1, 64], got {workers!r}")
    if not timeout > 0:
        raise ValueError(f"timeout must be > 0 seconds, got {timeout!r}")
    if not isinstance(retries, int) or retries < 0:
        raise ValueError(f"retries must be a non-negative integer, got {retries!r}")
    if limit is not None and (not isinstance(limit, int) or limit < 1):
        raise ValueError(f"limit must be a positive integer, got {limit!r}")
    t0 = time.perf_counter()
    csv_path, posters_dir = Path(csv_path), Path(posters_dir)
    targets = _targets(csv_path)
    posters_dir.mkdir(parents=True, exist_ok=True)

    todo: list[tuple[int, str, Path]] = []
    present = 0
    escaped: list[_Outcome] = []
    for ident, url in targets:
        try:
            dest = safe_join(posters_dir, f"{ident}.jpg")
        except DataError as exc:
            escaped.append(_Outcome(ident, url, "path_escape", str(exc)))
            continue
        if dest.is_file() and check_poster(dest)[0]:
            present += 1
        else:
            todo.append((ident, url, dest))
    if limit is not None:
        todo = todo[:limit]

    def one(item: tuple[int, str, Path], n_retries: int) -> _Outcome:
        ident, url, dest = item
        kind, detail = fetch_poster(url, dest, timeout=timeout, retries=n_retries)
        return _Outcome(ident, url, kind, detail)

    outcomes: list[_Outcome] = list(escaped)
    # Probe: the first few requests, without retries, decide whether the hosts can be reached at all
    # (DNS failure, refused or black-holed connections).
    probe = [one(item, 0) for item in todo[:_PROBE]]
    if probe and all(o.kind in ("network", "timeout") for o in probe):
        _write_report(posters_dir, csv_path, targets, present, outcomes + probe, t0, aborted=True)
        raise DataError(f"cannot reach the poster host(s): the first {len(probe)} requests failed with a "
                        f"network error or timeout ({probe[0].detail}); offline? Download on a machine with "
                        f"network access and copy the posters to {posters_dir}")
    outcomes.extend(probe)
    rest = todo[len(probe):]
    if rest:
        with ThreadPoolExecutor(max_workers=workers) as pool:
            futures = [pool.submit(one, item, retries) for item in rest]
            for fut in progress(as_completed(futures), desc="download posters", total=len(futures),
                                unit="poster"):
                outcomes.append(fut.result())
    report = _write_report(posters_dir, csv_path, targets, present, outcomes, t0, aborted=False)
    return DownloadResult(posters_dir=posters_dir, report_path=posters_dir / REPORT_NAME,
                          requested=report["requested"], downloaded=report["downloaded"], present=present,
                          failures=report["failures"], report=report)


def _write_report(posters_dir: Path, csv_path: Path, targets: list, present: int, outcomes: list[_Outcome],
                  t0: float, *, aborted: bool) -> dict[str, Any]:
    outcomes = sorted(outcomes, key=lambda o: o.ident)
    fails = [o for o in outcomes if o.kind != "ok"]
    report = {
        "csv": str(csv_path.resolve()),
        "posters_dir": str(posters_dir.resolve()),
        "rows_with_url": len(targets),
        "present": present,
        "requested": len(outcomes),
        "downloaded": sum(o.kind == "ok" for o in outcomes),
        "failed": len(fails),
        "failures": dict(Counter(o.kind for o in fails).most_common()),
        "failed_items": [{"imdbId": o.ident, "url": o.url, "kind": o.kind, "detail": o.detail} for o in fails],
        "aborted_offline": aborted,
        "seconds": round(time.perf_counter() - t0, 3),
    }
    atomic_write_json(posters_dir / REPORT_NAME, report)
    if fails:
        log.debug("%d poster downloads failed: %s", len(fails), report["failures"])
    return report
