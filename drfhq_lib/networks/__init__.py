"""StyleGAN2-ADA networks in pure PyTorch, loadable from official and rosinality checkpoints."""

from .checkpoint import load_extra, load_network, save_network
from .stylegan2 import Discriminator, Generator, MappingNetwork, SynthesisNetwork

__all__ = [
    "Discriminator",
    "Generator",
    "MappingNetwork",
    "SynthesisNetwork",
    "load_extra",
    "load_network",
    "save_network",
]
