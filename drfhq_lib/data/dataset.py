"""Building DRFHQ-style datasets: URL list -> downloads -> aligned faces -> filtered -> zip.

The paper (Sec. 3.1) publishes DRFHQ as a list of URLs of daz3d.com gallery renders; the images
are aligned with dlib the FFHQ way (``drfhq_lib.data.align``), filtered by hand
(``drfhq_lib.data.filtering``) and used at 1024 px. The steps here:

* ``download_urls``: parallel downloads with retries, resume (``.part`` files, verified files
  skipped), a rate limit shared by all workers, a sha256 per file, a manifest CSV.
* ``align_folder`` (from ``drfhq_lib.data.align_job``): align what was downloaded.
* ``read_rejects`` / ``write_rejects`` / ``apply_rejects``: the hand-made rejects list.
* ``pack_dataset``: a StyleGAN2-ADA dataset zip (``00000/img00000000.png`` + dataset.json);
  ``open_dataset`` reads one back as [-1, 1] tensors.

Every long job writes a manifest (``drfhq_lib.data.manifest``) (one row per item: name, status, reason, ...) row by row, so a
crash loses nothing and a rerun resumes; outputs are written to a temporary file and renamed.
"""

from __future__ import annotations

import csv
import hashlib
import http.client
import io
import json
import os
import re
import shutil
import socket
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
import zipfile
from collections import Counter
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Iterator

import numpy as np
import torch
from PIL import Image

from drfhq_lib.data.images import DEFAULT_MAX_PIXELS, IMAGE_SUFFIXES, list_images, load_image, pil_to_tensor
from drfhq_lib.data.manifest import SIDECAR_SUFFIX, BatchReport, Manifest, read_manifest  # noqa: F401
from drfhq_lib.errors import BadImageError, DrfhqError
from drfhq_lib.files import atomic_path, sha256_file, write_text_atomic


# ----------------------------------------------------------------------------- URL lists

@dataclass(frozen=True)
class UrlItem:
    url: str
    name: str  # file name in the download folder


def _safe_name(name: str) -> str:
    name = re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("._")
    return name[:150]


def read_url_list(source: str | os.PathLike | Iterable[str]) -> list[UrlItem]:
    """Parse a URL list: one ``URL`` or ``URL NAME`` per line, ``#`` comments, blank lines.

    Without NAME the file is named after the URL's last path part (made safe); names that would
    clash get a short hash of their URL, so every URL has its own, stable file name.
    Repeated URLs are kept once.
    """
    if isinstance(source, (str, os.PathLike)) and Path(source).is_file():
        lines = Path(source).read_text(encoding="utf-8").splitlines()
    elif isinstance(source, (str, os.PathLike)):
        raise DrfhqError(f"{source}: URL list not found")
    else:
        lines = list(source)
    entries: dict[str, str] = {}
    for number, line in enumerate(lines, 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        parts = line.split()
        url = parts[0]
        if urllib.parse.urlparse(url).scheme not in ("http", "https"):
            raise DrfhqError(f"URL list line {number}: {url!r} is not an http(s) URL")
        given = _safe_name(" ".join(parts[1:])) if len(parts) > 1 else ""
        guessed = _safe_name(urllib.parse.unquote(
            Path(urllib.parse.urlparse(url).path).name))
        entries.setdefault(url, given or guessed)
    counts = Counter(entries.values())
    items = []
    for url, name in entries.items():
        digest = hashlib.sha1(url.encode()).hexdigest()
        if not name:
            name = digest[:16]
        elif counts[name] > 1:
            stem, suffix = os.path.splitext(name)
            name = f"{stem}-{digest[:8]}{suffix}"
        items.append(UrlItem(url, name))
    return items


# ----------------------------------------------------------------------------- downloads

class RateLimiter:
    """At most ``rate`` request starts per second, across every thread that shares it."""

    def __init__(self, rate: float | None):
        self.interval = 1.0 / rate if rate else 0.0
        self._next = 0.0
        self._lock = threading.Lock()

    def wait(self) -> None:
        if not self.interval:
            return
        with self._lock:
            now = time.monotonic()
            start = max(now, self._next)
            self._next = start + self.interval
        if start > now:
            time.sleep(start - now)


DOWNLOAD_FIELDS = ["name", "url", "status", "reason", "bytes", "sha256", "attempts"]
_PERMANENT_HTTP = {400, 401, 403, 404, 405, 410, 451}


class _Retry(Exception):
    """A transient failure: try again (after a pause) unless attempts are used up."""


def _fetch_to_part(url: str, part: Path, timeout: float) -> None:
    """One request: append to ``part`` (resuming with a Range request); raise _Retry when the
    transfer ended early, HTTPError for HTTP errors."""
    start = part.stat().st_size if part.exists() else 0
    request = urllib.request.Request(url, headers={"User-Agent": "drfhq-dataset"})
    if start:
        request.add_header("Range", f"bytes={start}-")
    with urllib.request.urlopen(request, timeout=timeout) as response:
        if start and response.status != 206:  # the server ignored the range: start over
            start = 0
        length = response.headers.get("Content-Length")
        expected = start + int(length) if length is not None else None
        with open(part, "ab" if start else "wb") as out:
            while block := response.read(1 << 16):
                out.write(block)
    if expected is not None and part.stat().st_size < expected:
        raise _Retry(f"short read: {part.stat().st_size} of {expected} bytes")


def download_one(item: UrlItem, out_dir: Path, *, timeout: float = 30.0, retries: int = 3,
                 limiter: RateLimiter | None = None, max_pixels: int | None = DEFAULT_MAX_PIXELS,
                 backoff: float = 0.5) -> dict:
    """Download one URL into ``out_dir/item.name``; returns its manifest row (never raises for
    download or image problems: they become the row's status and reason)."""
    dest = out_dir / item.name
    part = dest.with_name(dest.name + ".part")
    row = {"name": item.name, "url": item.url, "status": "", "reason": "", "bytes": "",
           "sha256": "", "attempts": 0}
    reason = ""
    for attempt in range(retries + 1):
        if attempt:
            time.sleep(min(backoff * 2 ** (attempt - 1), 10.0))
        if limiter:
            limiter.wait()
        row["attempts"] = attempt + 1
        try:
            _fetch_to_part(item.url, part, timeout)
            break
        except urllib.error.HTTPError as err:
            if err.code == 416:  # our .part is longer than the file: start afresh
                part.unlink(missing_ok=True)
                reason = "HTTP 416 on resume"
                continue
            if err.code in _PERMANENT_HTTP:
                part.unlink(missing_ok=True)
                status = "missing" if err.code in (404, 410) else "http_error"
                row.update(status=status, reason=f"HTTP {err.code} {err.reason}; check the URL")
                return row
            reason = f"HTTP {err.code} {err.reason}"
        except (socket.timeout, TimeoutError) as err:
            reason = f"timed out after {timeout:g} s ({err})"
        except (urllib.error.URLError, http.client.HTTPException, ConnectionError, OSError,
                _Retry) as err:
            if isinstance(err, urllib.error.URLError) and isinstance(err.reason, TimeoutError):
                reason = f"timed out after {timeout:g} s"
            else:
                reason = f"{type(err).__name__}: {err}"
    else:
        row.update(status="failed", reason=f"{reason} (after {retries + 1} attempts; "
                                           f"rerun to resume from {part.name})")
        return row
    try:
        load_image(part, max_pixels=max_pixels, name=item.url)
    except BadImageError as err:
        part.unlink(missing_ok=True)
        row.update(status="bad_image", reason=str(err))
        return row
    os.replace(part, dest)
    row.update(status="ok", bytes=dest.stat().st_size, sha256=sha256_file(dest))
    return row


def _already_downloaded(item: UrlItem, dest: Path, previous: dict | None,
                        max_pixels: int | None) -> dict | None:
    """The 'exists' row when ``dest`` is a verified earlier download, else None."""
    if not dest.is_file():
        return None
    digest = sha256_file(dest)
    verified = previous is not None and previous.get("status") in ("ok", "exists") \
        and previous.get("sha256") == digest
    if not verified:
        try:  # a file from elsewhere (or an older manifest): accept it if it is a good image
            load_image(dest, max_pixels=max_pixels)
        except BadImageError:
            return None
    return {"name": item.name, "url": item.url, "status": "exists",
            "reason": "already downloaded and verified", "bytes": dest.stat().st_size,
            "sha256": digest, "attempts": 0}


def download_urls(urls: str | os.PathLike | Iterable[str], out_dir: str | os.PathLike, *,
                  workers: int = 8, rate: float | None = 5.0, retries: int = 3,
                  timeout: float = 30.0, overwrite: bool = False,
                  manifest: str | os.PathLike | None = None,
                  max_pixels: int | None = DEFAULT_MAX_PIXELS, backoff: float = 0.5,
                  progress: bool = True):
    """Download every URL of a list (file or iterable of lines) into ``out_dir``.

    ``workers`` threads share a rate limit of ``rate`` requests per second (None: unlimited).
    Each file is retried ``retries`` times on timeouts, connection errors, short reads and 5xx
    (resuming its ``.part`` file), not on 404/403/...; it must then open as an image
    (:func:`load_image`), and its sha256 goes into the manifest (``out_dir/downloads.csv``
    unless given). Statuses: ok, exists (downloaded and verified before: skipped), missing
    (404/410), http_error, failed (gave up; rerun to resume), bad_image. Files already present
    and verified are never downloaded again unless ``overwrite``.
    """
    from tqdm.auto import tqdm


    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    items = read_url_list(urls)
    limiter = RateLimiter(rate)
    rows = []
    with Manifest(Path(manifest or out_dir / "downloads.csv"), DOWNLOAD_FIELDS, "name") as log:
        todo = []
        for item in items:
            done = None if overwrite else _already_downloaded(
                item, out_dir / item.name, log.get(item.name), max_pixels)
            if done:
                log.add(done)
                rows.append(done)
            else:
                todo.append(item)
        bar = tqdm(total=len(items), initial=len(rows), desc="download", unit="file",
                   disable=not progress)
        with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
            futures = [pool.submit(download_one, item, out_dir, timeout=timeout, retries=retries,
                                   limiter=limiter, max_pixels=max_pixels, backoff=backoff)
                       for item in todo]
            for future in as_completed(futures):
                row = future.result()
                log.add(row)
                rows.append(row)
                bar.update(1)
                bar.set_postfix(dict(Counter(r["status"] for r in rows)), refresh=False)
        bar.close()
    order = {item.name: i for i, item in enumerate(items)}
    rows.sort(key=lambda r: order[r["name"]])
    return BatchReport(rows, log.path)


# ----------------------------------------------------------------------------- rejects

def read_rejects(path: str | os.PathLike) -> set[str]:
    """Names in a rejects file (one per line; blank lines and ``#`` comments ignored)."""
    path = Path(path)
    if not path.exists():
        return set()
    return {line.strip() for line in path.read_text(encoding="utf-8").splitlines()
            if line.strip() and not line.strip().startswith("#")}


def write_rejects(path: str | os.PathLike, names: Iterable[str]) -> Path:
    """Write the rejects file atomically: sorted file names, one per line."""
    names = sorted(set(names))
    return write_text_atomic(path, "".join(n + "\n" for n in names))


def _dataset_files(source) -> list[Path]:
    """Image files of a folder, of a manifest CSV (rows ok/exists: their outputs) or a list."""
    if isinstance(source, (str, os.PathLike)):
        source = Path(source)
        if not source.exists():
            raise DrfhqError(f"{source}: no such folder or file; pass a folder of aligned "
                             "images (`drfhq align ... --out FOLDER`) or its manifest.csv")
        try:
            if source.is_dir():
                return list_images(source)
            if source.suffix.lower() == ".csv":
                rows = read_manifest(source, "file").values()
                return sorted(Path(r["output"]) for r in rows
                              if r.get("status") in ("ok", "exists") and r.get("output"))
        except (OSError, UnicodeDecodeError, csv.Error) as err:
            reason = getattr(err, "strerror", None) or str(err)
            raise DrfhqError(f"{source}: cannot be read ({reason}); check that it is a folder "
                             "of images or an alignment manifest.csv you may read") from None
        raise DrfhqError(f"{source}: expected a folder of images or a manifest .csv")
    return [Path(p) for p in source]


def _is_rejected(path: Path, rejects: set[str]) -> bool:
    return path.name in rejects or path.stem in rejects or str(path) in rejects


@dataclass
class RejectsResult:
    kept: list[Path]
    rejected: list[Path]
    unknown: list[str] = field(default_factory=list)  # names in the list matching no file
    moved_to: Path | None = None


def apply_rejects(source, rejects_file: str | os.PathLike,
                  move_to: str | os.PathLike | None = None,
                  kept_list: str | os.PathLike | None = None) -> RejectsResult:
    """Apply a rejects list to a folder of aligned images (or an alignment manifest).

    Returns the kept and rejected files. With ``move_to``, rejected images (and their
    ``.align.json`` sidecars) are moved into that folder (never over an existing file); with
    ``kept_list``, the kept paths are written there, one per line (atomically).
    """
    files = _dataset_files(source)
    rejects = read_rejects(rejects_file)
    rejected = [f for f in files if _is_rejected(f, rejects)]
    kept = [f for f in files if not _is_rejected(f, rejects)]
    matched = {n for f in rejected for n in (f.name, f.stem, str(f))}
    unknown = sorted(rejects - matched)
    if move_to is not None:
        move_to = Path(move_to)
        move_to.mkdir(parents=True, exist_ok=True)
        for f in rejected:
            for path in (f, f.with_name(f.stem + SIDECAR_SUFFIX)):
                target = move_to / path.name
                if path.exists() and not target.exists():
                    shutil.move(str(path), str(target))
    if kept_list is not None:
        write_text_atomic(kept_list, "".join(f"{p}\n" for p in kept))
    return RejectsResult(kept, rejected, unknown, move_to)


# ----------------------------------------------------------------------------- training zip

def archive_name(index: int) -> str:
    """File name of image ``index`` in a StyleGAN2-ADA dataset (as its dataset_tool names)."""
    return f"{index // 1000:05d}/img{index:08d}.png"


def _square(image: Image.Image) -> Image.Image:
    """Centre crop to a square (aligned faces are square already)."""
    side = min(image.size)
    left, top = (image.width - side) // 2, (image.height - side) // 2
    return image.crop((left, top, left + side, top + side))


def pack_dataset(source, out_zip: str | os.PathLike, resolution: int = 1024, *,
                 rejects: str | os.PathLike | Iterable[str] | None = None,
                 compress_level: int = 6, max_pixels: int | None = DEFAULT_MAX_PIXELS,
                 progress: bool = True):
    """Write a StyleGAN2-ADA dataset zip of the images of ``source`` (folder, alignment
    manifest or list of files), minus ``rejects`` (a rejects file or names).

    Every image becomes RGB, square (centre crop when it is not) and ``resolution`` pixels
    (Lanczos), stored as ``00000/img00000000.png``...; ``dataset.json`` holds
    ``{"labels": null}`` plus, under "drfhq", the resolution and each entry's source file.
    The zip is written to a temporary file and renamed. Unreadable images are skipped and
    reported (the report's rows, status 'bad_image'), never stop the job.
    """
    from tqdm.auto import tqdm


    if resolution < 4 or resolution & (resolution - 1):
        raise DrfhqError(f"resolution must be a power of two (StyleGAN2), not {resolution}")
    files = _dataset_files(source)
    if rejects is not None:
        names = read_rejects(rejects) if isinstance(rejects, (str, os.PathLike)) else set(rejects)
        files = [f for f in files if not _is_rejected(f, names)]
    if not files:
        raise DrfhqError(f"{source}: no images to pack")
    rows, sources = [], {}
    out_zip = Path(out_zip)
    with atomic_path(out_zip) as tmp, zipfile.ZipFile(tmp, "w", zipfile.ZIP_STORED) as archive:
        for file in tqdm(files, desc="pack", unit="img", disable=not progress):
            try:
                image = load_image(file, max_pixels=max_pixels)
            except BadImageError as err:
                rows.append({"file": str(file), "status": "bad_image", "reason": str(err)})
                continue
            reason = "" if image.width == image.height else "not square: centre-cropped"
            image = _square(image)
            if image.size != (resolution, resolution):
                image = image.resize((resolution, resolution), Image.Resampling.LANCZOS)
            name = archive_name(len(sources))
            buffer = io.BytesIO()
            image.save(buffer, format="PNG", compress_level=compress_level)
            archive.writestr(name, buffer.getvalue())
            sources[name] = file.name
            rows.append({"file": str(file), "status": "ok", "reason": reason, "output": name})
        if not sources:
            raise DrfhqError(f"{source}: none of the {len(files)} images could be read")
        meta = {"labels": None, "drfhq": {"resolution": resolution, "sources": sources}}
        archive.writestr("dataset.json", json.dumps(meta, indent=1))
    return BatchReport(rows, None)


class ImageDataset(torch.utils.data.Dataset):
    """Images of a dataset zip or folder; ``dataset[i]`` is a float32 [3, R, R] tensor in
    [-1, 1] (a DataLoader stacks them into the library's [N, 3, R, R]). ``iter(dataset)``
    yields the same tensors; ``batches(n)`` yields [n, 3, R, R] batches."""

    def __init__(self, path: str | os.PathLike, resolution: int | None = None):
        self.path = Path(path)
        self._zip: zipfile.ZipFile | None = None
        if self.path.is_dir():
            self.names = sorted(str(p.relative_to(self.path)) for p in self.path.rglob("*")
                                if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
        elif zipfile.is_zipfile(self.path):
            self.names = sorted(n for n in self._archive().namelist()
                                if Path(n).suffix.lower() in IMAGE_SUFFIXES)
        else:
            raise DrfhqError(f"{self.path}: not a dataset zip or folder")
        if not self.names:
            raise DrfhqError(f"{self.path}: contains no images")
        first = self._open(0)
        if first.width != first.height:
            raise BadImageError(f"{self.path}: {self.names[0]} is {first.width}x"
                                f"{first.height}; dataset images must be square")
        if resolution is not None and first.width != resolution:
            raise BadImageError(f"{self.path}: images are {first.width} px, not the requested "
                                f"{resolution}; pack it again with --resolution {resolution}")
        self.resolution = first.width
        self.labels = self._labels()

    def _archive(self) -> zipfile.ZipFile:
        if self._zip is None:  # opened lazily, so each DataLoader worker opens its own
            self._zip = zipfile.ZipFile(self.path)
        return self._zip

    def __getstate__(self):
        return {**self.__dict__, "_zip": None}

    def _read(self, name: str) -> bytes:
        if self.path.is_dir():
            return (self.path / name).read_bytes()
        return self._archive().read(name)

    def _labels(self):
        try:
            meta = json.loads(self._read("dataset.json"))
        except (KeyError, FileNotFoundError, json.JSONDecodeError):
            return None
        return meta.get("labels")

    def _open(self, index: int) -> Image.Image:
        name = self.names[index]
        return load_image(self._read(name), name=f"{self.path}:{name}")

    def __len__(self) -> int:
        return len(self.names)

    def __getitem__(self, index: int) -> torch.Tensor:
        if not -len(self) <= index < len(self):
            raise IndexError(index)
        image = self._open(index)
        if image.size != (self.resolution, self.resolution):
            raise BadImageError(f"{self.path}:{self.names[index]} is {image.width}x"
                                f"{image.height}, not {self.resolution}; the dataset mixes "
                                "resolutions, pack it again")
        return pil_to_tensor(image)[0]

    def __iter__(self) -> Iterator[torch.Tensor]:
        for i in range(len(self)):
            yield self[i]

    def batches(self, batch_size: int) -> Iterator[torch.Tensor]:
        for start in range(0, len(self), batch_size):
            yield torch.stack([self[i] for i in range(start, min(start + batch_size, len(self)))])


def open_dataset(path: str | os.PathLike, resolution: int | None = None) -> ImageDataset:
    """Open a dataset zip (``pack_dataset``'s or StyleGAN2-ADA's) or folder of images."""
    return ImageDataset(path, resolution)


# ----------------------------------------------------------------------------- demo inputs

def write_demo_inputs(folder: str | os.PathLike,
                      photos: str | os.PathLike | None = None) -> list[Path]:
    """Put a small set of inputs for trying the pipeline into ``folder``: the MIT-licensed test
    photographs of the checkout (``tests/data``), scikit-image's astronaut when installed, and
    one example of each kind of bad input (a text file named .png, a truncated JPEG, a picture
    without a face), so every status of the manifest shows up."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    photos = Path(photos) if photos else Path(__file__).resolve().parents[2] / "tests" / "data"
    written = []
    for photo in sorted(photos.glob("*.jpg")) if photos.is_dir() else []:
        shutil.copyfile(photo, folder / photo.name)
        written.append(folder / photo.name)
    try:
        from skimage import data as skdata

        Image.fromarray(skdata.astronaut()).save(folder / "astronaut.png")
        written.append(folder / "astronaut.png")
    except ImportError:
        pass
    (folder / "not_an_image.png").write_text("<html>404 Not Found</html>\n")
    written.append(folder / "not_an_image.png")
    noise = np.random.default_rng(0).integers(0, 256, (160, 160, 3), dtype=np.uint8)
    Image.fromarray(noise).save(folder / "no_face.png")
    written.append(folder / "no_face.png")
    buffer = io.BytesIO()
    Image.fromarray(noise).save(buffer, format="JPEG")
    (folder / "truncated.jpg").write_bytes(buffer.getvalue()[: len(buffer.getvalue()) // 2])
    written.append(folder / "truncated.jpg")
    return written
