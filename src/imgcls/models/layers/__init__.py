"""Blocks shared across model families: written once, so a fix lands everywhere (STYLE.md rule 7)."""

from imgcls.models.layers.attention import Attention, attention
from imgcls.models.layers.conv import ConvNormAct, make_divisible
from imgcls.models.layers.drop import DropPath, drop_path, drop_path_rates
from imgcls.models.layers.head import ClassifierHead
from imgcls.models.layers.mlp import Mlp
from imgcls.models.layers.patch import PatchEmbed
from imgcls.models.layers.se import SqueezeExcite

__all__ = [
    "Attention",
    "ClassifierHead",
    "ConvNormAct",
    "DropPath",
    "Mlp",
    "PatchEmbed",
    "SqueezeExcite",
    "attention",
    "drop_path",
    "drop_path_rates",
    "make_divisible",
]
