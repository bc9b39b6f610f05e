"""Helpers of the study-server tests: a study folder of small images, the real
``drfhq study serve`` in a subprocess, and a minimal HTTP client that keeps cookies."""

from __future__ import annotations

import http.client
import os
import re
import signal
import subprocess
import sys
import threading
import time
from http.cookies import SimpleCookie
from pathlib import Path
from urllib.parse import urlencode, urlsplit

from PIL import Image

from drfhq_lib.eval import study as st
from drfhq_lib.eval import study_files

ROOT = Path(__file__).resolve().parents[1]


def solid_png(path: Path, colour, size: int = 8) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (size, size), colour).save(path)
    return path


def build_study_dir(root: Path, n_sets: int, n_pairs: int, image=None) -> Path:
    """``root/study`` with a frozen Fig. 6 study (``n_sets`` x ours + the six methods, and an
    ``aligned/`` folder that must not become a method) and a Fig. 15 study of ``n_pairs``.
    ``image(path, kind, method, index)`` writes one image (default: a distinct solid colour)."""
    image = image or (lambda path, kind, method, i: solid_png(
        path, (37 * i % 256, 0 if kind == "fullbody" else 60,
               31 * (("ours", "original", "aligned", *st.FIG6_METHODS).index(method) + 1) % 256)))
    results = root / "results"
    for i in range(n_sets):
        for method in ("ours", *st.FIG6_METHODS, "aligned"):
            image(results / method / f"in{i:02d}.png", "inversion", method, i)
    for i in range(n_pairs):
        image(root / "renders" / f"b{i:02d}_body.png", "fullbody", "original", i)
        image(root / "composites" / f"b{i:02d}_body.png", "fullbody", "ours", i)
    folder = root / "study"
    study_files.save_study(study_files.choice_study(results), folder / "study_inversion.json")
    study_files.save_study(study_files.fullbody_study(root / "renders", root / "composites"),
                           folder / "study_fullbody.json")
    return folder


def method_of_file(study) -> dict[bytes, str]:
    """Image bytes -> method (ours, a Fig. 6 method, or Fig. 15's original): the oracle of
    what a page showed, independent of the server's ids."""
    if isinstance(study, st.ChoiceStudy):
        pairs = [pair for s in study.sets for pair in s.paths]
    else:
        pairs = [p for t in study.trials for p in (("ours", t.path_ours),
                                                     ("original", t.path_other))]
    table = {}
    for method, path in pairs:
        data = Path(path).read_bytes()
        assert data not in table or table[data] == method, "two methods share an image"
        table[data] = method
    return table


class Server:
    """``python -m drfhq_lib study serve FOLDER --port 0 [--simulated]`` until ``stop``."""

    def __init__(self, folder: Path, simulated: bool, timeout: float = 300):
        env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", PYTHONUNBUFFERED="1")
        cmd = [sys.executable, "-m", "drfhq_lib", "study", "serve", str(folder), "--port", "0"]
        self.process = subprocess.Popen(cmd + (["--simulated"] if simulated else []),
                                        cwd=ROOT, env=env, stdout=subprocess.PIPE,
                                        stderr=subprocess.STDOUT, text=True)
        self.lines: list[str] = []
        found = threading.Event()

        def read():
            for line in self.process.stdout:
                self.lines.append(line)
                if re.search(r"at (http://\S+/) ", line):
                    found.set()
            found.set()

        threading.Thread(target=read, daemon=True).start()
        if not found.wait(timeout) or self.process.poll() is not None:
            self.stop()
            raise RuntimeError("drfhq study serve did not start:\n" + "".join(self.lines))
        self.url = re.search(r"at (http://\S+/) ", "".join(self.lines)).group(1)

    def stop(self) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)
        return self.process.returncode


class Client:
    """One participant's browser, reduced to what the pages need: cookies and forms."""

    def __init__(self, url: str):
        parts = urlsplit(url)
        self.base = parts.path
        self.conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=60)
        self.cookies: dict[str, str] = {}

    def request(self, method: str, path: str, fields: dict | None = None, headers=None):
        body = urlencode(fields) if fields is not None else None
        head = {"Cookie": "; ".join(f"{k}={v}" for k, v in self.cookies.items()),
                **({"Content-Type": "application/x-www-form-urlencoded"} if body else {}),
                **(headers or {})}
        self.conn.request(method, self.base + path.lstrip("/"), body=body, headers=head)
        response = self.conn.getresponse()
        data = response.read()
        for value in response.headers.get_all("Set-Cookie") or []:
            for name, morsel in SimpleCookie(value).items():
                self.cookies[name] = morsel.value
        return response.status, response.headers, data

    def page(self, path: str) -> str:
        status, _, data = self.request("GET", path)
        assert status == 200, (path, status, data[:300])
        return data.decode()

    def post(self, path: str, fields: dict) -> tuple[int, str]:
        page = fields.pop("_page")
        xsrf = re.search(r'name="_xsrf" value="([^"]+)"', page).group(1)
        status, headers, data = self.request("POST", path, {"_xsrf": xsrf, **fields})
        return status, headers.get("Location") or data.decode()

    def close(self):
        self.conn.close()


def screen(page: str) -> dict | None:
    """The trial of a page: its key, the image ids in the order shown, the progress."""
    trial = re.search(r'name="trial" value="([^"]+)"', page)
    if not trial:
        return None
    progress = re.search(r'<progress id="progress" value="(\d+)" max="(\d+)"', page)
    return {"trial": trial.group(1), "images": re.findall(r'<img src="image/([0-9a-f]+)"', page),
            "done": int(progress.group(1)), "total": int(progress.group(2))}


def participate(url: str, kind: str, pid: str, choose, latencies: list | None = None,
                barrier: threading.Barrier | None = None) -> list[dict]:
    """Consent, then every trial of ``kind``: ``choose(index, n_images)`` gives the position
    clicked. Returns what was shown and clicked, per trial; POST latencies are appended."""
    client = Client(url)
    try:
        consent = client.page(f"{kind}/?pid={pid}")
        assert 'id="consent"' in consent, consent[:300]
        if barrier:
            barrier.wait(60)
        status, where = client.post(f"{kind}/start", {"_page": consent, "pid": pid,
                                                      "consent": "yes"})
        assert status == 303 and where == f"./?pid={pid}", (status, where)
        answered = []
        while True:
            page = client.page(f"{kind}/?pid={pid}")
            shown = screen(page)
            if shown is None:
                assert 'id="thanks"' in page, page[:500]
                return answered
            assert shown["done"] == len(answered)
            position = choose(len(answered), len(shown["images"]))
            start = time.perf_counter()
            status, where = client.post(f"{kind}/answer", {
                "_page": page, "pid": pid, "trial": shown["trial"], "position": str(position)})
            if latencies is not None:
                latencies.append(time.perf_counter() - start)
            assert status == 303, (status, where)
            answered.append({**shown, "position": position})
    finally:
        client.close()


def fetch_image(url: str, kind: str, image_id: str) -> bytes:
    client = Client(url)
    try:
        status, _, data = client.request("GET", f"{kind}/image/{image_id}")
        assert status == 200, (image_id, status)
        return data
    finally:
        client.close()
