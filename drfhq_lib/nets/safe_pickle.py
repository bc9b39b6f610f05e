"""Read official stylegan2-ada-pytorch network pickles without running any of their code.

An official pickle stores each network through ``torch_utils.persistence``: the call
``_reconstruct_persistent_obj(meta)`` with ``meta = dict(type='class', version, module_src,
class_name, state)``, where ``module_src`` is Python source that the official loader would
``exec``. Here that call is answered by :class:`PersistentRecord`, which keeps the class name
and the plain ``state`` (the module's ``__dict__``: ``_parameters``, ``_buffers``,
``_modules``, ``_init_args``, ``_init_kwargs``, ...) and never looks at the source.

Every other global the pickle names must be on a short allow-list of data constructors
(tensors, storages, OrderedDict, EasyDict, numpy scalars); anything else -- os.system,
builtins.eval, subprocess.Popen, getattr -- raises UnsafeCheckpointError before it is called.
"""

import collections
import io
import pickle
import warnings

import numpy as np
import torch

from drfhq_lib.errors import CheckpointFormatError, UnsafeCheckpointError


class PersistentRecord:
    """Stand-in for an official persistent object: class name plus plain state, no code."""

    def __init__(self, class_name, state):
        self.class_name = class_name
        self.state = state

    def __repr__(self):
        return f"PersistentRecord({self.class_name!r})"


class EasyDict(dict):
    """Stand-in for dnnlib.util.EasyDict (a dict); official init kwargs are stored as these."""


def _reconstruct_persistent_obj(meta):
    if not isinstance(meta, dict) or meta.get("type") != "class":
        raise CheckpointFormatError("persistent object record is not of type 'class'")
    class_name, state = meta.get("class_name"), meta.get("state")
    if not isinstance(class_name, str) or not isinstance(state, dict):
        raise CheckpointFormatError("persistent object record lacks class_name or state")
    return PersistentRecord(class_name, state)


def _load_storage(data):
    """Tensor storages are nested legacy torch.save blobs; read them with weights_only."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # TypedStorage deprecation notices
        storage = torch.load(io.BytesIO(data), weights_only=True, map_location="cpu")
    if not isinstance(storage, torch.storage.TypedStorage):
        raise CheckpointFormatError(f"expected a tensor storage, got {type(storage).__name__}")
    return storage


def _rebuild_tensor(storage, storage_offset, size, stride, requires_grad=False,
                    backward_hooks=None, metadata=None):
    if not isinstance(storage, torch.storage.TypedStorage):
        raise CheckpointFormatError("tensor record does not point at a storage")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        tensor = torch.empty((0,), dtype=storage.dtype)
        return tensor.set_(storage.untyped(), storage_offset, size, stride)


def _rebuild_parameter(data, requires_grad, backward_hooks, state=None):
    return torch.nn.Parameter(data, requires_grad=requires_grad)


def _numpy_scalar(dtype, data=None):
    if not isinstance(dtype, np.dtype) or dtype.kind not in "biuf" or not isinstance(data, bytes):
        raise UnsafeCheckpointError(f"numpy scalar of dtype {dtype!r} is not plain data")
    return np.frombuffer(data, dtype=dtype, count=1)[0].item()


_ALLOWED = {
    ("torch_utils.persistence", "_reconstruct_persistent_obj"): _reconstruct_persistent_obj,
    ("dnnlib.util", "EasyDict"): EasyDict,
    ("collections", "OrderedDict"): collections.OrderedDict,
    ("builtins", "set"): set,
    ("builtins", "frozenset"): frozenset,
    ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor,
    ("torch._utils", "_rebuild_parameter"): _rebuild_parameter,
    ("torch._utils", "_rebuild_parameter_with_state"): _rebuild_parameter,
    ("torch.storage", "_load_from_bytes"): _load_storage,
    ("numpy", "dtype"): np.dtype,
    ("numpy.core.multiarray", "scalar"): _numpy_scalar,
    ("numpy._core.multiarray", "scalar"): _numpy_scalar,
}


class RestrictedUnpickler(pickle.Unpickler):
    """pickle.Unpickler whose find_class answers only from the allow-list above."""

    def __init__(self, file, path):
        super().__init__(file)
        self.path = path

    def find_class(self, module, name):
        try:
            return _ALLOWED[(module, name)]
        except KeyError:
            raise UnsafeCheckpointError(
                f"{self.path}: refusing to load: the pickle asks for '{module}.{name}', which "
                "is not a tensor or plain container. Nothing from it was run. Only load "
                "network pickles from sources you trust."
            ) from None

    def persistent_load(self, pid):
        raise CheckpointFormatError(f"{self.path}: unexpected persistent id in a plain pickle")


def load_pickle(path):
    """Unpickle `path` with the restricted unpickler; errors name the file."""
    try:
        with open(path, "rb") as f:
            return RestrictedUnpickler(f, path).load()
    except UnsafeCheckpointError:
        raise
    except CheckpointFormatError as e:
        raise CheckpointFormatError(f"{path}: {e}") from None
    except pickle.UnpicklingError as e:
        if "unsupported global" in str(e).lower():  # from a nested weights_only torch.load
            raise UnsafeCheckpointError(f"{path}: refusing to load a tensor blob: {e}") from None
        raise CheckpointFormatError(f"{path}: not a readable pickle (truncated or corrupt?): "
                                    f"{e}") from None
    except Exception as e:  # noqa: BLE001 - any failure of a corrupt stream is a format error
        raise CheckpointFormatError(f"{path}: not a readable network pickle (truncated or "
                                    f"corrupt?): {type(e).__name__}: {e}") from None


def plain(value):
    """EasyDicts and tuples from a pickle -> plain dicts and lists (JSON-like)."""
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    return value


def record_tensors(record, prefix=""):
    """Flatten a record tree into a state dict: persistent parameters and buffers."""
    state = record.state
    skip = state.get("_non_persistent_buffers_set") or set()
    tensors = {}
    for kind in ("_parameters", "_buffers"):
        for name, value in (state.get(kind) or {}).items():
            if value is None or (kind == "_buffers" and name in skip):
                continue
            if not isinstance(value, torch.Tensor):
                raise CheckpointFormatError(f"{prefix}{name} is not a tensor")
            tensors[prefix + name] = value
    for name, child in (state.get("_modules") or {}).items():
        if child is None:
            continue
        if not isinstance(child, PersistentRecord):
            raise CheckpointFormatError(f"sub-module {prefix}{name} is not a network record")
        tensors.update(record_tensors(child, f"{prefix}{name}."))
    return tensors


def record_classes(record):
    """Class names of a record and all its sub-records."""
    names = {record.class_name}
    for child in (record.state.get("_modules") or {}).values():
        if isinstance(child, PersistentRecord):
            names |= record_classes(child)
    return names


def record_init(record):
    """(init_args, init_kwargs) stored by the official persistence decorator."""
    state = record.state
    args = state.get("_init_args", state.get("init_args", ()))
    kwargs = state.get("_init_kwargs", state.get("init_kwargs"))
    if kwargs is None:
        raise CheckpointFormatError(f"{record.class_name} record carries no init kwargs")
    return plain(args), plain(kwargs)
