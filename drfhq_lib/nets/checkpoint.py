"""Load and save StyleGAN2 networks from three formats, never executing code from a file.

* official stylegan2-ada-pytorch pickles (``network-snapshot-*.pkl``, ``ffhq.pkl``): read with
  a restricted unpickler (see :mod:`.safe_pickle`); the architecture comes from the init
  kwargs stored in the pickle;
* rosinality ``.pt`` checkpoints (``{'g_ema', 'g', 'd', 'latent_avg'}``): ``torch.load`` with
  ``weights_only=True`` and a name mapping (see :mod:`.rosinality`);
* our own format, written by :func:`save_network`: safetensors, with the init kwargs and any
  JSON-able extras in the header metadata.

Whatever the format, the state must match the architecture exactly (strict), and every
error names the file and says what is wrong.
"""

import argparse
import json
import os

import torch
from safetensors import safe_open
from safetensors.torch import save_file

from drfhq_lib.errors import CheckpointFormatError
from drfhq_lib.nets.rosinality import discriminator_from_rosinality, generator_from_rosinality
from drfhq_lib.nets.state_dict import load_weights_only
from drfhq_lib.nets.safe_pickle import (
    PersistentRecord,
    load_pickle,
    plain,
    record_classes,
    record_init,
    record_tensors,
)
from drfhq_lib.nets.stylegan2 import Discriminator, Generator

FORMAT = "drfhq-networks/1"
NET_NAMES = ("G", "G_ema", "D")
_CLASSES = {"Generator": Generator, "Discriminator": Discriminator}
_OFFICIAL_CLASSES = {
    "Generator", "MappingNetwork", "SynthesisNetwork", "SynthesisBlock", "SynthesisLayer",
    "ToRGBLayer", "FullyConnectedLayer", "Conv2dLayer", "Discriminator", "DiscriminatorBlock",
    "DiscriminatorEpilogue", "MinibatchStdLayer",
}
_TORCH_LEGACY_MAGIC = b"\x80\x02\x8a\x0al\xfc\x9cF\xf9 j\xa8P\x19"


def load_network(path, device="cpu", requires_grad=False):
    """{'G', 'G_ema', 'D'} (those present) from any supported file, in eval mode.

    Parameters are frozen unless requires_grad=True (e.g. for fine-tuning).
    """
    nets, _ = _read(os.fspath(path))
    return {name: net.eval().requires_grad_(requires_grad).to(device)
            for name, net in nets.items()}


def load_extra(path):
    """The non-network content of a file: save_network's `extra`, or for official pickles
    the training_set_kwargs and augment_pipe init kwargs, as plain data."""
    _, extra = _read(os.fspath(path))
    return extra


def save_network(path, nets, extra=None):
    """Write networks (name -> Generator/Discriminator) and optional extras to `path`.

    Format: safetensors with tensors named '<net>/<param>'; the init kwargs of each network
    and the JSON-able part of `extra` go into the header metadata; tensor values of `extra`
    are stored as 'extra/<key>'. The file is written to '<path>.part' and then renamed, so a
    crash never leaves a half-written checkpoint under the final name.
    """
    path = os.fspath(path)
    specs, tensors = {}, {}
    for name, net in nets.items():
        cls = next((c for c in _CLASSES.values() if isinstance(net, c)), None)
        if cls is None or "/" in name or name == "extra":
            raise TypeError(f"save_network: cannot save {name!r} ({type(net).__name__}); "
                            "expected Generator/Discriminator under a name without '/'")
        specs[name] = {"class": cls.__name__, "init_kwargs": net.init_kwargs}
        for key, value in net.state_dict().items():  # copies: safetensors refuses shared storage
            copy = value.detach().cpu().clone(memory_format=torch.contiguous_format)
            tensors[f"{name}/{key}"] = copy
    extra = dict(extra or {})
    for key in [k for k, v in extra.items() if isinstance(v, torch.Tensor)]:
        tensors[f"extra/{key}"] = extra.pop(key).detach().cpu().contiguous()
    try:
        metadata = {"format": FORMAT, "nets": json.dumps(specs), "extra": json.dumps(extra)}
    except TypeError as e:
        raise TypeError(f"save_network: extra must hold tensors or JSON-able values: {e}") from None
    save_file(tensors, path + ".part", metadata=metadata)
    os.replace(path + ".part", path)


# ----------------------------------------------------------------------------------------


def _read(path):
    kind = _sniff(path)
    if kind == "safetensors":
        return _read_ours(path)
    if kind == "torch":
        return _read_rosinality(path)
    return _read_official(path)


def _sniff(path):
    size = os.path.getsize(path)
    if size == 0:
        raise CheckpointFormatError(f"{path}: the file is empty")
    with open(path, "rb") as f:
        head = f.read(16)
    if head.startswith(b"PK\x03\x04") or head.startswith(_TORCH_LEGACY_MAGIC):
        return "torch"
    if head[8:9] == b"{":  # safetensors: u64 header length, then a JSON header
        return "safetensors"
    return "pickle"


def _few(names, limit=5):
    more = f" (+{len(names) - limit} more)" if len(names) > limit else ""
    return ", ".join(names[:limit]) + more


def _build(path, name, cls, args, kwargs):
    try:
        return cls(*args, **kwargs)
    except (TypeError, ValueError) as e:
        raise CheckpointFormatError(f"{path}: {name}: its init kwargs do not describe a "
                                    f"supported StyleGAN2 {cls.__name__}: {e}") from None


def load_state_strict(path, name, module, tensors):
    """Strict load with a readable error listing a few missing/unexpected/misshaped names."""
    expected = module.state_dict()
    missing = sorted(set(expected) - set(tensors))
    unexpected = sorted(set(tensors) - set(expected))
    problems = []
    if missing:
        problems.append(f"missing {_few(missing)}")
    if unexpected:
        problems.append(f"unexpected {_few(unexpected)}")
    misshaped = sorted(k for k in set(expected) & set(tensors)
                       if tensors[k].shape != expected[k].shape)
    if misshaped:
        problems.append(f"wrong shape {_few(misshaped)}")
    if problems:
        raise CheckpointFormatError(f"{path}: {name} does not match its architecture: "
                                    + "; ".join(problems))
    module.load_state_dict(tensors, strict=True)


def _read_official(path):
    data = load_pickle(path)
    if not isinstance(data, dict):
        raise CheckpointFormatError(f"{path}: expected a dict of networks (G, D, G_ema), got "
                                    f"{type(data).__name__}")
    nets = {name: _from_record(path, name, data[name])
            for name in NET_NAMES if data.get(name) is not None}
    if not nets:
        keys = sorted(map(str, data))
        raise CheckpointFormatError(f"{path}: no networks: expected keys G, D or G_ema, found "
                                    f"{_few(keys) or 'none'}")
    extra = {"training_set_kwargs": plain(data.get("training_set_kwargs"))}
    if isinstance(data.get("augment_pipe"), PersistentRecord):
        extra["augment_pipe_kwargs"] = record_init(data["augment_pipe"])[1]
    return nets, extra


def _from_record(path, name, record):
    expected = "Discriminator" if name == "D" else "Generator"
    if not isinstance(record, PersistentRecord):
        raise CheckpointFormatError(f"{path}: {name} is a {type(record).__name__}, not a "
                                    "persistent network object")
    if record.class_name != expected:
        raise CheckpointFormatError(f"{path}: {name} is a {record.class_name!r}, expected the "
                                    f"StyleGAN2-ADA {expected}")
    foreign = sorted(record_classes(record) - _OFFICIAL_CLASSES)
    if foreign:
        raise CheckpointFormatError(f"{path}: {name} contains {_few(foreign)}, which "
                                    "StyleGAN2-ADA networks do not (another architecture, "
                                    "e.g. StyleGAN3?)")
    try:
        args, kwargs = record_init(record)
        tensors = record_tensors(record)
    except CheckpointFormatError as e:
        raise CheckpointFormatError(f"{path}: {name}: {e}") from None
    module = _build(path, name, _CLASSES[expected], args, kwargs)
    load_state_strict(path, name, module, tensors)
    return module


def _read_rosinality(path):
    data = load_weights_only(path, "rosinality checkpoint",
                             "download the rosinality .pt again",
                             safe_globals=[argparse.Namespace])
    if not isinstance(data, dict) or not {"g_ema", "g", "d"} & set(data):
        found = sorted(map(str, data)) if isinstance(data, dict) else [type(data).__name__]
        raise CheckpointFormatError(f"{path}: not a rosinality checkpoint: expected keys "
                                    f"g_ema, g or d, found {_few(found)}")
    latent_avg = data.get("latent_avg")
    converters = {
        "g_ema": ("G_ema", lambda state: generator_from_rosinality(state, latent_avg)),
        "g": ("G", generator_from_rosinality),
        "d": ("D", discriminator_from_rosinality),
    }
    nets = {}
    for key, (name, convert) in converters.items():
        if key in data:
            try:
                module, state = convert(data[key])
            except CheckpointFormatError as e:
                raise CheckpointFormatError(f"{path}: {key}: {e}") from None
            load_state_strict(path, name, module, state)
            nets[name] = module
    return nets, {}


def _read_ours(path):
    try:
        with safe_open(path, framework="pt", device="cpu") as f:
            meta = f.metadata() or {}
            tensors = {key: f.get_tensor(key) for key in f.keys()}
    except Exception as e:  # noqa: BLE001 - truncated or corrupt safetensors
        raise CheckpointFormatError(f"{path}: not a readable safetensors file (truncated or "
                                    f"corrupt?): {e}") from None
    if meta.get("format") != FORMAT:
        raise CheckpointFormatError(f"{path}: safetensors file without drfhq network metadata "
                                    f"(format={meta.get('format')!r})")
    try:
        specs = json.loads(meta["nets"])
        extra = json.loads(meta.get("extra", "{}"))
    except (KeyError, ValueError) as e:
        raise CheckpointFormatError(f"{path}: damaged network metadata: {e}") from None
    nets = {}
    for name, spec in specs.items():
        cls = _CLASSES.get(spec.get("class"))
        if cls is None:
            raise CheckpointFormatError(f"{path}: {name} has unknown class {spec.get('class')!r}")
        module = _build(path, name, cls, (), spec.get("init_kwargs", {}))
        prefix = f"{name}/"
        load_state_strict(path, name, module, {k[len(prefix):]: v for k, v in tensors.items()
                                          if k.startswith(prefix)})
        nets[name] = module
    extra.update({k[len("extra/"):]: v for k, v in tensors.items() if k.startswith("extra/")})
    return nets, extra
