"""Low-level StyleGAN2 operations in plain PyTorch (no compiled extension).

Each function reproduces the arithmetic of NVIDIA's stylegan2-ada-pytorch op of the same name
(upfirdn2d, conv2d_resample, bias_act, modulated_conv2d) so that official weights give the same
images, while using the cheapest PyTorch primitives that keep that arithmetic: strided
depthwise convolutions instead of filter-then-subsample, in-place activations when no gradient
is being recorded.
"""

import math

import torch
import torch.nn.functional as F

SQRT2 = math.sqrt(2)

# name -> (function, default gain); the gain keeps activations at unit variance.
ACTIVATIONS = {
    "linear": (lambda x, inplace: x, 1.0),
    "relu": (lambda x, inplace: F.relu(x, inplace=inplace), SQRT2),
    "lrelu": (lambda x, inplace: F.leaky_relu(x, 0.2, inplace=inplace), SQRT2),
}


def assert_shape(tensor, shape, what):
    """Fail early with a readable message; None in `shape` matches any size."""
    ok = tensor.ndim == len(shape) and all(
        want is None or want == got for want, got in zip(shape, tensor.shape)
    )
    if not ok:
        want = ["*" if s is None else s for s in shape]
        raise ValueError(f"{what}: expected shape {want}, got {list(tensor.shape)}")


def activation_gain(act):
    """Default output gain of an activation, e.g. sqrt(2) for lrelu."""
    if act not in ACTIVATIONS:
        raise ValueError(f"unknown activation {act!r}; expected one of {sorted(ACTIVATIONS)}")
    return ACTIVATIONS[act][1]


def bias_act(x, b=None, act="linear", gain=None, clamp=None):
    """x + b (over dim 1), activation, times gain, clamp to +-clamp, in this order.

    Works in place on intermediate results when autograd is off, which saves three full
    passes over the activations at inference time.
    """
    func, default_gain = ACTIVATIONS[act]
    gain = default_gain if gain is None else float(gain)
    no_grad = not torch.is_grad_enabled()
    if b is not None:
        x = x + b.reshape([1, -1] + [1] * (x.ndim - 2))
    x = func(x, b is not None and no_grad)
    inplace = no_grad and (b is not None or act != "linear")  # x is a tensor of our own
    if gain != 1:
        x = x.mul_(gain) if inplace else x * gain
    if clamp is not None:
        x = x.clamp_(-clamp, clamp) if inplace else x.clamp(-clamp, clamp)
    return x


def normalize_2nd_moment(x, dim=1, eps=1e-8):
    """Scale each vector to unit root-mean-square (the mapping network's input norm)."""
    return x * (x.square().mean(dim=dim, keepdim=True) + eps).rsqrt()


def setup_filter(taps):
    """FIR filter buffer exactly as official: outer product of the taps, normalised to sum 1.

    Like the official code, filters with 8 or more taps stay 1-D (separable), so that the
    registered buffers have the official shapes.
    """
    f = torch.as_tensor(taps, dtype=torch.float32)
    if f.ndim == 0:
        f = f[None]
    if f.ndim == 1 and f.numel() < 8:
        f = torch.outer(f, f)
    return f / f.sum()


def _padding4(padding):
    if isinstance(padding, int):
        return padding, padding, padding, padding
    if len(padding) == 2:
        return padding[0], padding[0], padding[1], padding[1]
    return tuple(padding)


def upfirdn2d(x, f, up=1, down=1, padding=0, gain=1, flip_filter=False):
    """Upsample (zero insertion), pad, FIR-filter, downsample; official conventions.

    `padding` is (x0, x1, y0, y1) or an int, relative to the upsampled image; negative values
    crop. Without flip_filter the filter is applied as a true convolution. The downsampling is
    a strided depthwise convolution, so discarded pixels are never computed.
    """
    assert_shape(x, [None, None, None, None], "upfirdn2d input")
    if f is None:
        f = torch.ones([1, 1], dtype=torch.float32, device=x.device)
    if f.ndim == 1:
        f = torch.outer(f, f)
    n, c, h, w = x.shape
    px0, px1, py0, py1 = _padding4(padding)
    if up > 1:
        z = x.new_zeros([n, c, h * up, w * up])
        z[:, :, ::up, ::up] = x
        x = z
    x = F.pad(x, [px0, px1, py0, py1])
    f = (f.to(x.device) * gain).to(x.dtype)
    if not flip_filter:
        f = f.flip([0, 1])
    weight = f[None, None].expand(c, 1, *f.shape)
    return F.conv2d(x, weight, stride=down, groups=c)


def upsample2d(x, f, up=2):
    """Upsample by `up` with FIR filter `f`, output exactly `up` times larger (gain up**2)."""
    fw = f.shape[-1]
    p0, p1 = (fw + up - 1) // 2, (fw - up) // 2
    return upfirdn2d(x, f, up=up, padding=(p0, p1, p0, p1), gain=up * up)


def downsample2d(x, f, down=2):
    """Downsample by `down` with FIR filter `f`, output exactly `down` times smaller."""
    fw = f.shape[-1]
    p0, p1 = (fw - down + 1) // 2, (fw - down) // 2
    return upfirdn2d(x, f, down=down, padding=(p0, p1, p0, p1))


def _transpose_groups(w, groups):
    """[out, in/g, k, k] -> [in, out/g, k, k] per group, the layout conv_transpose2d wants."""
    out_ch, in_per_group, kh, kw = w.shape
    w = w.reshape(groups, out_ch // groups, in_per_group, kh, kw).transpose(1, 2)
    return w.reshape(groups * in_per_group, out_ch // groups, kh, kw)


def conv2d_resample(x, w, f=None, up=1, down=1, padding=0, groups=1):
    """Convolution with optional FIR-filtered 2x up- or downsampling (official ordering).

    up: transposed convolution with stride `up`, then FIR with gain up**2.
    down: FIR, then strided convolution (1x1 kernels: FIR with stride, then convolution).
    Padding is relative to the upsampled image, applied once. Weights are used as
    correlation kernels, except in the transposed case, where they are not flipped, which is
    what the official layers with up=2 do (flip_weight=False).
    """
    _, _, kh, kw = w.shape
    if kh != kw or (up > 1 and down > 1):
        raise ValueError("conv2d_resample supports square kernels and either up or down")
    fw = 1 if f is None else f.shape[-1]
    if up > 1:
        p0 = padding + (fw + up - 1) // 2 - (kw - 1)
        p1 = padding + (fw - up) // 2 - (kw - up)
        crop = max(min(-p0, -p1), 0)
        x = F.conv_transpose2d(x, _transpose_groups(w, groups), stride=up, padding=crop,
                               groups=groups)
        pad = (p0 + crop, p1 + crop, p0 + crop, p1 + crop)
        return upfirdn2d(x, f, padding=pad, gain=up * up)
    if down > 1:
        p0 = padding + (fw - down + 1) // 2
        p1 = padding + (fw - down) // 2
        if kw == 1:
            x = upfirdn2d(x, f, down=down, padding=(p0, p1, p0, p1))
            return F.conv2d(x, w, groups=groups)
        x = upfirdn2d(x, f, padding=(p0, p1, p0, p1))
        return F.conv2d(x, w, stride=down, groups=groups)
    return F.conv2d(x, w, padding=padding, groups=groups)


def modulated_conv2d(x, weight, styles, noise=None, up=1, padding=0, resample_filter=None,
                     demodulate=True, fused_modconv=True):
    """StyleGAN2 weight (de)modulation followed by conv2d_resample, then + noise.

    fused_modconv=True folds the per-sample styles into the weights and runs one grouped
    convolution; False scales the activations instead, so the batch shares one weight (what
    official training uses). Each path reproduces the official arithmetic of that path.
    """
    n = x.shape[0]
    _, in_ch, kh, kw = weight.shape
    assert_shape(x, [n, in_ch, None, None], "modulated_conv2d input")
    assert_shape(styles, [n, in_ch], "modulated_conv2d styles")

    if x.dtype == torch.float16 and demodulate:  # keep fp16 from overflowing
        weight = weight * (1 / math.sqrt(in_ch * kh * kw)
                           / weight.norm(float("inf"), dim=[1, 2, 3], keepdim=True))
        styles = styles / styles.norm(float("inf"), dim=1, keepdim=True)

    w = dcoefs = None
    if demodulate or fused_modconv:
        w = weight.unsqueeze(0) * styles.reshape(n, 1, -1, 1, 1)  # [N, O, I, k, k]
    if demodulate:
        dcoefs = (w.square().sum(dim=[2, 3, 4]) + 1e-8).rsqrt()  # [N, O]
    resample = dict(f=resample_filter, up=up, padding=padding)
    if fused_modconv:
        if demodulate:
            w = w * dcoefs.reshape(n, -1, 1, 1, 1)
        return _grouped_conv(x, w, noise, resample)
    return _shared_weight_conv(x, weight, styles, dcoefs, noise, resample)


def _grouped_conv(x, w, noise, resample):
    """One convolution with groups=N over per-sample weights w [N, O, I, k, k]."""
    n, out_ch, in_ch, kh, kw = w.shape
    x = x.reshape(1, n * in_ch, *x.shape[2:])
    w = w.reshape(n * out_ch, in_ch, kh, kw).to(x.dtype)
    x = conv2d_resample(x, w, groups=n, **resample)
    x = x.reshape(n, out_ch, *x.shape[2:])
    return x if noise is None else x.add_(noise.to(x.dtype))


def _shared_weight_conv(x, weight, styles, dcoefs, noise, resample):
    """Scale the input by the styles, convolve with the shared weight, then demodulate."""
    n = x.shape[0]
    x = x * styles.to(x.dtype).reshape(n, -1, 1, 1)
    x = conv2d_resample(x, weight.to(x.dtype), **resample)
    if dcoefs is None:
        return x if noise is None else x + noise.to(x.dtype)
    dcoefs = dcoefs.to(x.dtype).reshape(n, -1, 1, 1)
    return x * dcoefs if noise is None else torch.addcmul(noise.to(x.dtype), x, dcoefs)
