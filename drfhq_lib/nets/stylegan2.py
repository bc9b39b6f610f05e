"""StyleGAN2-ADA generator and discriminator, readable and numerically identical to NVIDIA's.

Module, parameter and buffer names, shapes, init kwargs and arithmetic follow the official
``training/networks.py`` of stylegan2-ada-pytorch, so an official state dict loads with
``strict=True`` and gives the same outputs. Equalised learning rate: parameters are stored
unscaled and multiplied by ``weight_gain`` / ``bias_gain`` at run time, exactly as official.

Generator: ``mapping`` (z -> W+, truncation, w_avg) and ``synthesis`` (W+ -> image, 'skip'
architecture). Discriminator: residual blocks, then an epilogue with minibatch std-dev.
fp16 is used only on CUDA for the blocks selected by ``num_fp16_res``; on CPU everything runs
in fp32 whatever the setting.
"""

import copy
import math

import torch
from torch import nn

from drfhq_lib.nets.ops import (
    activation_gain,
    assert_shape,
    bias_act,
    conv2d_resample,
    modulated_conv2d,
    normalize_2nd_moment,
    setup_filter,
    upsample2d,
)

NOISE_MODES = ("random", "const", "none")
DEFAULT_FILTER = (1, 3, 3, 1)


def _log2_resolution(resolution, minimum):
    if resolution < minimum or resolution & (resolution - 1):
        raise ValueError(f"resolution must be a power of two >= {minimum}, got {resolution}")
    return resolution.bit_length() - 1


def channel_counts(resolutions, channel_base, channel_max):
    """Feature maps per resolution, the official formula min(channel_base // res, max)."""
    return {res: min(channel_base // res, channel_max) for res in resolutions}


def _fp16_resolution(log2_resolution, num_fp16_res):
    """Lowest resolution whose block may run in fp16 (official: never below 8)."""
    return max(2 ** (log2_resolution + 1 - num_fp16_res), 8)


def _block_dtype(use_fp16, force_fp32, device):
    fp16 = use_fp16 and not force_fp32 and device.type == "cuda"
    return torch.float16 if fp16 else torch.float32


def _memory_format(channels_last, dtype):
    use = channels_last and dtype == torch.float16
    return torch.channels_last if use else torch.contiguous_format


# ----------------------------------------------------------------------------------------
# Layers


class FullyConnectedLayer(nn.Module):
    """Dense layer with equalised learning rate (weights stored divided by lr_multiplier)."""

    def __init__(self, in_features, out_features, bias=True, activation="linear",
                 lr_multiplier=1, bias_init=0):
        super().__init__()
        activation_gain(activation)  # reject unknown activations at construction
        self.activation = activation
        self.weight = nn.Parameter(torch.randn([out_features, in_features]) / lr_multiplier)
        self.bias = nn.Parameter(torch.full([out_features], float(bias_init))) if bias else None
        self.weight_gain = lr_multiplier / math.sqrt(in_features)
        self.bias_gain = lr_multiplier

    def forward(self, x):
        w = self.weight.to(x.dtype) * self.weight_gain
        b = self.bias
        if b is not None:
            b = b.to(x.dtype)
            if self.bias_gain != 1:
                b = b * self.bias_gain
        if self.activation == "linear" and b is not None:
            return torch.addmm(b.unsqueeze(0), x, w.t())
        return bias_act(x.matmul(w.t()), b, act=self.activation)


class Conv2dLayer(nn.Module):
    """Equalised-lr convolution with optional 2x resampling, bias, activation and clamp.

    trainable=False stores weight and bias as buffers, like official Freeze-D layers, so that
    their state-dict names stay the same.
    """

    def __init__(self, in_channels, out_channels, kernel_size, bias=True, activation="linear",
                 up=1, down=1, resample_filter=DEFAULT_FILTER, conv_clamp=None,
                 channels_last=False, trainable=True):
        super().__init__()
        self.activation = activation
        self.up = up
        self.down = down
        self.conv_clamp = conv_clamp
        self.register_buffer("resample_filter", setup_filter(resample_filter))
        self.padding = kernel_size // 2
        self.weight_gain = 1 / math.sqrt(in_channels * kernel_size**2)
        self.act_gain = activation_gain(activation)

        fmt = torch.channels_last if channels_last else torch.contiguous_format
        weight = torch.randn([out_channels, in_channels, kernel_size, kernel_size])
        weight = weight.to(memory_format=fmt)
        bias = torch.zeros([out_channels]) if bias else None
        if trainable:
            self.weight = nn.Parameter(weight)
            self.bias = nn.Parameter(bias) if bias is not None else None
        else:
            self.register_buffer("weight", weight)
            self.register_buffer("bias", bias)

    def forward(self, x, gain=1):
        w = (self.weight * self.weight_gain).to(x.dtype)
        b = self.bias.to(x.dtype) if self.bias is not None else None
        x = conv2d_resample(x, w, f=self.resample_filter, up=self.up, down=self.down,
                            padding=self.padding)
        clamp = self.conv_clamp * gain if self.conv_clamp is not None else None
        return bias_act(x, b, act=self.activation, gain=self.act_gain * gain, clamp=clamp)


# ----------------------------------------------------------------------------------------
# Mapping network


class MappingNetwork(nn.Module):
    """z (and optional label c) -> w, broadcast to num_ws copies, with truncation trick."""

    def __init__(self, z_dim, c_dim, w_dim, num_ws, num_layers=8, embed_features=None,
                 layer_features=None, activation="lrelu", lr_multiplier=0.01, w_avg_beta=0.995):
        super().__init__()
        self.z_dim = z_dim
        self.c_dim = c_dim
        self.w_dim = w_dim
        self.num_ws = num_ws
        self.num_layers = num_layers
        self.w_avg_beta = w_avg_beta

        embed_features = w_dim if embed_features is None else embed_features
        embed_features = 0 if c_dim == 0 else embed_features
        layer_features = w_dim if layer_features is None else layer_features
        features = [z_dim + embed_features] + [layer_features] * (num_layers - 1) + [w_dim]

        if c_dim > 0:
            self.embed = FullyConnectedLayer(c_dim, embed_features)
        for idx in range(num_layers):
            layer = FullyConnectedLayer(features[idx], features[idx + 1], activation=activation,
                                        lr_multiplier=lr_multiplier)
            setattr(self, f"fc{idx}", layer)
        if num_ws is not None and w_avg_beta is not None:
            self.register_buffer("w_avg", torch.zeros([w_dim]))

    def forward(self, z, c=None, truncation_psi=1, truncation_cutoff=None, update_emas=False):
        """Returns [N, num_ws, w_dim] (or [N, w_dim] when num_ws is None).

        Layers before `truncation_cutoff` (all if None) become w_avg + psi * (w - w_avg).
        update_emas=True moves w_avg towards this batch's mean w (training only).
        """
        x = None
        if self.z_dim > 0:
            assert_shape(z, [None, self.z_dim], "mapping z")
            x = normalize_2nd_moment(z.to(torch.float32))
        if self.c_dim > 0:
            if c is None:
                raise ValueError(f"this network is conditional: pass c of shape [N, {self.c_dim}]")
            assert_shape(c, [None, self.c_dim], "mapping c")
            y = normalize_2nd_moment(self.embed(c.to(torch.float32)))
            x = y if x is None else torch.cat([x, y], dim=1)

        for idx in range(self.num_layers):
            x = getattr(self, f"fc{idx}")(x)

        if update_emas and self.w_avg_beta is not None:
            self.w_avg.copy_(x.detach().mean(dim=0).lerp(self.w_avg, self.w_avg_beta))
        if self.num_ws is not None:
            x = x.unsqueeze(1).repeat([1, self.num_ws, 1])
        if truncation_psi != 1:
            x = self._truncate(x, truncation_psi, truncation_cutoff)
        return x

    def _truncate(self, x, psi, cutoff):
        if not hasattr(self, "w_avg"):
            raise ValueError("truncation needs w_avg, which this mapping network does not track")
        if self.num_ws is None or cutoff is None:
            return self.w_avg.lerp(x, psi)
        x[:, :cutoff] = self.w_avg.lerp(x[:, :cutoff], psi)
        return x


# ----------------------------------------------------------------------------------------
# Synthesis network


class SynthesisLayer(nn.Module):
    """Modulated 3x3 convolution (optionally 2x up) + per-pixel noise + bias + lrelu."""

    def __init__(self, in_channels, out_channels, w_dim, resolution, kernel_size=3, up=1,
                 use_noise=True, activation="lrelu", resample_filter=DEFAULT_FILTER,
                 conv_clamp=None, channels_last=False):
        super().__init__()
        self.resolution = resolution
        self.up = up
        self.use_noise = use_noise
        self.activation = activation
        self.conv_clamp = conv_clamp
        self.register_buffer("resample_filter", setup_filter(resample_filter))
        self.padding = kernel_size // 2
        self.act_gain = activation_gain(activation)

        self.affine = FullyConnectedLayer(w_dim, in_channels, bias_init=1)
        fmt = torch.channels_last if channels_last else torch.contiguous_format
        weight = torch.randn([out_channels, in_channels, kernel_size, kernel_size])
        self.weight = nn.Parameter(weight.to(memory_format=fmt))
        if use_noise:
            self.register_buffer("noise_const", torch.randn([resolution, resolution]))
            self.noise_strength = nn.Parameter(torch.zeros([]))
        self.bias = nn.Parameter(torch.zeros([out_channels]))

    def forward(self, x, w, noise_mode="random", fused_modconv=True, gain=1):
        if noise_mode not in NOISE_MODES:
            raise ValueError(f"noise_mode must be one of {NOISE_MODES}, got {noise_mode!r}")
        in_res = self.resolution // self.up
        assert_shape(x, [None, self.weight.shape[1], in_res, in_res], "synthesis layer input")
        styles = self.affine(w)

        noise = None
        if self.use_noise and noise_mode == "random":
            size = [x.shape[0], 1, self.resolution, self.resolution]
            noise = torch.randn(size, device=x.device) * self.noise_strength
        if self.use_noise and noise_mode == "const":
            noise = self.noise_const * self.noise_strength

        x = modulated_conv2d(x, self.weight, styles, noise=noise, up=self.up,
                             padding=self.padding, resample_filter=self.resample_filter,
                             fused_modconv=fused_modconv)
        clamp = self.conv_clamp * gain if self.conv_clamp is not None else None
        return bias_act(x, self.bias.to(x.dtype), act=self.activation,
                        gain=self.act_gain * gain, clamp=clamp)


class ToRGBLayer(nn.Module):
    """Modulated 1x1 convolution to RGB, no demodulation, linear output."""

    def __init__(self, in_channels, out_channels, w_dim, kernel_size=1, conv_clamp=None,
                 channels_last=False):
        super().__init__()
        self.conv_clamp = conv_clamp
        self.affine = FullyConnectedLayer(w_dim, in_channels, bias_init=1)
        fmt = torch.channels_last if channels_last else torch.contiguous_format
        weight = torch.randn([out_channels, in_channels, kernel_size, kernel_size])
        self.weight = nn.Parameter(weight.to(memory_format=fmt))
        self.bias = nn.Parameter(torch.zeros([out_channels]))
        self.weight_gain = 1 / math.sqrt(in_channels * kernel_size**2)

    def forward(self, x, w, fused_modconv=True):
        styles = self.affine(w) * self.weight_gain
        x = modulated_conv2d(x, self.weight, styles, demodulate=False,
                             fused_modconv=fused_modconv)
        return bias_act(x, self.bias.to(x.dtype), clamp=self.conv_clamp)


class SynthesisBlock(nn.Module):
    """One resolution of the 'skip' generator: [conv0 up] conv1, ToRGB added to the
    upsampled image of the previous block."""

    def __init__(self, in_channels, out_channels, w_dim, resolution, img_channels, is_last,
                 architecture="skip", resample_filter=DEFAULT_FILTER, conv_clamp=None,
                 use_fp16=False, fp16_channels_last=False, **layer_kwargs):
        super().__init__()
        if architecture != "skip":
            raise ValueError(f"generator architecture {architecture!r} is not supported; "
                             "only the official default 'skip' is implemented")
        self.in_channels = in_channels
        self.w_dim = w_dim
        self.resolution = resolution
        self.img_channels = img_channels
        self.is_last = is_last
        self.architecture = architecture
        self.use_fp16 = use_fp16
        self.channels_last = use_fp16 and fp16_channels_last
        self.register_buffer("resample_filter", setup_filter(resample_filter))
        self.num_conv = 0
        self.num_torgb = 0

        common = dict(w_dim=w_dim, resolution=resolution, conv_clamp=conv_clamp,
                      channels_last=self.channels_last, **layer_kwargs)
        if in_channels == 0:
            self.const = nn.Parameter(torch.randn([out_channels, resolution, resolution]))
        else:
            self.conv0 = SynthesisLayer(in_channels, out_channels, up=2,
                                        resample_filter=resample_filter, **common)
            self.num_conv += 1
        self.conv1 = SynthesisLayer(out_channels, out_channels, **common)
        self.num_conv += 1
        self.torgb = ToRGBLayer(out_channels, img_channels, w_dim=w_dim, conv_clamp=conv_clamp,
                                channels_last=self.channels_last)
        self.num_torgb += 1

    def forward(self, x, img, ws, noise_mode="random", force_fp32=False, fused_modconv=None):
        assert_shape(ws, [None, self.num_conv + self.num_torgb, self.w_dim], "block ws")
        w_iter = iter(ws.unbind(dim=1))
        dtype = _block_dtype(self.use_fp16, force_fp32, ws.device)
        fmt = _memory_format(self.channels_last, dtype)
        if fused_modconv is None:
            # Official rule (grouped conv for inference), except that on CPU a batch is faster
            # sharing one weight; both paths are official arithmetic (they differ by ~1e-6).
            batch_of_one = ws.shape[0] == 1
            shared_fp32 = dtype == torch.float32 and ws.device.type != "cpu"
            fused_modconv = not self.training and (batch_of_one or shared_fp32)
        kwargs = dict(noise_mode=noise_mode, fused_modconv=fused_modconv)

        if self.in_channels == 0:
            x = self.const.to(dtype).unsqueeze(0).repeat([ws.shape[0], 1, 1, 1])
            x = self.conv1(x.to(memory_format=fmt), next(w_iter), **kwargs)
        else:
            half = self.resolution // 2
            assert_shape(x, [None, self.in_channels, half, half], "synthesis block input")
            x = x.to(dtype=dtype, memory_format=fmt)
            x = self.conv0(x, next(w_iter), **kwargs)
            x = self.conv1(x, next(w_iter), **kwargs)

        if img is not None:
            half = self.resolution // 2
            assert_shape(img, [None, self.img_channels, half, half], "synthesis block image")
            img = upsample2d(img, self.resample_filter)
        y = self.torgb(x, next(w_iter), fused_modconv=fused_modconv)
        y = y.to(dtype=torch.float32, memory_format=torch.contiguous_format)
        img = y if img is None else img.add_(y)
        return x, img


class SynthesisNetwork(nn.Module):
    """W+ [N, num_ws, w_dim] -> image [N, img_channels, R, R], blocks b4 ... bR."""

    def __init__(self, w_dim, img_resolution, img_channels, channel_base=32768,
                 channel_max=512, num_fp16_res=0, **block_kwargs):
        super().__init__()
        log2 = _log2_resolution(img_resolution, 4)
        self.w_dim = w_dim
        self.img_resolution = img_resolution
        self.img_resolution_log2 = log2
        self.img_channels = img_channels
        self.block_resolutions = [2**i for i in range(2, log2 + 1)]
        channels = channel_counts(self.block_resolutions, channel_base, channel_max)
        fp16_resolution = _fp16_resolution(log2, num_fp16_res)

        self.num_ws = 0
        for res in self.block_resolutions:
            is_last = res == img_resolution
            block = SynthesisBlock(channels[res // 2] if res > 4 else 0, channels[res],
                                   w_dim=w_dim, resolution=res, img_channels=img_channels,
                                   is_last=is_last, use_fp16=res >= fp16_resolution,
                                   **block_kwargs)
            self.num_ws += block.num_conv + (block.num_torgb if is_last else 0)
            setattr(self, f"b{res}", block)

    def forward(self, ws, noise_mode="random", force_fp32=False, fused_modconv=None):
        """noise_mode: 'random' (fresh noise), 'const' (the noise_const buffers), 'none'."""
        assert_shape(ws, [None, self.num_ws, self.w_dim], "synthesis ws")
        ws = ws.to(torch.float32)
        x = img = None
        w_idx = 0
        for res in self.block_resolutions:
            block = getattr(self, f"b{res}")
            block_ws = ws.narrow(1, w_idx, block.num_conv + block.num_torgb)
            x, img = block(x, img, block_ws, noise_mode=noise_mode, force_fp32=force_fp32,
                           fused_modconv=fused_modconv)
            w_idx += block.num_conv
        return img

    def noise_buffers(self):
        """{name: noise_const buffer}; a projector optimises noise by writing into these."""
        return {name: buf for name, buf in self.named_buffers() if name.endswith("noise_const")}


# ----------------------------------------------------------------------------------------
# Generator

_MAPPING_KEYS = ("num_layers", "embed_features", "layer_features", "lr_multiplier",
                 "w_avg_beta")
_SYNTHESIS_KEYS = ("channel_base", "channel_max", "num_fp16_res", "conv_clamp",
                   "architecture", "resample_filter", "use_noise", "fp16_channels_last",
                   "kernel_size")


def _nest_kwargs(mapping_kwargs, synthesis_kwargs, flat):
    """Sort flat kwargs (channel_base=...) into the official nested mapping/synthesis dicts."""
    mapping = dict(mapping_kwargs or {})
    synthesis = dict(synthesis_kwargs or {})
    for key, value in flat.items():
        target = mapping if key in _MAPPING_KEYS else synthesis if key in _SYNTHESIS_KEYS else None
        if target is None:
            raise TypeError(f"Generator got an unexpected keyword argument {key!r}")
        if key in target:
            raise TypeError(f"Generator got {key!r} both flat and nested")
        target[key] = value
    return mapping, synthesis


class Generator(nn.Module):
    """StyleGAN2 generator: ``mapping`` then ``synthesis``; official signature and names.

    Accepts the official nested kwargs (``synthesis_kwargs=dict(channel_base=...)``) and
    the same keys flat (``channel_base=...``); ``init_kwargs`` returns the nested form.
    """

    def __init__(self, z_dim=512, c_dim=0, w_dim=512, img_resolution=1024, img_channels=3,
                 mapping_kwargs=None, synthesis_kwargs=None, **flat_kwargs):
        super().__init__()
        mapping_kwargs, synthesis_kwargs = _nest_kwargs(mapping_kwargs, synthesis_kwargs,
                                                        flat_kwargs)
        self._init_kwargs = copy.deepcopy(dict(
            z_dim=z_dim, c_dim=c_dim, w_dim=w_dim, img_resolution=img_resolution,
            img_channels=img_channels, mapping_kwargs=mapping_kwargs,
            synthesis_kwargs=synthesis_kwargs))
        self.z_dim = z_dim
        self.c_dim = c_dim
        self.w_dim = w_dim
        self.img_resolution = img_resolution
        self.img_channels = img_channels
        self.synthesis = SynthesisNetwork(w_dim=w_dim, img_resolution=img_resolution,
                                          img_channels=img_channels, **synthesis_kwargs)
        self.num_ws = self.synthesis.num_ws
        self.mapping = MappingNetwork(z_dim=z_dim, c_dim=c_dim, w_dim=w_dim,
                                      num_ws=self.num_ws, **mapping_kwargs)

    @property
    def init_kwargs(self):
        """Constructor arguments (nested form); Generator(**G.init_kwargs) rebuilds G."""
        return copy.deepcopy(self._init_kwargs)

    def forward(self, z, c=None, truncation_psi=1, truncation_cutoff=None, update_emas=False,
                **synthesis_kwargs):
        ws = self.mapping(z, c, truncation_psi=truncation_psi,
                          truncation_cutoff=truncation_cutoff, update_emas=update_emas)
        return self.synthesis(ws, **synthesis_kwargs)


# ----------------------------------------------------------------------------------------
# Discriminator


class DiscriminatorBlock(nn.Module):
    """Residual block: [fromrgb] conv0, conv1 (down 2), plus 1x1 skip (down 2), gain sqrt(.5)."""

    def __init__(self, in_channels, tmp_channels, out_channels, resolution, img_channels,
                 first_layer_idx, architecture="resnet", activation="lrelu",
                 resample_filter=DEFAULT_FILTER, conv_clamp=None, use_fp16=False,
                 fp16_channels_last=False, freeze_layers=0):
        super().__init__()
        if architecture != "resnet":
            raise ValueError(f"discriminator architecture {architecture!r} is not supported; "
                             "only the official default 'resnet' is implemented")
        if in_channels not in (0, tmp_channels):
            raise ValueError("in_channels must be 0 (first block) or tmp_channels")
        self.in_channels = in_channels
        self.resolution = resolution
        self.img_channels = img_channels
        self.first_layer_idx = first_layer_idx
        self.architecture = architecture
        self.use_fp16 = use_fp16
        self.channels_last = use_fp16 and fp16_channels_last
        self.register_buffer("resample_filter", setup_filter(resample_filter))
        self.num_layers = 0

        def layer(*args, **kwargs):  # Freeze-D counts layers in creation order
            trainable = first_layer_idx + self.num_layers >= freeze_layers
            self.num_layers += 1
            return Conv2dLayer(*args, trainable=trainable, channels_last=self.channels_last,
                               **kwargs)

        if in_channels == 0:
            self.fromrgb = layer(img_channels, tmp_channels, kernel_size=1,
                                 activation=activation, conv_clamp=conv_clamp)
        self.conv0 = layer(tmp_channels, tmp_channels, kernel_size=3, activation=activation,
                           conv_clamp=conv_clamp)
        self.conv1 = layer(tmp_channels, out_channels, kernel_size=3, activation=activation,
                           down=2, resample_filter=resample_filter, conv_clamp=conv_clamp)
        self.skip = layer(tmp_channels, out_channels, kernel_size=1, bias=False, down=2,
                          resample_filter=resample_filter)

    def forward(self, x, img, force_fp32=False):
        device = (img if x is None else x).device
        dtype = _block_dtype(self.use_fp16, force_fp32, device)
        fmt = _memory_format(self.channels_last, dtype)
        res = self.resolution
        if self.in_channels == 0:
            assert_shape(img, [None, self.img_channels, res, res], "discriminator image")
            x = self.fromrgb(img.to(dtype=dtype, memory_format=fmt))
        else:
            assert_shape(x, [None, self.in_channels, res, res], "discriminator block input")
            x = x.to(dtype=dtype, memory_format=fmt)
        y = self.skip(x, gain=math.sqrt(0.5))
        x = self.conv0(x)
        x = self.conv1(x, gain=math.sqrt(0.5))
        return y.add_(x)


class MinibatchStdLayer(nn.Module):
    """Appends the std-dev over groups of `group_size` samples as extra feature maps."""

    def __init__(self, group_size, num_channels=1):
        super().__init__()
        self.group_size = group_size
        self.num_channels = num_channels

    def forward(self, x):
        n, c, h, w = x.shape
        g = n if self.group_size is None else min(self.group_size, n)
        if n % g:
            raise ValueError(f"minibatch std-dev: batch size {n} is not a multiple of the "
                             f"group size {g}")
        f = self.num_channels
        y = x.reshape(g, -1, f, c // f, h, w)  # [G, n, F, c, H, W]
        y = y - y.mean(dim=0)
        y = (y.square().mean(dim=0) + 1e-8).sqrt()  # std-dev over each group
        y = y.mean(dim=[2, 3, 4])  # [n, F]
        y = y.reshape(-1, f, 1, 1).repeat(g, 1, h, w)
        return torch.cat([x, y], dim=1)


class DiscriminatorEpilogue(nn.Module):
    """4x4 head: minibatch std-dev, conv, fc, out (projected on the label map if c_dim > 0)."""

    def __init__(self, in_channels, cmap_dim, resolution, img_channels, architecture="resnet",
                 mbstd_group_size=4, mbstd_num_channels=1, activation="lrelu", conv_clamp=None):
        super().__init__()
        if architecture != "resnet":
            raise ValueError(f"discriminator architecture {architecture!r} is not supported")
        self.in_channels = in_channels
        self.cmap_dim = cmap_dim
        self.resolution = resolution
        self.img_channels = img_channels
        self.architecture = architecture
        self.mbstd = (MinibatchStdLayer(mbstd_group_size, mbstd_num_channels)
                      if mbstd_num_channels > 0 else None)
        self.conv = Conv2dLayer(in_channels + mbstd_num_channels, in_channels, kernel_size=3,
                                activation=activation, conv_clamp=conv_clamp)
        self.fc = FullyConnectedLayer(in_channels * resolution**2, in_channels,
                                      activation=activation)
        self.out = FullyConnectedLayer(in_channels, 1 if cmap_dim == 0 else cmap_dim)

    def forward(self, x, cmap=None):
        res = self.resolution
        assert_shape(x, [None, self.in_channels, res, res], "discriminator epilogue input")
        x = x.to(dtype=torch.float32, memory_format=torch.contiguous_format)
        if self.mbstd is not None:
            x = self.mbstd(x)
        x = self.conv(x)
        x = self.fc(x.flatten(1))
        x = self.out(x)
        if self.cmap_dim > 0:
            assert_shape(cmap, [None, self.cmap_dim], "discriminator cmap")
            x = (x * cmap).sum(dim=1, keepdim=True) * (1 / math.sqrt(self.cmap_dim))
        return x


class Discriminator(nn.Module):
    """Residual StyleGAN2 discriminator: image [N, C, R, R] (+ label) -> logits [N, 1]."""

    def __init__(self, c_dim=0, img_resolution=1024, img_channels=3, architecture="resnet",
                 channel_base=32768, channel_max=512, num_fp16_res=0, conv_clamp=None,
                 cmap_dim=None, block_kwargs=None, mapping_kwargs=None, epilogue_kwargs=None):
        super().__init__()
        block_kwargs = dict(block_kwargs or {})
        mapping_kwargs = dict(mapping_kwargs or {})
        epilogue_kwargs = dict(epilogue_kwargs or {})
        self._init_kwargs = copy.deepcopy(dict(
            c_dim=c_dim, img_resolution=img_resolution, img_channels=img_channels,
            architecture=architecture, channel_base=channel_base, channel_max=channel_max,
            num_fp16_res=num_fp16_res, conv_clamp=conv_clamp, cmap_dim=cmap_dim,
            block_kwargs=block_kwargs, mapping_kwargs=mapping_kwargs,
            epilogue_kwargs=epilogue_kwargs))
        log2 = _log2_resolution(img_resolution, 8)
        self.c_dim = c_dim
        self.img_resolution = img_resolution
        self.img_resolution_log2 = log2
        self.img_channels = img_channels
        self.block_resolutions = [2**i for i in range(log2, 2, -1)]
        channels = channel_counts(self.block_resolutions + [4], channel_base, channel_max)
        fp16_resolution = _fp16_resolution(log2, num_fp16_res)
        cmap_dim = 0 if c_dim == 0 else channels[4] if cmap_dim is None else cmap_dim

        common = dict(img_channels=img_channels, architecture=architecture,
                      conv_clamp=conv_clamp)
        layer_idx = 0
        for res in self.block_resolutions:
            block = DiscriminatorBlock(channels[res] if res < img_resolution else 0,
                                       channels[res], channels[res // 2], resolution=res,
                                       first_layer_idx=layer_idx,
                                       use_fp16=res >= fp16_resolution, **block_kwargs,
                                       **common)
            setattr(self, f"b{res}", block)
            layer_idx += block.num_layers
        if c_dim > 0:
            self.mapping = MappingNetwork(z_dim=0, c_dim=c_dim, w_dim=cmap_dim, num_ws=None,
                                          w_avg_beta=None, **mapping_kwargs)
        self.b4 = DiscriminatorEpilogue(channels[4], cmap_dim=cmap_dim, resolution=4,
                                        **epilogue_kwargs, **common)

    @property
    def init_kwargs(self):
        """Constructor arguments; Discriminator(**D.init_kwargs) rebuilds D."""
        return copy.deepcopy(self._init_kwargs)

    def forward(self, img, c=None, force_fp32=False):
        res = self.img_resolution
        assert_shape(img, [None, self.img_channels, res, res], "discriminator input")
        x = None
        for res in self.block_resolutions:
            x = getattr(self, f"b{res}")(x, img, force_fp32=force_fp32)
        cmap = self.mapping(None, c) if self.c_dim > 0 else None
        return self.b4(x, cmap)
