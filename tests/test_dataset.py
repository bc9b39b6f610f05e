"""Dataset building against a local HTTP server: good, broken, slow and missing files; resume;
rate limit; rejects; the StyleGAN2-ADA zip and reading it back."""

import csv
import io
import json
import threading
import time
import zipfile
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import numpy as np
import pytest
import torch
from PIL import Image

from drfhq_lib import cli
from drfhq_lib.data.dataset import (RateLimiter, apply_rejects, archive_name, download_urls,
                               open_dataset, pack_dataset, read_rejects, read_url_list,
                               write_demo_inputs, write_rejects)
from drfhq_lib.errors import BadImageError, DrfhqError


def _png(seed, size=(24, 24)):
    array = np.random.default_rng(seed).integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="PNG")
    return buffer.getvalue()


GOOD = {f"/good{i}.png": _png(i) for i in range(4)}
TRUNCATED = _png(10)[:200]  # a PNG cut short, served as a complete file


class _Handler(BaseHTTPRequestHandler):
    """Serves the test files; behaviour by path. Records every request."""

    log: list = []
    counts: dict = {}

    def log_message(self, *args):  # keep test output clean
        pass

    def _send(self, data: bytes, status=200, length=None, cut=None, headers=()):
        self.send_response(status)
        self.send_header("Content-Length", str(len(data) if length is None else length))
        for key, value in headers:
            self.send_header(key, value)
        self.end_headers()
        self.wfile.write(data if cut is None else data[:cut])
        self.wfile.flush()

    def do_GET(self):
        path = self.path
        n = self.counts[path] = self.counts.get(path, 0) + 1
        self.log.append((time.monotonic(), path, self.headers.get("Range")))
        try:
            if path in GOOD:
                return self._send(GOOD[path])
            if path == "/missing.png":
                return self._send(b"not found", status=404)
            if path == "/page.png":
                return self._send(b"<html>error page</html>")
            if path == "/truncated.png":
                return self._send(TRUNCATED)
            if path == "/slow-once.png":  # first answer too late for the client's timeout
                if n == 1:
                    time.sleep(1.0)
                return self._send(GOOD["/good0.png"])
            if path == "/slow.png":
                time.sleep(1.0)
                return self._send(GOOD["/good1.png"])
            if path == "/resume.png":  # first transfer breaks halfway; Range requests work
                data = GOOD["/good2.png"]
                rng = self.headers.get("Range")
                if rng:
                    start = int(rng.split("=")[1].rstrip("-"))
                    return self._send(data[start:], status=206, headers=[
                        ("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")])
                self._send(data, cut=len(data) // 2)
                self.close_connection = True
                return
            if path == "/server-error.png":
                return self._send(b"busy", status=503)
            return self._send(b"?", status=404)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client gave up (timeout test)


@pytest.fixture
def server():
    _Handler.log = []
    _Handler.counts = {}
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    httpd.daemon_threads = True
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05},
                              daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


def _download(urls, out, **kw):
    options = dict(workers=4, rate=None, retries=1, timeout=0.4, backoff=0.05, progress=False)
    options.update(kw)
    return download_urls(urls, out, **options)


def _rows(report):
    return {r["name"]: r for r in report.rows}


def test_download_statuses(tmp_path, server):
    paths = ["/good0.png", "/good1.png", "/missing.png", "/page.png", "/truncated.png",
             "/slow-once.png", "/slow.png", "/resume.png", "/server-error.png"]
    url_list = tmp_path / "urls.txt"
    url_list.write_text("# DRFHQ test list\n\n" + "".join(server + p + "\n" for p in paths))
    out = tmp_path / "raw"
    started = time.monotonic()
    rows = _rows(_download(url_list, out))
    assert time.monotonic() - started < 8
    status = {name: r["status"] for name, r in rows.items()}
    assert status == {
        "good0.png": "ok", "good1.png": "ok", "missing.png": "missing",
        "page.png": "bad_image", "truncated.png": "bad_image", "slow-once.png": "ok",
        "slow.png": "failed", "resume.png": "ok", "server-error.png": "failed"}
    assert rows["missing.png"]["attempts"] == 1  # 404 is not retried
    assert rows["slow-once.png"]["attempts"] == 2
    assert "timed out" in rows["slow.png"]["reason"]
    assert "503" in rows["server-error.png"]["reason"]
    assert (out / "good0.png").read_bytes() == GOOD["/good0.png"]
    assert (out / "resume.png").read_bytes() == GOOD["/good2.png"]
    ranges = [r for _, p, r in _Handler.log if p == "/resume.png"]
    assert ranges[0] is None and ranges[1].startswith("bytes=")  # resumed, not restarted
    import hashlib

    assert rows["good0.png"]["sha256"] == hashlib.sha256(GOOD["/good0.png"]).hexdigest()
    for bad in ("page.png", "truncated.png", "missing.png", "slow.png"):
        assert not (out / bad).exists()
    assert not list(out.glob("*.part"))  # failed transfers never started a body

    # the manifest has one row per URL; a rerun skips verified files without a request
    with open(out / "downloads.csv", newline="") as f:
        manifest = {r["name"]: r for r in csv.DictReader(f)}
    assert set(manifest) == set(status)
    before = len(_Handler.log)
    rerun = _rows(_download(url_list, out))
    assert rerun["good0.png"]["status"] == "exists"
    assert rerun["resume.png"]["status"] == "exists"
    requested = {p for _, p, _ in _Handler.log[before:]}
    assert "/good0.png" not in requested and "/resume.png" not in requested
    assert "/missing.png" in requested  # failures are tried again


def test_partial_file_is_resumed_and_corrupt_copy_replaced(tmp_path, server):
    out = tmp_path / "raw"
    out.mkdir()
    data = GOOD["/good3.png"]
    (out / "good3.png.part").write_bytes(data[:100])  # left by an interrupted run
    (out / "good1.png").write_bytes(b"garbage")  # not verified: downloaded again
    rows = _rows(_download([server + "/good3.png", server + "/good1.png"], out))
    assert rows["good3.png"]["status"] == "ok" and rows["good1.png"]["status"] == "ok"
    assert (out / "good3.png").read_bytes() == data
    assert (out / "good1.png").read_bytes() == GOOD["/good1.png"]


def test_foreign_csv_is_not_taken_as_manifest(tmp_path, server):
    other = tmp_path / "other.csv"
    other.write_text("a,b\n1,2\n")
    with pytest.raises(DrfhqError, match="not a manifest"):
        _download([server + "/good0.png"], tmp_path / "raw", manifest=other)
    assert other.read_text() == "a,b\n1,2\n"


def test_overwrite_downloads_again(tmp_path, server):
    out = tmp_path / "raw"
    _download([server + "/good0.png"], out)
    rows = _rows(_download([server + "/good0.png"], out, overwrite=True))
    assert rows["good0.png"]["status"] == "ok"
    assert _Handler.counts["/good0.png"] == 2


def test_rate_limit_spaces_requests_across_workers(tmp_path, server):
    urls = [server + p for p in GOOD]
    _download(urls, tmp_path / "raw", workers=4, rate=20.0)
    times = sorted(t for t, _, _ in _Handler.log)
    gaps = np.diff(times)
    assert len(times) == 4 and gaps.min() > 0.035  # 1/20 s apart, minus scheduling jitter


def test_rate_limiter_alone():
    limiter = RateLimiter(50.0)
    start = time.monotonic()
    for _ in range(6):
        limiter.wait()
    assert time.monotonic() - start >= 5 / 50 - 0.01


def test_url_list_names():
    items = read_url_list([
        "https://a.example/gallery/render%201.png",
        "https://b.example/x/render%201.png",  # same file name: both get a hash
        "https://c.example/img?id=3",
        "https://c.example/img?id=3",  # repeated URL: kept once
        "https://d.example/p/123 my-name.jpg",
        "https://e.example/",
    ])
    names = [i.name for i in items]
    assert len(items) == 5 and len(set(names)) == 5
    assert names[0].startswith("render_1-") and names[0].endswith(".png")
    assert names[3] == "my-name.jpg"
    with pytest.raises(DrfhqError, match="line 1"):
        read_url_list(["ftp://x/y.png"])


# ----------------------------------------------------------------------------- rejects

def _folder_of_images(folder, n=5, size=(40, 40)):
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(n):
        path = folder / f"face{i}.png"
        path.write_bytes(_png(i, size))
        (folder / f"face{i}.align.json").write_text("{}")
        paths.append(path)
    return paths


def test_rejects_roundtrip_and_apply(tmp_path):
    paths = _folder_of_images(tmp_path / "aligned")
    rejects = tmp_path / "rejects.txt"
    write_rejects(rejects, ["face3.png", "face1", "ghost.png"])
    assert rejects.read_text() == "face1\nface3.png\nghost.png\n"
    assert read_rejects(rejects) == {"face1", "face3.png", "ghost.png"}
    result = apply_rejects(tmp_path / "aligned", rejects, kept_list=tmp_path / "kept.txt")
    assert [p.name for p in result.kept] == ["face0.png", "face2.png", "face4.png"]
    assert [p.name for p in result.rejected] == ["face1.png", "face3.png"]
    assert result.unknown == ["ghost.png"]
    assert (tmp_path / "kept.txt").read_text().count("\n") == 3
    moved = apply_rejects(tmp_path / "aligned", rejects, move_to=tmp_path / "rejected")
    assert sorted(p.name for p in (tmp_path / "rejected").iterdir()) == [
        "face1.align.json", "face1.png", "face3.align.json", "face3.png"]
    assert not paths[1].exists() and paths[0].exists() and len(moved.kept) == 3


def test_apply_rejects_reads_an_alignment_manifest(tmp_path):
    paths = _folder_of_images(tmp_path / "aligned", n=3)
    manifest = tmp_path / "aligned" / "manifest.csv"
    with open(manifest, "w", newline="") as f:
        writer = csv.DictWriter(f, ["file", "status", "reason", "faces", "output", "quad"])
        writer.writeheader()
        for i, path in enumerate(paths):
            writer.writerow({"file": f"in{i}.jpg", "status": "ok" if i else "no_face",
                             "output": str(path) if i else ""})
    write_rejects(tmp_path / "r.txt", ["face2.png"])
    result = apply_rejects(manifest, tmp_path / "r.txt")
    assert [p.name for p in result.kept] == ["face1.png"]


# ----------------------------------------------------------------------------- zip

def test_pack_and_open_dataset(tmp_path):
    folder = tmp_path / "aligned"
    _folder_of_images(folder, n=4, size=(64, 64))
    (folder / "wide.png").write_bytes(_png(9, (80, 60)))  # centre-cropped
    (folder / "zz_broken.png").write_text("nope")  # skipped, reported
    write_rejects(tmp_path / "rejects.txt", ["face2.png"])
    report = pack_dataset(folder, tmp_path / "train.zip", 32, rejects=tmp_path / "rejects.txt",
                          progress=False)
    assert report.counts == {"ok": 4, "bad_image": 1}
    with zipfile.ZipFile(tmp_path / "train.zip") as archive:
        names = sorted(archive.namelist())
        meta = json.loads(archive.read("dataset.json"))
    assert names == ["00000/img00000000.png", "00000/img00000001.png", "00000/img00000002.png",
                     "00000/img00000003.png", "dataset.json"]
    assert meta["labels"] is None and meta["drfhq"]["resolution"] == 32
    assert "face2.png" not in meta["drfhq"]["sources"].values()
    assert archive_name(1234) == "00001/img00001234.png"

    dataset = open_dataset(tmp_path / "train.zip")
    assert len(dataset) == 4 and dataset.resolution == 32 and dataset.labels is None
    image = dataset[0]
    assert image.shape == (3, 32, 32) and image.dtype == torch.float32
    assert -1.0 <= image.min() and image.max() <= 1.0
    assert sum(1 for _ in dataset) == 4
    assert [b.shape[0] for b in dataset.batches(3)] == [3, 1]
    loader = torch.utils.data.DataLoader(dataset, batch_size=2)
    assert next(iter(loader)).shape == (2, 3, 32, 32)
    with pytest.raises(BadImageError, match="not the requested 64"):
        open_dataset(tmp_path / "train.zip", resolution=64)


def test_open_dataset_folder_checks_resolution(tmp_path):
    folder = tmp_path / "ds"
    (folder / "00000").mkdir(parents=True)
    (folder / "00000" / "img00000000.png").write_bytes(_png(1, (16, 16)))
    (folder / "00000" / "img00000001.png").write_bytes(_png(2, (32, 32)))
    dataset = open_dataset(folder)
    assert dataset.resolution == 16 and dataset[0].shape == (3, 16, 16)
    with pytest.raises(BadImageError, match="mixes resolutions"):
        dataset[1]


def test_pack_refuses_non_power_of_two(tmp_path):
    _folder_of_images(tmp_path / "a", n=1)
    with pytest.raises(DrfhqError, match="power of two"):
        pack_dataset(tmp_path / "a", tmp_path / "x.zip", 100)
    assert not (tmp_path / "x.zip").exists()


def test_cli_dataset_pack_and_filter_apply(tmp_path, capsys):
    _folder_of_images(tmp_path / "aligned", n=3, size=(32, 32))
    write_rejects(tmp_path / "r.txt", ["face0.png"])
    assert cli.main(["dataset", "filter-apply", str(tmp_path / "aligned"),
                     str(tmp_path / "r.txt")]) == 0
    assert "2 kept, 1 rejected" in capsys.readouterr().out
    assert cli.main(["dataset", "pack", str(tmp_path / "aligned"), "--out",
                     str(tmp_path / "d.zip"), "--resolution", "16", "--rejects",
                     str(tmp_path / "r.txt")]) == 0
    assert "ok 2" in capsys.readouterr().out
    assert len(open_dataset(tmp_path / "d.zip")) == 2


def test_cli_dataset_download(tmp_path, server, capsys):
    (tmp_path / "u.txt").write_text(f"{server}/good0.png\n{server}/missing.png\n")
    code = cli.main(["dataset", "download", str(tmp_path / "u.txt"), "--out",
                     str(tmp_path / "raw"), "--workers", "2", "--rate", "0", "--retries", "0"])
    assert code == 1  # finished, but one URL failed
    out = capsys.readouterr().out
    assert "missing 1" in out and "ok 1" in out


def _one_error_line(capsys, command: str) -> str:
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in captured.err, captured.err
    assert lines[0].startswith(f"drfhq {command}: error: ")
    return lines[0]


def test_cli_pack_unreadable_folder_is_one_line(tmp_path, capsys, monkeypatch):
    from drfhq_lib.data import dataset

    folder = tmp_path / "locked"
    folder.mkdir()

    def denied(path):  # what listing a folder without read permission raises (root can read)
        raise PermissionError(13, "Permission denied", str(path))

    monkeypatch.setattr(dataset, "list_images", denied)
    code = cli.main(["dataset", "pack", str(folder), "--out", str(tmp_path / "d.zip")])
    line = _one_error_line(capsys, "dataset pack")
    assert code == 2 and str(folder) in line and "Permission denied" in line
    assert "check that it is a folder of images" in line
    assert not (tmp_path / "d.zip").exists()


def test_cli_pack_missing_folder_and_unreadable_manifest_are_one_line(tmp_path, capsys):
    code = cli.main(["dataset", "pack", str(tmp_path / "nope"), "--out", str(tmp_path / "d.zip")])
    line = _one_error_line(capsys, "dataset pack")
    assert code == 2 and "nope: no such folder or file" in line and "drfhq align" in line
    (tmp_path / "manifest.csv").write_bytes(b"\xff\xfe\x00garbage\x81")
    code = cli.main(["dataset", "pack", str(tmp_path / "manifest.csv"), "--out",
                     str(tmp_path / "d.zip")])
    line = _one_error_line(capsys, "dataset pack")
    assert code == 2 and "manifest.csv: cannot be read" in line


def test_cli_pack_wrong_resolution_and_bad_images(tmp_path, capsys):
    _folder_of_images(tmp_path / "aligned", n=2, size=(32, 32))
    code = cli.main(["dataset", "pack", str(tmp_path / "aligned"), "--out",
                     str(tmp_path / "d.zip"), "--resolution", "100"])
    line = _one_error_line(capsys, "dataset pack")
    assert code == 2 and "power of two" in line and "100" in line
    (tmp_path / "aligned" / "broken.png").write_text("<html>404</html>")
    code = cli.main(["dataset", "pack", str(tmp_path / "aligned"), "--out",
                     str(tmp_path / "d.zip"), "--resolution", "16"])
    assert code == 1 and "bad_image 1, ok 2" in capsys.readouterr().out  # packed, one skipped


def test_cli_filter_apply_missing_rejects_file_is_one_line(tmp_path, capsys):
    _folder_of_images(tmp_path / "aligned", n=1, size=(32, 32))
    code = cli.main(["dataset", "filter-apply", str(tmp_path / "aligned"),
                     str(tmp_path / "rejects.txt")])
    line = _one_error_line(capsys, "dataset filter-apply")
    assert code == 2 and "REJECTS" in line and "rejects.txt: no such file" in line


def test_demo_inputs(tmp_path):
    written = write_demo_inputs(tmp_path)
    names = {p.name for p in written}
    assert {"obama.jpg", "not_an_image.png", "no_face.png", "truncated.jpg"} <= names
