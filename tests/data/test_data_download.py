"""The poster downloader against a local HTTP server (no network): kinds of failure, resume, offline."""

from __future__ import annotations

import http.server
import json
import threading
import time
from pathlib import Path

import pytest

from neuroposter.data import download_posters
from neuroposter.data.kaggle import check_poster
from neuroposter.errors import DataError

HEADER = "imdbId,Imdb Link,Title,IMDB Score,Genre,Poster\n"


def _jpeg(seed: int) -> bytes:
    import io

    import numpy as np
    from PIL import Image

    buf = io.BytesIO()
    arr = np.random.default_rng(seed).integers(0, 256, (27, 18, 3)).astype("uint8")
    Image.fromarray(arr).save(buf, format="JPEG")
    return buf.getvalue()


class _Handler(http.server.BaseHTTPRequestHandler):
    images = {"/a.jpg": _jpeg(1), "/b.jpg": _jpeg(2), "/c.jpg": _jpeg(3), "/flaky.jpg": _jpeg(4)}
    hits: dict[str, int] = {}

    def do_GET(self) -> None:  # noqa: N802 - http.server API
        self.hits[self.path] = self.hits.get(self.path, 0) + 1
        if self.path == "/slow.jpg":
            time.sleep(1.5)
        if self.path == "/flaky.jpg" and self.hits[self.path] == 1:
            return self._send(500, b"try again", "text/plain")
        if self.path in self.images:
            return self._send(200, self.images[self.path], "image/jpeg")
        if self.path == "/page.jpg":
            return self._send(200, b"<html><body>gone</body></html>", "text/html")
        self._send(404, b"not found", "text/plain")

    def _send(self, code: int, body: bytes, ctype: str) -> None:
        self.send_response(code)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        try:
            self.wfile.write(body)
        except (BrokenPipeError, ConnectionResetError):
            pass

    def log_message(self, *args) -> None:
        pass


@pytest.fixture
def base_url():
    _Handler.hits = {}
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    srv.daemon_threads = True
    thread = threading.Thread(target=srv.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{srv.server_address[1]}"
    srv.shutdown()
    srv.server_close()


def _csv(tmp_path: Path, rows: list[tuple[str, str]]) -> Path:
    lines = [HEADER] + [f'{i},http://www.imdb.com/title/tt{i},Film {i} (2000),6.1,Drama,"{u}"\n' for i, u in rows]
    path = tmp_path / "MovieGenre.csv"
    path.write_bytes("".join(lines).encode("latin-1"))
    return path


def test_downloads_classifies_failures_and_resumes(tmp_path, base_url):
    csv = _csv(tmp_path, [("1", f"{base_url}/a.jpg"), ("2", f"{base_url}/missing.jpg"),
                          ("3", f"{base_url}/b.jpg"), ("4", f"{base_url}/page.jpg"),
                          ("5", f"{base_url}/slow.jpg"), ("6", f"{base_url}/flaky.jpg"),
                          ("7", f"{base_url}/c.jpg"), ("8", ""), ("9", "ftp://example.org/x.jpg")])
    posters = tmp_path / "posters"
    posters.mkdir()
    (posters / "7.jpg").write_bytes(_Handler.images["/c.jpg"])  # already there: skipped
    res = download_posters(csv, posters, workers=3, timeout=0.5, retries=1)
    assert res.present == 1 and res.requested == 7 and res.downloaded == 3
    assert res.failures == {"http_404": 1, "not_an_image": 1, "timeout": 1, "bad_url": 1}
    assert _Handler.hits["/flaky.jpg"] == 2 and "/c.jpg" not in _Handler.hits
    for ident in (1, 3, 6):
        assert (posters / f"{ident}.jpg").read_bytes() and check_poster(posters / f"{ident}.jpg")[0]
    assert not (posters / "2.jpg").exists() and not (posters / "4.jpg").exists()
    assert not [p for p in posters.iterdir() if p.name.startswith(".")]  # no temp files left
    report = json.loads((posters / "download_report.json").read_text())
    assert report["failures"] == res.failures and report["downloaded"] == 3
    assert {f["imdbId"]: f["kind"] for f in report["failed_items"]} == {
        2: "http_404", 4: "not_an_image", 5: "timeout", 9: "bad_url"}

    # resume: only the failures are tried again
    _Handler.hits = {}
    again = download_posters(csv, posters, workers=2, timeout=0.5, retries=0, limit=2)
    assert again.present == 4 and again.requested == 2 and again.downloaded == 0
    assert "/a.jpg" not in _Handler.hits


def test_offline_fails_fast_with_one_clear_message(tmp_path):
    csv = _csv(tmp_path, [(str(i), f"http://127.0.0.1:9/{i}.jpg") for i in range(1, 30)])
    t0 = time.perf_counter()
    with pytest.raises(DataError) as exc:
        download_posters(csv, tmp_path / "posters", workers=4, timeout=2, retries=3)
    assert time.perf_counter() - t0 < 5
    msg = str(exc.value)
    assert "offline" in msg and "network error" in msg and "\n" not in msg
    report = json.loads((tmp_path / "posters" / "download_report.json").read_text())
    assert report["aborted_offline"] is True and report["requested"] == 3


def test_bad_options_and_missing_csv(tmp_path):
    with pytest.raises(DataError, match="not found"):
        download_posters(tmp_path / "none.csv", tmp_path / "p")
    csv = _csv(tmp_path, [("1", "http://127.0.0.1:9/1.jpg")])
    for kw in ({"workers": 0}, {"timeout": 0}, {"retries": -1}, {"limit": 0}):
        with pytest.raises(ValueError):
            download_posters(csv, tmp_path / "p", **kw)
