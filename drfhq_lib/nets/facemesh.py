"""MediaPipe's face mesh landmark network (468 points), read from its TFLite file into torch.

The network is ``face_landmark.tflite`` (MediaPipe Face Mesh, the model of the legacy
``mp.solutions.face_mesh`` without attention), as shipped inside the PyPI wheel of
``mediapipe`` (see the registry entry ``mediapipe-face-mesh`` in
:mod:`drfhq_lib.nets.weights`). It is a small residual MobileNet-style convolution stack;
its TFLite graph uses seven operators only (DEQUANTIZE of float16 constants, CONV_2D,
DEPTHWISE_CONV_2D, PRELU, ADD, MAX_POOL_2D, PAD), which :class:`TFLiteNet` runs in torch with
TensorFlow's padding rules, so no TFLite runtime (and no numpy < 2 pin) is needed.

Input: ``[N, 3, 192, 192]`` RGB in [0, 1] (MediaPipe's ``ImageToTensorCalculator`` range for
this model) of a crop around the face. Output: landmarks ``[N, 468, 3]`` in the crop's pixel
units (x, y; z relative depth) and the face-presence logit ``[N]``.
"""

from __future__ import annotations

import os
from functools import lru_cache

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from drfhq_lib.errors import CheckpointFormatError

INPUT_SIZE = 192
N_POINTS = 468

# TFLite enums (tensorflow/lite/schema/schema.fbs)
_FLOAT32, _FLOAT16, _INT32 = 0, 1, 2
_SAME = 0
_ACTIVATIONS = {0: None, 1: F.relu, 3: F.relu6}
_SUPPORTED = ("DEQUANTIZE", "CONV_2D", "DEPTHWISE_CONV_2D", "PRELU", "ADD", "MAX_POOL_2D", "PAD")


def _tf_same_pad(size: int, kernel: int, stride: int) -> tuple[int, int]:
    """TensorFlow's SAME padding (before, after) along one axis: the extra pixel goes after."""
    total = max((-(-size // stride) - 1) * stride + kernel - size, 0)
    return total // 2, total - total // 2


class TFLiteNet(nn.Module):
    """A TFLite graph of the supported operators, run in torch (NCHW inside).

    ``ops``: list of ``(kind, inputs, outputs, options)`` in graph order; tensors are numbered
    as in the file; constants (weights) are buffers of this module.
    """

    def __init__(self, ops, constants: dict[int, np.ndarray], inputs, outputs):
        super().__init__()
        self.ops = ops
        self.inputs, self.outputs = list(inputs), list(outputs)
        for index, value in constants.items():
            self.register_buffer(f"t{index}", torch.from_numpy(np.array(value, np.float32)))

    def _const(self, index: int) -> torch.Tensor:
        return getattr(self, f"t{index}")

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        values = {self.inputs[0]: x}
        get = lambda i: values[i] if i in values else self._const(i)
        for kind, ins, outs, opt in self.ops:
            if kind == "DEQUANTIZE":
                values[outs[0]] = self._const(ins[0])
                continue
            a = get(ins[0])
            if kind in ("CONV_2D", "DEPTHWISE_CONV_2D"):
                weight = get(ins[1])  # conv: [O, kh, kw, I]; depthwise: [1, kh, kw, C * m]
                bias = get(ins[2]) if len(ins) > 2 and ins[2] >= 0 else None
                if kind == "CONV_2D":
                    weight, groups = weight.permute(0, 3, 1, 2), 1
                else:
                    weight, groups = weight.permute(3, 0, 1, 2), a.shape[1]
                kh, kw = weight.shape[2:]
                if opt["padding"] == _SAME:
                    ph = _tf_same_pad(a.shape[2], kh, opt["stride"][0])
                    pw = _tf_same_pad(a.shape[3], kw, opt["stride"][1])
                    a = F.pad(a, (*pw, *ph))
                out = F.conv2d(a, weight.to(a.dtype), None if bias is None else bias.to(a.dtype),
                               stride=opt["stride"], groups=groups)
            elif kind == "PRELU":
                alpha = get(ins[1]).reshape(1, -1, 1, 1).to(a.dtype)  # [1, 1, C] per channel
                out = torch.where(a >= 0, a, a * alpha)
            elif kind == "ADD":
                out = a + get(ins[1])
            elif kind == "MAX_POOL_2D":
                kh, kw = opt["filter"]
                if opt["padding"] == _SAME:
                    ph = _tf_same_pad(a.shape[2], kh, opt["stride"][0])
                    pw = _tf_same_pad(a.shape[3], kw, opt["stride"][1])
                    a = F.pad(a, (*pw, *ph), value=float("-inf"))
                out = F.max_pool2d(a, (kh, kw), opt["stride"])
            elif kind == "PAD":
                pads = self._const(ins[1]).long().tolist()  # NHWC [[before, after]] x 4
                n, h, w, c = pads
                out = F.pad(a, (*w, *h, *c, *n))
            act = _ACTIVATIONS[opt.get("activation", 0)]
            values[outs[0]] = act(out) if act else out
        return [values[i] for i in self.outputs]


def read_tflite(path: str | os.PathLike) -> TFLiteNet:
    """Parse a TFLite flatbuffer (first subgraph) into a :class:`TFLiteNet`.

    Raises CheckpointFormatError for a file that is not TFLite or uses other operators.
    """
    import tflite
    from tflite.BuiltinOperator import BuiltinOperator
    from tflite.Conv2DOptions import Conv2DOptions
    from tflite.DepthwiseConv2DOptions import DepthwiseConv2DOptions
    from tflite.AddOptions import AddOptions
    from tflite.Pool2DOptions import Pool2DOptions

    names = {v: k for k, v in vars(BuiltinOperator).items() if not k.startswith("_")}
    data = open(path, "rb").read()
    if data[4:8] != b"TFL3":
        raise CheckpointFormatError(f"{path}: not a TFLite model (no TFL3 identifier); delete "
                                    "it and run `drfhq weights install-substitutes`")
    model = tflite.Model.GetRootAsModel(data, 0)
    graph = model.Subgraphs(0)

    def tensor_value(index):
        tensor = graph.Tensors(index)
        buffer = model.Buffers(tensor.Buffer())
        if buffer.DataLength() == 0:
            return None
        dtype = {_FLOAT32: np.float32, _FLOAT16: np.float16, _INT32: np.int32}.get(tensor.Type())
        if dtype is None:
            raise CheckpointFormatError(f"{path}: tensor type {tensor.Type()} is not supported")
        return buffer.DataAsNumpy().view(dtype).reshape(tensor.ShapeAsNumpy())

    ops, constants = [], {}
    for i in range(graph.OperatorsLength()):
        op = graph.Operators(i)
        code = model.OperatorCodes(op.OpcodeIndex())
        kind = names.get(max(code.BuiltinCode(), code.DeprecatedBuiltinCode()), "CUSTOM")
        if kind not in _SUPPORTED:
            raise CheckpointFormatError(f"{path}: operator {kind} is not supported (this reader "
                                        f"runs {', '.join(_SUPPORTED)})")
        ins, outs = op.InputsAsNumpy().tolist(), op.OutputsAsNumpy().tolist()
        opt = {}
        table = op.BuiltinOptions()
        if kind in ("CONV_2D", "DEPTHWISE_CONV_2D", "MAX_POOL_2D", "ADD") and table is not None:
            cls = {"CONV_2D": Conv2DOptions, "DEPTHWISE_CONV_2D": DepthwiseConv2DOptions,
                   "MAX_POOL_2D": Pool2DOptions, "ADD": AddOptions}[kind]
            o = cls()
            o.Init(table.Bytes, table.Pos)
            opt["activation"] = o.FusedActivationFunction()
            if kind != "ADD":
                opt["padding"] = o.Padding()
                opt["stride"] = (o.StrideH(), o.StrideW())
                dilation = (1, 1) if kind == "MAX_POOL_2D" else (o.DilationHFactor(),
                                                                 o.DilationWFactor())
                if dilation != (1, 1):
                    raise CheckpointFormatError(f"{path}: dilated convolutions are not "
                                                "supported")
            if kind == "MAX_POOL_2D":
                opt["filter"] = (o.FilterHeight(), o.FilterWidth())
        for j in ins:
            if j >= 0 and j not in constants:
                value = tensor_value(j)
                if value is not None:
                    constants[j] = value.astype(np.float32)
        ops.append((kind, ins, outs, opt))
    inputs = graph.InputsAsNumpy().tolist()
    outputs = graph.OutputsAsNumpy().tolist()
    return TFLiteNet(ops, constants, inputs, outputs).eval().requires_grad_(False)


class FaceMesh(nn.Module):
    """The face mesh network: ``crops [N, 3, 192, 192]`` in [0, 1] -> ``(points [N, 468, 3]
    in crop pixels, presence logit [N])``."""

    def __init__(self, net: TFLiteNet):
        super().__init__()
        self.net = net

    def forward(self, crops: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if crops.shape[1:] != (3, INPUT_SIZE, INPUT_SIZE):
            raise ValueError(f"face mesh takes [N, 3, {INPUT_SIZE}, {INPUT_SIZE}] crops, got "
                             f"{tuple(crops.shape)}")
        points, presence = self.net(crops)
        return points.reshape(len(crops), N_POINTS, 3), presence.reshape(len(crops))


@lru_cache(maxsize=4)
def _cached(path: str, device: str) -> FaceMesh:
    return FaceMesh(read_tflite(path)).to(device)


def build_facemesh(device: str | torch.device = "cpu", path: str | os.PathLike | None = None
                   ) -> FaceMesh:
    """The registry's face mesh network (``mediapipe-face-mesh``) on ``device``.

    Raises MissingWeightsError (saying how to install it) when the file is absent.
    """
    from drfhq_lib.nets import weights

    path = path or weights.official_path("mediapipe-face-mesh")
    return _cached(str(path), str(torch.device(device)))
