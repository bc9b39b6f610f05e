"""Native pSp and e4e encoders (Fig. 7's encoder baselines, Sec. 5.2.1), read weights-only
from their authors' checkpoints.

pSp (Richardson et al. 2021, eladrich/pixel2style2pixel) and e4e (Tov et al. 2021,
omertov/encoder4editing) share one network layout: an IR-SE50 backbone (ArcFace's improved
residual units with squeeze-and-excitation), a small FPN (``latlayer1``/``latlayer2``, bilinear
upsample-and-add) and one ``GradualStyleBlock`` head per W+ layer (``styles.i``: stride-2 3x3
convs with LeakyReLU down to 1x1, then an equalised linear layer). Heads 0-2 read the coarsest
map, 3-6 the middle one, 7-17 the finest. pSp's heads give the W+ rows directly; e4e's head 0
gives one w for every row and the other heads add offsets to it.

A checkpoint of either (``psp_ffhq_encode.pt``, ``e4e_ffhq_encode.pt``) is a torch file
``{'state_dict': {'encoder.*', 'decoder.*'}, 'latent_avg', 'opts'}``; ``decoder.*`` is the
StyleGAN2 FFHQ config-f generator in rosinality's naming, which the encoder was trained with, so
its W+ is rendered by that decoder (``networks.rosinality``). The official inference resizes
an aligned face to 256 x 256 (bilinear), scales it to [-1, 1], and adds ``latent_avg`` to the
codes when ``opts['start_from_latent_avg']`` is true (both repositories' ``pSp.forward``).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn

from drfhq_lib.errors import CheckpointFormatError
from drfhq_lib.files import atomic_path, sha256_file
from drfhq_lib.nets.identity import BottleneckIR
from drfhq_lib.data.images import pil_to_tensor
from drfhq_lib.nets.checkpoint import load_state_strict
from drfhq_lib.nets.rosinality import generator_from_rosinality
from drfhq_lib.nets.state_dict import load_weights_only
from drfhq_lib.nets.weights import Resolved

INPUT_SIZE = 256  # the official transforms: Resize((256, 256)), ToTensor, Normalize(0.5, 0.5)
IR_SE50 = ((64, 64, 3), (64, 128, 4), (128, 256, 14), (256, 512, 3))  # (in, depth, units)
COARSE, MIDDLE = 3, 7  # heads [0, 3) read the coarsest map, [3, 7) the middle, the rest the finest
SE_REDUCTION = 16
MEAN_LATENT_SAMPLES = 10_000  # e4e's mean_latent(10000) when a checkpoint has no latent_avg

KIND_BY_TYPE = {"GradualStyleEncoder": "psp", "Encoder4Editing": "e4e"}
CHECKPOINT_NAMES = {"psp": "psp_ffhq_encode.pt", "e4e": "e4e_ffhq_encode.pt"}


# ----------------------------------------------------------------------------- building blocks

class SEModule(nn.Module):
    """Squeeze-and-excitation: channel gates from the global mean (1x1 convs, no bias)."""

    def __init__(self, channels: int, reduction: int = SE_REDUCTION):
        super().__init__()
        self.avg_pool = nn.AdaptiveAvgPool2d(1)
        self.fc1 = nn.Conv2d(channels, channels // reduction, 1, bias=False)
        self.relu = nn.ReLU(inplace=True)
        self.fc2 = nn.Conv2d(channels // reduction, channels, 1, bias=False)
        self.sigmoid = nn.Sigmoid()

    def forward(self, x):
        gate = self.sigmoid(self.fc2(self.relu(self.fc1(self.avg_pool(x)))))
        return x * gate


class BottleneckIRSE(BottleneckIR):
    """The IR unit with an SE gate as the residual branch's last layer (``res_layer.5``)."""

    def __init__(self, in_channel: int, depth: int, stride: int):
        super().__init__(in_channel, depth, stride)
        self.res_layer.append(SEModule(depth))


class EqualLinear(nn.Module):
    """rosinality's equalised linear layer at lr_mul 1: weight scaled by 1/sqrt(fan_in)."""

    def __init__(self, in_dim: int, out_dim: int):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(out_dim, in_dim))
        self.bias = nn.Parameter(torch.zeros(out_dim))
        self.scale = 1 / math.sqrt(in_dim)

    def forward(self, x):
        return F.linear(x, self.weight * self.scale, self.bias)


class GradualStyleBlock(nn.Module):
    """map2style: log2(spatial) stride-2 convs (LeakyReLU 0.01) down to 1x1, then a linear.

    ``hidden``: the convs' width (official: ``out_c``); a narrower one makes the small encoders
    that train on a CPU, the linear then maps ``hidden`` to ``out_c``."""

    def __init__(self, in_c: int, out_c: int, spatial: int, hidden: int | None = None):
        super().__init__()
        hidden = hidden or out_c
        layers: list[nn.Module] = []
        for i in range(int(math.log2(spatial))):
            layers += [nn.Conv2d(in_c if i == 0 else hidden, hidden, 3, 2, 1), nn.LeakyReLU()]
        self.convs = nn.Sequential(*layers)
        # a head on a 1x1 map has no convs: its linear sees the map's own channels
        self.linear = EqualLinear(hidden if layers else in_c, out_c)
        self.out_c = out_c

    def forward(self, x):
        x = self.convs(x)
        if x.shape[-2:] != (1, 1):  # the official view(-1, C) would mix images silently
            raise ValueError(f"a style head ends at {tuple(x.shape[-2:])}, not 1x1: the input "
                             "is larger than the encoder's input_size")
        return self.linear(x.flatten(1))


def upsample_add(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """FPN merge: ``x`` resized bilinearly (align_corners=True) to ``y``'s size, plus ``y``."""
    return F.interpolate(x, size=y.shape[-2:], mode="bilinear", align_corners=True) + y


# ----------------------------------------------------------------------------- encoders

def head_spatial(input_size: int) -> tuple[int, int, int]:
    """Sizes of the maps the coarse, middle and fine heads read: the ends of stages 4, 3 and 2
    (each stage halves the map), (16, 32, 64) for the official 256 px input."""
    if input_size < 16 or input_size & (input_size - 1):
        raise ValueError(f"input_size {input_size}: must be a power of two >= 16")
    return input_size // 16, input_size // 8, input_size // 4


class StyleEncoder(nn.Module):
    """IR-SE backbone + FPN + one head per W+ row; ``forward`` returns the heads' codes
    ``[N, num_ws, w_dim]`` (before ``latent_avg``). Defaults are the official IR-SE50 with 18
    heads of 512 for 256 px faces; ``stages`` ((in, depth, units) per stage), ``w_dim``,
    ``input_size`` (the face size, a power of two) and ``head_channels`` (the heads' conv
    width, default ``w_dim``) shrink it for tests and for encoders trained on a CPU."""

    kind = ""

    def __init__(self, num_ws: int = 18, w_dim: int = 512,
                 stages: tuple[tuple[int, int, int], ...] = IR_SE50,
                 input_size: int = INPUT_SIZE, head_channels: int | None = None):
        super().__init__()
        if len(stages) != 4:
            raise ValueError(f"the FPN taps the ends of 4 stages, got {len(stages)}")
        spatial = head_spatial(input_size)
        first, top = stages[0][0], stages[-1][1]
        self.input_layer = nn.Sequential(nn.Conv2d(3, first, 3, 1, 1, bias=False),
                                         nn.BatchNorm2d(first), nn.PReLU(first))
        units = []
        for in_channel, depth, n in stages:
            units.append(BottleneckIRSE(in_channel, depth, 2))
            units += [BottleneckIRSE(depth, depth, 1) for _ in range(n - 1)]
        self.body = nn.Sequential(*units)
        ends = [sum(s[2] for s in stages[:k + 1]) - 1 for k in range(4)]
        self.taps = (ends[1], ends[2], ends[3])  # 6, 20, 23 in IR-SE50: c1, c2, c3
        self.styles = nn.ModuleList(
            GradualStyleBlock(top, w_dim, spatial[(i >= COARSE) + (i >= MIDDLE)], head_channels)
            for i in range(num_ws))
        self.latlayer1 = nn.Conv2d(stages[2][1], top, 1)
        self.latlayer2 = nn.Conv2d(stages[1][1], top, 1)
        self.num_ws, self.w_dim, self.input_size = num_ws, w_dim, input_size
        self.init_kwargs = {"num_ws": num_ws, "w_dim": w_dim,
                            "stages": [list(s) for s in stages], "input_size": input_size,
                            "head_channels": head_channels}

    def pyramid(self, x: torch.Tensor) -> list[torch.Tensor]:
        """The map each head reads: c3 (coarse), c3 + lateral c2 (middle), + lateral c1 (fine)."""
        x = self.input_layer(x)
        taps = {}
        for i, unit in enumerate(self.body):
            x = unit(x)
            if i in self.taps:
                taps[i] = x
        c1, c2, c3 = (taps[i] for i in self.taps)
        p2 = upsample_add(c3, self.latlayer1(c2))
        p1 = upsample_add(p2, self.latlayer2(c1))
        return [c3, p2, p1]

    def head_outputs(self, x: torch.Tensor) -> torch.Tensor:
        maps = self.pyramid(x)
        return torch.stack([head(maps[(i >= COARSE) + (i >= MIDDLE)])
                            for i, head in enumerate(self.styles)], dim=1)


class GradualStyleEncoder(StyleEncoder):
    """pSp: head i gives W+ row i."""

    kind = "psp"

    def forward(self, x):
        return self.head_outputs(x)


class Encoder4Editing(StyleEncoder):
    """e4e at its inference stage: every row is head 0's w, rows 1.. plus their head's delta."""

    kind = "e4e"

    def forward(self, x):
        codes = self.head_outputs(x)
        w0 = codes[:, :1]
        return torch.cat([w0, w0 + codes[:, 1:]], dim=1)


ENCODER_CLASSES = {"psp": GradualStyleEncoder, "e4e": Encoder4Editing}


# ----------------------------------------------------------------------------- checkpoints

@dataclass
class EncoderCheckpoint:
    """A loaded pSp/e4e checkpoint: encoder, its decoder (our Generator, rosinality-converted),
    and the ``latent_avg`` the official forward adds (None where opts say not to)."""

    path: Path
    kind: str  # "psp" or "e4e"
    encoder: StyleEncoder
    decoder: nn.Module
    latent_avg: torch.Tensor | None  # [num_ws, w_dim]
    opts: dict = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    @property
    def device(self) -> torch.device:
        return next(self.encoder.parameters()).device

    @torch.no_grad()
    def ws(self, images: torch.Tensor) -> torch.Tensor:
        """W+ ``[N, num_ws, w_dim]`` of preprocessed images ``[N, 3, 256, 256]`` in [-1, 1],
        in the decoder's W space."""
        codes = self.encoder(images.to(self.device, torch.float32))
        return codes if self.latent_avg is None else codes + self.latent_avg[None]


def encoder_input(image: Image.Image, device: torch.device | str = "cpu") -> torch.Tensor:
    """An aligned face as the official inference feeds it: bilinear 256 x 256 (PIL, as
    torchvision's Resize on a PIL image), RGB scaled to [-1, 1]; ``[1, 3, 256, 256]``."""
    resized = image.convert("RGB").resize((INPUT_SIZE, INPUT_SIZE), Image.Resampling.BILINEAR)
    return pil_to_tensor(resized, device)


def read_checkpoint(path: str | Path) -> dict:
    """The checkpoint dict, read by torch's weights-only loader: a file that references code
    or objects other than tensors and plain data is refused without running anything."""
    path = Path(path)
    data = load_weights_only(path, "pSp/e4e checkpoint",
                             "give the official pSp/e4e file "
                             f"({' or '.join(CHECKPOINT_NAMES.values())})")
    if not isinstance(data, dict) or not isinstance(data.get("state_dict"), dict):
        found = sorted(map(str, data))[:5] if isinstance(data, dict) else [type(data).__name__]
        raise CheckpointFormatError(f"{path}: not a pSp/e4e checkpoint: expected a dict with "
                                    f"'state_dict' (and 'latent_avg', 'opts'), found {found}")
    return data


def _part(state: dict, prefix: str) -> dict:
    return {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}


def checkpoint_kind(path: Path, opts: dict, expected: str | None) -> str:
    """"psp" or "e4e", from ``opts['encoder_type']`` (both share every tensor name, so the
    names cannot tell), checked against ``expected`` where the caller knows it."""
    encoder_type = opts.get("encoder_type")
    if encoder_type is None:
        if expected is None:
            raise CheckpointFormatError(f"{path}: no opts['encoder_type'] to tell pSp from e4e; "
                                        "pass kind='psp' or kind='e4e'")
        return expected
    kind = KIND_BY_TYPE.get(encoder_type)
    if kind is None:
        raise CheckpointFormatError(f"{path}: encoder_type {encoder_type!r} is not supported; "
                                    f"expected one of {', '.join(KIND_BY_TYPE)}")
    if expected is not None and kind != expected:
        raise CheckpointFormatError(f"{path}: a {encoder_type} ({kind}) checkpoint, but a "
                                    f"{expected} one was asked for; give "
                                    f"{CHECKPOINT_NAMES[expected]}")
    return kind


def encoder_layout(path: Path, state: dict) -> dict:
    """StyleEncoder kwargs from the tensor shapes of ``encoder.*``: heads, width, stages, and
    the input size (head 0 has log2(input_size / 16) stride-2 convs) and head width."""
    try:
        num_ws = len({k.split(".")[1] for k in state if k.startswith("styles.")})
        w_dim = state["styles.0.linear.weight"].shape[0]
        conv0 = [v for k, v in state.items() if k.startswith("styles.")
                 and k.endswith(".convs.0.weight")]
        hidden = conv0[0].shape[0] if conv0 else w_dim
        head0_convs = len([k for k in state
                           if k.startswith("styles.0.convs.") and k.endswith(".weight")])
        if state["input_layer.0.weight"].shape[1] != 3:
            raise CheckpointFormatError(f"{path}: the encoder takes "
                                        f"{state['input_layer.0.weight'].shape[1]} input "
                                        "channels, not RGB: not an image-inversion checkpoint")
        convs = [state[f"body.{i}.res_layer.1.weight"]
                 for i in range(len({k.split(".")[1] for k in state if k.startswith("body.")}))]
    except KeyError as err:
        raise CheckpointFormatError(f"{path}: encoder lacks {err.args[0]!r}; not a pSp/e4e "
                                    "checkpoint") from None
    stages: list[list[int]] = []
    for i, weight in enumerate(convs):  # a stage starts at unit 0 and where the width changes
        depth, in_channel = weight.shape[:2]
        if i == 0 or in_channel != depth:
            stages.append([in_channel, depth, 0])
        stages[-1][2] += 1
    if len(stages) != 4:
        raise CheckpointFormatError(f"{path}: the encoder body has {len(stages)} stages, not "
                                    "the 4 of IR-SE50")
    return {"num_ws": num_ws, "w_dim": w_dim, "stages": tuple(map(tuple, stages)),
            "input_size": 16 * 2 ** head0_convs,
            "head_channels": None if hidden == w_dim else hidden}


def _latent_avg(path: Path, data: dict, opts: dict, decoder, num_ws: int, notes: list[str]):
    """What the official forward adds to the codes: ``latent_avg`` as ``[num_ws, w_dim]``
    when ``opts['start_from_latent_avg']``, else None."""
    if not opts.get("start_from_latent_avg", False):
        notes.append("opts start_from_latent_avg false: codes used as they are")
        return None
    value = data.get("latent_avg")
    if value is None:  # e4e's fallback: the mean w of 10,000 z
        gen = torch.Generator().manual_seed(0)
        z = torch.randn(MEAN_LATENT_SAMPLES, decoder.z_dim, generator=gen)
        with torch.no_grad():
            value = decoder.mapping(z, None)[:, 0].mean(0)
        notes.append(f"no latent_avg in the checkpoint: mean w of {MEAN_LATENT_SAMPLES} z "
                     "(seed 0), as e4e's mean_latent")
    if not isinstance(value, torch.Tensor) or value.shape[-1] != decoder.w_dim:
        raise CheckpointFormatError(f"{path}: latent_avg is not a tensor [.., {decoder.w_dim}]")
    value = value.float().reshape(-1, decoder.w_dim)
    if len(value) not in (1, num_ws):
        raise CheckpointFormatError(f"{path}: latent_avg has {len(value)} rows, the encoder "
                                    f"{num_ws}")
    return value.expand(num_ws, -1).clone()


def load_encoder(path: str | Path, device: torch.device | str = "cpu",
                 kind: str | None = None) -> EncoderCheckpoint:
    """A pSp or e4e checkpoint as an :class:`EncoderCheckpoint`, every tensor loaded strictly.

    ``kind`` ("psp"/"e4e"): what the caller expects; needed only when the file has no opts.
    """
    path = Path(path)
    data = read_checkpoint(path)
    opts = data.get("opts") if isinstance(data.get("opts"), dict) else {}
    kind = checkpoint_kind(path, opts, kind)
    enc_state = _part(data["state_dict"], "encoder.")
    dec_state = _part(data["state_dict"], "decoder.")
    if not enc_state or not dec_state:
        raise CheckpointFormatError(f"{path}: state_dict lacks the "
                                    f"{'encoder.*' if not enc_state else 'decoder.*'} tensors; "
                                    "not a pSp/e4e checkpoint")
    encoder = ENCODER_CLASSES[kind](**encoder_layout(path, enc_state))
    load_state_strict(path, f"{kind} encoder", encoder, enc_state)
    try:
        decoder, converted = generator_from_rosinality(dec_state)
    except CheckpointFormatError as err:
        raise CheckpointFormatError(f"{path}: decoder: {err}") from None
    load_state_strict(path, "decoder", decoder, converted)
    if (decoder.num_ws, decoder.w_dim) != (encoder.num_ws, encoder.w_dim):
        raise CheckpointFormatError(f"{path}: the encoder gives {encoder.num_ws} x "
                                    f"{encoder.w_dim} codes, the decoder takes {decoder.num_ws} "
                                    f"x {decoder.w_dim}")
    notes: list[str] = []
    latent_avg = _latent_avg(path, data, opts, decoder, encoder.num_ws, notes)
    if latent_avg is not None:  # the decoder's own truncation centre, as rosinality keeps it
        decoder.mapping.w_avg.copy_(latent_avg[0])
    device = torch.device(device)
    return EncoderCheckpoint(path, kind, encoder.eval().requires_grad_(False).to(device),
                             decoder.eval().requires_grad_(False).to(device),
                             None if latent_avg is None else latent_avg.to(device), opts, notes)


def checkpoint_record(path: str | Path, kind: str) -> Resolved:
    """The checkpoint as a network of a run's provenance (named by its file and sha256)."""
    path = Path(path)
    return Resolved(f"{kind}-encoder", "official", f"{kind} encoder + decoder ({path.name})",
                    path, sha256_file(path))


def save_ws(path: str | Path, ws: torch.Tensor, **extra) -> None:
    """One image's W+ ``[num_ws, w_dim]`` as ``.npz`` (array ``ws``, plus JSON ``extra``),
    written atomically; ``inversion.read_external_latent`` reads it back."""
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as f:
            np.savez(f, ws=ws.detach().cpu().numpy().astype(np.float32),
                     extra=np.array(json.dumps(extra, default=str)))


# ----------------------------------------------------------------------------- trained here

TRAINED_FORMAT = "drfhq-encoder/1"


@dataclass
class TrainedEncoder:
    """An encoder ``drfhq encoder train`` made for one generator: W+ = codes + ``latent_avg``
    (the generator's w_avg, as pSp's start_from_latent_avg). ``generator`` records the network
    it was trained for (label, sha256, resolution, num_ws, w_dim); ``extra`` the training's
    summary (kimg, losses)."""

    path: Path | None
    kind: str
    encoder: StyleEncoder
    latent_avg: torch.Tensor  # [num_ws, w_dim]
    generator: dict = field(default_factory=dict)
    extra: dict = field(default_factory=dict)

    @property
    def device(self) -> torch.device:
        return self.latent_avg.device

    @property
    def input_size(self) -> int:
        return self.encoder.input_size

    @torch.no_grad()
    def ws(self, images: torch.Tensor, batch: int = 32) -> torch.Tensor:
        """W+ ``[N, num_ws, w_dim]`` of aligned faces ``[N, 3, H, W]`` in [-1, 1] (any size:
        resized to the encoder's input, area when shrinking)."""
        from drfhq_lib.nets.perceptual import resize

        x = resize(images.to(self.device, torch.float32), self.input_size)
        codes = torch.cat([self.encoder(chunk) for chunk in x.split(batch)])
        return codes + self.latent_avg[None]


def trained_encoder_state(encoder: StyleEncoder, latent_avg: torch.Tensor,
                          half: bool = False) -> dict[str, torch.Tensor]:
    """The tensors of a trained-encoder file: ``encoder/<name>`` and ``latent_avg``; ``half``
    rounds the weights to fp16 (read back as fp32). BatchNorm's running statistics stay fp32:
    a variance past fp16's 65504 (the mini world's encoder has 72903 in its last block) would
    turn into inf and zero its channel."""
    def cast(name: str, t: torch.Tensor) -> torch.Tensor:
        t = t.detach().cpu().clone(memory_format=torch.contiguous_format)
        if half and t.is_floating_point() and not name.split(".")[-1].startswith("running_"):
            return t.half()
        return t
    tensors = {f"encoder/{k}": cast(k, v) for k, v in encoder.state_dict().items()}
    tensors["latent_avg"] = cast("latent_avg", latent_avg.float())
    return tensors


def save_trained_encoder(path: str | Path, encoder: StyleEncoder, latent_avg: torch.Tensor,
                         generator: dict, extra: dict | None = None, half: bool = False) -> Path:
    """Write a trained encoder as safetensors (tensors above; kind, init kwargs, the generator
    record and ``extra`` in the header), atomically."""
    from safetensors.torch import save_file

    metadata = {"format": TRAINED_FORMAT, "kind": encoder.kind,
                "init_kwargs": json.dumps(encoder.init_kwargs),
                "generator": json.dumps(generator, default=str),
                "extra": json.dumps(extra or {}, default=str)}
    with atomic_path(path) as tmp:
        save_file(trained_encoder_state(encoder, latent_avg, half), str(tmp), metadata=metadata)
    return Path(path)


def load_trained_encoder(path: str | Path, device: torch.device | str = "cpu"
                         ) -> TrainedEncoder:
    """A file of :func:`save_trained_encoder`, every tensor loaded strictly, in eval mode."""
    from safetensors import safe_open

    path = Path(path)
    if not path.is_file():
        raise CheckpointFormatError(f"{path}: no such encoder file; train one with `drfhq "
                                    "encoder train --generator NET --out DIR` (it writes "
                                    "DIR/encoder.safetensors)")
    try:
        with safe_open(str(path), framework="pt", device="cpu") as f:
            meta = f.metadata() or {}
            tensors = {key: f.get_tensor(key) for key in f.keys()}
    except Exception as err:  # noqa: BLE001 - truncated or not safetensors
        raise CheckpointFormatError(f"{path}: not a readable encoder file (truncated, or not "
                                    f"safetensors?): {err}; train it again") from None
    if meta.get("format") != TRAINED_FORMAT:
        raise CheckpointFormatError(f"{path}: not a drfhq encoder file (format "
                                    f"{meta.get('format')!r}); official pSp/e4e checkpoints "
                                    "are read by load_encoder, trained ones come from `drfhq "
                                    "encoder train`")
    try:
        kind = meta["kind"]
        kwargs = json.loads(meta["init_kwargs"])
        kwargs["stages"] = tuple(map(tuple, kwargs["stages"]))
        encoder = ENCODER_CLASSES[kind](**kwargs)
        generator = json.loads(meta.get("generator", "{}"))
        extra = json.loads(meta.get("extra", "{}"))
    except (KeyError, ValueError, TypeError) as err:
        raise CheckpointFormatError(f"{path}: damaged encoder metadata ({err}); train it "
                                    "again") from None
    state = {k[len("encoder/"):]: v.float() if v.is_floating_point() else v
             for k, v in tensors.items() if k.startswith("encoder/")}
    load_state_strict(path, f"{kind} encoder", encoder, state)
    latent_avg = tensors.get("latent_avg")
    if latent_avg is None or tuple(latent_avg.shape) != (encoder.num_ws, encoder.w_dim):
        raise CheckpointFormatError(f"{path}: latent_avg missing or not [{encoder.num_ws}, "
                                    f"{encoder.w_dim}]; train it again")
    device = torch.device(device)
    return TrainedEncoder(path, kind, encoder.eval().requires_grad_(False).to(device),
                          latent_avg.float().to(device), generator, extra)
