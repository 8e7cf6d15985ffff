"""Blocks shared across model families: written once, so a fix lands everywhere (STYLE.md rule 7)."""

from imgcls.models.layers.attention import Attention, attention, attention_maps
from imgcls.models.layers.checkpoint_names import use_checkpoint_names
from imgcls.models.layers.conv import ConvNormAct, make_divisible
from imgcls.models.layers.drop import DropPath, drop_path, drop_path_rates
from imgcls.models.layers.head import ClassifierHead
from imgcls.models.layers.init import kaiming_init_, linear_normal_, linear_uniform_out_, linear_zero_bias_
from imgcls.models.layers.lrn import LocalResponseNorm
from imgcls.models.layers.mlp import Mlp
from imgcls.models.layers.patch import PatchEmbed
from imgcls.models.layers.se import SqueezeExcite
from imgcls.models.layers.shuffle import ChannelShuffle, channel_shuffle, channel_unshuffle
from imgcls.models.layers.stages import cifar_stages, small_input_strides

__all__ = [
    "Attention",
    "ChannelShuffle",
    "ClassifierHead",
    "ConvNormAct",
    "DropPath",
    "LocalResponseNorm",
    "Mlp",
    "PatchEmbed",
    "SqueezeExcite",
    "attention",
    "attention_maps",
    "channel_shuffle",
    "cifar_stages",
    "channel_unshuffle",
    "drop_path",
    "drop_path_rates",
    "kaiming_init_",
    "linear_normal_",
    "linear_uniform_out_",
    "linear_zero_bias_",
    "make_divisible",
    "small_input_strides",
    "use_checkpoint_names",
]
