"""Networks: StyleGAN2-ADA G and D in pure PyTorch (loadable from official and rosinality
checkpoints), the external networks (LPIPS, sketch, identity, face parser, encoders), the weights
registry and safe checkpoint loading."""

from drfhq_lib.nets.checkpoint import load_extra, load_network, save_network
from drfhq_lib.nets.stylegan2 import Discriminator, Generator, MappingNetwork, SynthesisNetwork

__all__ = [
    "Discriminator",
    "Generator",
    "MappingNetwork",
    "SynthesisNetwork",
    "load_extra",
    "load_network",
    "save_network",
]
