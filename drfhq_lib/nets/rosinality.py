"""Name mapping from rosinality/stylegan2-pytorch checkpoints to the official names.

rosinality's ``Generator``/``Discriminator`` compute the same functions as the official
'skip' generator and 'resnet' discriminator without conv clamping; only names and a few
singleton dimensions differ (e.g. ``convs.0.conv.weight`` [1, O, I, 3, 3] is
``synthesis.b8.conv0.weight`` [O, I, 3, 3]). The architecture is inferred from the shapes.
Blur/upsample ``kernel`` buffers are fixed [1, 3, 3, 1] filters and are not carried over.
"""

import re

from drfhq_lib.errors import CheckpointFormatError
from drfhq_lib.nets.stylegan2 import Discriminator, Generator


def _synthesis_layer(ours, theirs, noise_index):
    return {
        f"{ours}.weight": f"{theirs}.conv.weight",
        f"{ours}.bias": f"{theirs}.activate.bias",
        f"{ours}.affine.weight": f"{theirs}.conv.modulation.weight",
        f"{ours}.affine.bias": f"{theirs}.conv.modulation.bias",
        f"{ours}.noise_strength": f"{theirs}.noise.weight",
        f"{ours}.noise_const": f"noises.noise_{noise_index}",
    }


def _torgb(ours, theirs):
    return {
        f"{ours}.weight": f"{theirs}.conv.weight",
        f"{ours}.bias": f"{theirs}.bias",
        f"{ours}.affine.weight": f"{theirs}.conv.modulation.weight",
        f"{ours}.affine.bias": f"{theirs}.conv.modulation.bias",
    }


def generator_names(img_resolution, num_mapping_layers):
    """{official name: rosinality name} for every generator tensor except resample filters."""
    names = {}
    for i in range(num_mapping_layers):
        names[f"mapping.fc{i}.weight"] = f"style.{i + 1}.weight"
        names[f"mapping.fc{i}.bias"] = f"style.{i + 1}.bias"
    names["mapping.w_avg"] = "latent_avg"  # top level of the checkpoint, not in g_ema
    names["synthesis.b4.const"] = "input.input"
    names.update(_synthesis_layer("synthesis.b4.conv1", "conv1", 0))
    names.update(_torgb("synthesis.b4.torgb", "to_rgb1"))
    for k in range(img_resolution.bit_length() - 3):
        block = f"synthesis.b{8 << k}"
        names.update(_synthesis_layer(f"{block}.conv0", f"convs.{2 * k}", 2 * k + 1))
        names.update(_synthesis_layer(f"{block}.conv1", f"convs.{2 * k + 1}", 2 * k + 2))
        names.update(_torgb(f"{block}.torgb", f"to_rgbs.{k}"))
    return names


def discriminator_names(img_resolution):
    """{official name: rosinality name} for every discriminator tensor except filters."""
    names = {
        f"b{img_resolution}.fromrgb.weight": "convs.0.0.weight",
        f"b{img_resolution}.fromrgb.bias": "convs.0.1.bias",
        "b4.conv.weight": "final_conv.0.weight",
        "b4.conv.bias": "final_conv.1.bias",
        "b4.fc.weight": "final_linear.0.weight",
        "b4.fc.bias": "final_linear.0.bias",
        "b4.out.weight": "final_linear.1.weight",
        "b4.out.bias": "final_linear.1.bias",
    }
    res = img_resolution
    for i in range(1, img_resolution.bit_length() - 2):
        names.update({
            f"b{res}.conv0.weight": f"convs.{i}.conv1.0.weight",
            f"b{res}.conv0.bias": f"convs.{i}.conv1.1.bias",
            f"b{res}.conv1.weight": f"convs.{i}.conv2.1.weight",
            f"b{res}.conv1.bias": f"convs.{i}.conv2.2.bias",
            f"b{res}.skip.weight": f"convs.{i}.skip.1.weight",
        })
        res //= 2
    return names


def _fit_channel_formula(channels, what):
    """channel_base, channel_max such that min(base // res, max) reproduces `channels`."""
    channel_max = max(channels.values())
    top = max(channels)
    base = channels[top] * top
    if any(min(base // res, channel_max) != ch for res, ch in channels.items()):
        raise CheckpointFormatError(f"{what}: channel counts {channels} do not follow the "
                                    "official formula min(channel_base // res, channel_max)")
    return base, channel_max


def _count(keys, pattern):
    return len({m.group(1) for m in map(re.compile(pattern).fullmatch, keys) if m})


def generator_kwargs(state):
    """Official Generator init kwargs inferred from a rosinality g / g_ema state dict."""
    try:
        w_dim = state["style.1.weight"].shape[1]
        num_layers = _count(state, r"style\.(\d+)\.weight")
        num_up = _count(state, r"to_rgbs\.(\d+)\.conv\.weight")
        channels = {4: state["input.input"].shape[1]}
        channels.update({8 << k: state[f"convs.{2 * k}.conv.weight"].shape[1]
                         for k in range(num_up)})
        img_channels = state["to_rgb1.conv.weight"].shape[1]
    except (KeyError, IndexError, TypeError) as e:
        raise CheckpointFormatError(f"not a rosinality generator state dict ({e!r})") from None
    base, cmax = _fit_channel_formula(channels, "rosinality generator")
    return dict(z_dim=w_dim, c_dim=0, w_dim=w_dim, img_resolution=4 << num_up,
                img_channels=img_channels, mapping_kwargs=dict(num_layers=num_layers),
                synthesis_kwargs=dict(channel_base=base, channel_max=cmax))


def discriminator_kwargs(state):
    """Official Discriminator init kwargs inferred from a rosinality d state dict."""
    try:
        num_blocks = _count(state, r"convs\.(\d+)\.conv1\.0\.weight")
        res = 4 << num_blocks
        channels = {4: state["final_conv.0.weight"].shape[0],
                    res: state["convs.0.0.weight"].shape[0]}
        for i in range(1, num_blocks + 1):
            channels[res >> i] = state[f"convs.{i}.conv2.1.weight"].shape[0]
        img_channels = state["convs.0.0.weight"].shape[1]
    except (KeyError, IndexError, TypeError) as e:
        raise CheckpointFormatError(f"not a rosinality discriminator state dict ({e!r})") from None
    base, cmax = _fit_channel_formula(channels, "rosinality discriminator")
    return dict(c_dim=0, img_resolution=res, img_channels=img_channels, channel_base=base,
                channel_max=cmax)


def _convert(state, module, names, extra=None):
    """Official-named state dict from rosinality tensors (reshaped to our shapes)."""
    source = {**state, **(extra or {})}
    ours = {}
    for name, target in module.state_dict().items():
        if name.endswith("resample_filter"):
            ours[name] = target
        elif name == "mapping.w_avg" and names[name] not in source:
            ours[name] = target  # checkpoints without latent_avg keep zeros
        elif names[name] not in source:
            raise CheckpointFormatError(f"rosinality checkpoint lacks {names[name]!r}")
        else:
            value = source[names[name]]
            if value.numel() != target.numel():
                raise CheckpointFormatError(f"{names[name]}: {list(value.shape)} does not fit "
                                            f"{name} {list(target.shape)}")
            ours[name] = value.reshape(target.shape)
    used = set(names.values())
    unknown = sorted(k for k in state if k not in used and not k.endswith(".kernel"))
    if unknown:
        raise CheckpointFormatError(f"rosinality checkpoint has unexpected tensors "
                                    f"{unknown[:5]}{' ...' if len(unknown) > 5 else ''}")
    return ours


def generator_from_rosinality(state, latent_avg=None):
    """(Generator, official-named state dict) for a rosinality g / g_ema state dict."""
    kwargs = generator_kwargs(state)
    G = Generator(**kwargs)
    names = generator_names(kwargs["img_resolution"], kwargs["mapping_kwargs"]["num_layers"])
    extra = {} if latent_avg is None else {"latent_avg": latent_avg}
    return G, _convert(state, G, names, extra)


def discriminator_from_rosinality(state):
    """(Discriminator, official-named state dict) for a rosinality d state dict."""
    kwargs = discriminator_kwargs(state)
    D = Discriminator(**kwargs)
    return D, _convert(state, D, discriminator_names(kwargs["img_resolution"]))
