"""Identity-consistent transfer learning (Sec. 3.2, 5.1): fine-tune G_real into G_rendering.

StyleGAN2-ADA's 'stylegan2' configuration (non-saturating loss, lazy R1 and path-length
regularisation, style mixing, G EMA, ADA) on a dataset of rendered portraits, with the mapping
network and the ToRGB layers frozen and λs L_sketch + λc L_color between G_real(w+) and
G_rendering(w+) added to the generator loss (Eq. 3). Snapshots can be resumed exactly; several
GPUs (or CPU processes) through ``torchrun``.

Python::

    from drfhq_lib import finetune
    cfg = finetune.FinetuneConfig(source="ffhq.pkl", data="drfhq-1024.zip", out="runs/drfhq")
    network_file = finetune.train(cfg)

Command line::

    python -m drfhq_lib finetune --source ffhq.pkl --data drfhq-1024.zip --out runs/drfhq
    torchrun --nproc_per_node=4 -m drfhq_lib finetune ...       # 4 GPUs
    python -m drfhq_lib finetune --resume runs/drfhq             # continue a stopped run

Modules: :mod:`.config` (settings), :mod:`.data` (x-flips, stateless sampling),
:mod:`.objective` (the losses), :mod:`.trainer` (the loop), :mod:`.snapshots` (files, resume),
:mod:`.distributed` (torch.distributed), :mod:`.tiny` (small stand-ins); the command
line is :mod:`drfhq_lib.commands.finetune`.
"""

from __future__ import annotations

from drfhq_lib.finetune.config import ConfigError, FinetuneConfig
from drfhq_lib.finetune.data import DatasetResolutionError, MirroredDataset
from drfhq_lib.finetune.losses import IdentityLosses
from drfhq_lib.finetune.objective import StyleGAN2Objective
from drfhq_lib.finetune.snapshots import latest_snapshot, network_path, state_path
from drfhq_lib.finetune.tiny import make_tiny_dataset, make_tiny_source, tiny_networks
from drfhq_lib.finetune.trainer import LOG_NAME, Trainer, is_frozen, source_is_untrained, source_record
from drfhq_lib.finetune.summary import read_log, render_comparison, save_comparison_figure, summarize


def train(config: FinetuneConfig | None = None, resume=None, overrides: dict | None = None,
          **networks):
    """Run (or resume) a fine-tuning; returns the final network file. ``networks`` may hold
    ``sketch_net``, ``lpips_net``, ``embedder`` to use instead of the registry's."""
    return Trainer(config, resume, overrides, **networks).run()


__all__ = [
    "ConfigError", "DatasetResolutionError", "FinetuneConfig", "IdentityLosses", "LOG_NAME",
    "MirroredDataset", "StyleGAN2Objective", "Trainer", "is_frozen",
    "latest_snapshot", "make_tiny_dataset", "make_tiny_source", "network_path", "read_log",
    "render_comparison", "save_comparison_figure", "source_is_untrained", "source_record",
    "state_path", "summarize", "tiny_networks", "train",
]
