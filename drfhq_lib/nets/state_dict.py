"""The one weights-only ``torch.load`` of the package, with one classification of its errors.

Every ``.pt``/``.pth`` file drfhq reads (external networks' state dicts, pSp/e4e and
rosinality checkpoints, fine-tuning state files) goes through :func:`load_weights_only`:

* the file is missing                          -> :class:`MissingWeightsError`
* torch's weights-only unpickler refuses it    -> :class:`UnsafeCheckpointError`
  (it references code or objects other than tensors and plain data; nothing is run)
* anything else that stops the read            -> :class:`CheckpointFormatError`
  (truncated zip, not a torch file, bad records)

Each message names the file, what it was meant to be (``what``) and what to do (``fix``).
"""

from __future__ import annotations

import os
import pickle
from pathlib import Path
from typing import Iterable

from drfhq_lib.errors import CheckpointFormatError, MissingWeightsError, UnsafeCheckpointError

DEFAULT_FIX = "download the file again (drfhq weights fetch) or pass the right path"


def _refused(err: Exception) -> bool:
    """torch names the global it refused ("Unsupported global: GLOBAL mod.Cls", "unsupported
    GLOBAL posix.system"); other unpickling failures ("Unsupported operand", truncated data)
    mean the bytes are not a torch file at all."""
    return isinstance(err, pickle.UnpicklingError) and "unsupported global" in str(err).lower()


def _detail(err: Exception) -> str:
    """The informative line of torch's long message (which global, which operand), short."""
    lines = [l.strip() for l in str(err).splitlines() if l.strip()]
    key = [l for l in lines if "nsupported" in l or "failed" in l.lower()]
    return " ".join((key[-1:] or lines[:1] or [type(err).__name__]))[:300]


def load_weights_only(path: str | os.PathLike, what: str = "checkpoint",
                      fix: str = DEFAULT_FIX, safe_globals: Iterable[type] = ()):
    """``torch.load(path, map_location="cpu", weights_only=True)`` with the errors above.

    ``safe_globals``: plain-data classes a released format needs besides tensors (e.g.
    ``argparse.Namespace`` in rosinality checkpoints); nothing with behaviour belongs there.
    """
    import torch

    path = Path(path)
    if not path.is_file():
        raise MissingWeightsError(f"{path}: no such checkpoint file (the {what}); {fix}")
    try:
        with torch.serialization.safe_globals(list(safe_globals)):
            return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # noqa: BLE001 - classified below, never passed on raw
        detail = _detail(err)
        if _refused(err):
            raise UnsafeCheckpointError(
                f"{path}: refused by torch's weights-only loader: the {what} references code "
                f"or objects other than tensors and plain data ({detail}); nothing was run. "
                "Use the authors' released file, never a re-pickled copy") from None
        raise CheckpointFormatError(
            f"{path}: not a readable torch file (truncated or corrupt?) for the {what}: "
            f"{type(err).__name__}: {detail}; {fix}") from None
