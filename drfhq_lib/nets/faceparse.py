"""Face mask of the post-processing (Sec. 8): the union of skin, brows, eyes, eyeglasses, ears,
nose, mouth, lips and hair.

Official: zllrunning/face-parsing.PyTorch's BiSeNet (19 CelebAMask-HQ classes, ResNet18 context
path, ``79999_iter.pth``), built with the official parameter names; its ResNet18 is NOT
initialised from the torchvision model zoo as the original does (that downloads), the user's
checkpoint supplies every weight. Input: RGB resized to 512, ImageNet-normalised.

Substitute ``mask[dlib-68-hull]``: the convex hull of the dlib 68 landmarks plus the brows lifted
over the forehead. It has no hair and no ears, which the label makes visible.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from drfhq_lib.data import landmarks
from drfhq_lib.nets import weights
from drfhq_lib.errors import NoFaceError
from drfhq_lib.data.images import tensor_to_uint8
from drfhq_lib.nets.weights import Prefer, Resolved

# CelebAMask-HQ labels in zllrunning's order (prepropess_data.py: position + 1; 0 = background)
CLASSES = ("background", "skin", "l_brow", "r_brow", "l_eye", "r_eye", "eye_g", "l_ear", "r_ear",
           "ear_r", "nose", "mouth", "u_lip", "l_lip", "neck", "neck_l", "cloth", "hair", "hat")
FACE_CLASSES = tuple(CLASSES.index(c) for c in (
    "skin", "l_brow", "r_brow", "l_eye", "r_eye", "eye_g", "l_ear", "r_ear", "nose", "mouth",
    "u_lip", "l_lip", "hair"))  # Sec. 8's list; earrings, neck, cloth and hat stay out
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
PARSE_SIZE = 512

# ----------------------------------------------------------------------------- BiSeNet


class ConvBNReLU(nn.Module):
    def __init__(self, cin: int, cout: int, ks: int = 3, stride: int = 1, padding: int = 1):
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, ks, stride, padding, bias=False)
        self.bn = nn.BatchNorm2d(cout)

    def forward(self, x):
        return F.relu(self.bn(self.conv(x)))


class BasicBlock(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int = 1):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.downsample = None
        if cin != cout or stride != 1:
            self.downsample = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False),
                                            nn.BatchNorm2d(cout))

    def forward(self, x):
        residual = self.bn2(self.conv2(F.relu(self.bn1(self.conv1(x)))))
        shortcut = x if self.downsample is None else self.downsample(x)
        return F.relu(shortcut + residual)


def _layer(cin: int, cout: int, stride: int) -> nn.Sequential:
    return nn.Sequential(BasicBlock(cin, cout, stride), BasicBlock(cout, cout, 1))


class Resnet18(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 64, 7, 2, 3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.maxpool = nn.MaxPool2d(3, 2, 1)
        self.layer1 = _layer(64, 64, 1)
        self.layer2 = _layer(64, 128, 2)
        self.layer3 = _layer(128, 256, 2)
        self.layer4 = _layer(256, 512, 2)

    def forward(self, x):
        x = self.layer1(self.maxpool(F.relu(self.bn1(self.conv1(x)))))
        feat8 = self.layer2(x)
        feat16 = self.layer3(feat8)
        return feat8, feat16, self.layer4(feat16)


class AttentionRefinementModule(nn.Module):
    def __init__(self, cin: int, cout: int):
        super().__init__()
        self.conv = ConvBNReLU(cin, cout)
        self.conv_atten = nn.Conv2d(cout, cout, 1, bias=False)
        self.bn_atten = nn.BatchNorm2d(cout)

    def forward(self, x):
        feat = self.conv(x)
        atten = torch.sigmoid(self.bn_atten(self.conv_atten(F.adaptive_avg_pool2d(feat, 1))))
        return feat * atten


class ContextPath(nn.Module):
    def __init__(self):
        super().__init__()
        self.resnet = Resnet18()
        self.arm16 = AttentionRefinementModule(256, 128)
        self.arm32 = AttentionRefinementModule(512, 128)
        self.conv_head32 = ConvBNReLU(128, 128)
        self.conv_head16 = ConvBNReLU(128, 128)
        self.conv_avg = ConvBNReLU(512, 128, ks=1, padding=0)

    def forward(self, x):
        feat8, feat16, feat32 = self.resnet(x)
        avg = self.conv_avg(F.adaptive_avg_pool2d(feat32, 1))
        feat32_sum = self.arm32(feat32) + F.interpolate(avg, feat32.shape[2:], mode="nearest")
        feat32_up = self.conv_head32(F.interpolate(feat32_sum, feat16.shape[2:], mode="nearest"))
        feat16_sum = self.arm16(feat16) + feat32_up
        feat16_up = self.conv_head16(F.interpolate(feat16_sum, feat8.shape[2:], mode="nearest"))
        return feat8, feat16_up, feat32_up


class FeatureFusionModule(nn.Module):
    def __init__(self, cin: int, cout: int):
        super().__init__()
        self.convblk = ConvBNReLU(cin, cout, ks=1, padding=0)
        self.conv1 = nn.Conv2d(cout, cout // 4, 1, bias=False)
        self.conv2 = nn.Conv2d(cout // 4, cout, 1, bias=False)

    def forward(self, fsp, fcp):
        feat = self.convblk(torch.cat([fsp, fcp], dim=1))
        atten = torch.sigmoid(self.conv2(F.relu(self.conv1(F.adaptive_avg_pool2d(feat, 1)))))
        return feat * atten + feat


class BiSeNetOutput(nn.Module):
    def __init__(self, cin: int, cmid: int, n_classes: int):
        super().__init__()
        self.conv = ConvBNReLU(cin, cmid)
        self.conv_out = nn.Conv2d(cmid, n_classes, 1, bias=False)

    def forward(self, x):
        return self.conv_out(self.conv(x))


class BiSeNet(nn.Module):
    """zllrunning's BiSeNet (spatial path replaced by ResNet's 1/8 feature, as released).
    ``forward`` returns the main logits at input size; the two auxiliary heads exist only so
    the checkpoint loads strictly."""

    def __init__(self, n_classes: int = 19):
        super().__init__()
        self.cp = ContextPath()
        self.ffm = FeatureFusionModule(256, 256)
        self.conv_out = BiSeNetOutput(256, 256, n_classes)
        self.conv_out16 = BiSeNetOutput(128, 64, n_classes)
        self.conv_out32 = BiSeNetOutput(128, 64, n_classes)

    def forward(self, x):
        feat8, feat_cp8, _ = self.cp(x)
        out = self.conv_out(self.ffm(feat8, feat_cp8))
        return F.interpolate(out, x.shape[2:], mode="bilinear", align_corners=True)


def load_bisenet(path: str | Path, device: torch.device | str = "cpu") -> BiSeNet:
    return weights.load_strict(BiSeNet(len(CLASSES)), weights.read_torch_state(path), path,
                               "zllrunning's 19-class BiSeNet (79999_iter.pth)", device)


@torch.no_grad()
def parse(net: BiSeNet, images: torch.Tensor) -> torch.Tensor:
    """Class index per pixel [N, H, W] for images in [-1, 1] (parsed at 512 px)."""
    h, w = images.shape[-2:]
    x = F.interpolate(images, (PARSE_SIZE, PARSE_SIZE), mode="bilinear", align_corners=False,
                      antialias=True)  # as PIL.resize(BILINEAR) in zllrunning's test.py
    mean = torch.tensor(IMAGENET_MEAN, device=x.device).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD, device=x.device).view(1, 3, 1, 1)
    logits = net(((x + 1) / 2 - mean) / std)
    return F.interpolate(logits, (h, w), mode="bilinear", align_corners=False).argmax(1)


def mask_from_labels(labels: torch.Tensor, classes=FACE_CLASSES) -> torch.Tensor:
    """[N, H, W] labels -> [N, 1, H, W] float mask of the union of ``classes``."""
    keep = torch.zeros(len(CLASSES), dtype=torch.bool, device=labels.device)
    keep[list(classes)] = True
    return keep[labels].unsqueeze(1).float()


# ----------------------------------------------------------------------------- landmark substitute

FOREHEAD_LIFT = 0.6  # brow lift, in eye-to-mouth distances: reaches about the hairline


def _convex_hull(points: np.ndarray) -> np.ndarray:
    """Monotone-chain convex hull, counter-clockwise."""
    pts = sorted(map(tuple, points))
    cross = lambda o, a, b: (a[0] - o[0]) * (b[1] - o[1]) - (a[1] - o[1]) * (b[0] - o[0])
    lower, upper = [], []
    for p in pts:
        while len(lower) >= 2 and cross(lower[-2], lower[-1], p) <= 0:
            lower.pop()
        lower.append(p)
    for p in reversed(pts):
        while len(upper) >= 2 and cross(upper[-2], upper[-1], p) <= 0:
            upper.pop()
        upper.append(p)
    return np.array(lower[:-1] + upper[:-1])


def face_polygon(lm68: np.ndarray, lift: float = FOREHEAD_LIFT) -> np.ndarray:
    """Jaw, brows and the brows lifted along the face's up direction (mouth -> eyes)."""
    eyes, mouth = lm68[36:48].mean(0), lm68[48:68].mean(0)
    up = eyes - mouth
    forehead = lm68[17:27] + lift * up
    return _convex_hull(np.concatenate([lm68[0:27], forehead]))


def landmark_mask(lm68: np.ndarray, height: int, width: int) -> np.ndarray:
    """Float mask [H, W] in {0, 1} of the landmark face polygon."""
    from PIL import Image, ImageDraw

    canvas = Image.new("L", (width, height), 0)
    ImageDraw.Draw(canvas).polygon([tuple(p) for p in face_polygon(lm68)], fill=255)
    return np.asarray(canvas, dtype=np.float32) / 255.0


def landmark_masks(images: torch.Tensor) -> torch.Tensor:
    """[N, 1, H, W] masks from dlib's landmarks; NoFaceError names the image without a face."""
    masks = []
    for i, rgb in enumerate(tensor_to_uint8(images)):
        try:
            lm, _ = landmarks.face_landmarks(np.ascontiguousarray(rgb))
        except NoFaceError as err:
            raise NoFaceError(f"face mask of image {i} of the batch: {err}; the landmark mask "
                              "needs a detectable face (try prefer='official', BiSeNet)") from None
        masks.append(torch.from_numpy(landmark_mask(lm, *rgb.shape[:2])))
    return torch.stack(masks).unsqueeze(1).to(images.device)


# ----------------------------------------------------------------------------- registry entry point

def face_mask(images: torch.Tensor, prefer: Prefer = "auto", net: BiSeNet | None = None,
              ) -> tuple[torch.Tensor, Resolved]:
    """Face mask [N, 1, H, W] in [0, 1] of images in [-1, 1], and what produced it."""
    r = weights.resolve("bisenet-faceparse", prefer)
    if r.is_official:
        net = net or load_bisenet(r.path, images.device)
        return mask_from_labels(parse(net, images)), r
    return landmark_masks(images), r
