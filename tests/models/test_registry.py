"""The registry's mechanics: register_family's rows and family facts, and create_model's override rule."""

from __future__ import annotations

from dataclasses import dataclass

import pytest
import torch
from torch import nn

from imgcls.errors import ConfigError
from imgcls.models import count_params, create_model, get_model_spec
from imgcls.models.registry import Variant, register_family, unregister_model


@dataclass(frozen=True)
class _ToyConfig:
    width: int
    depth: int = 1
    widths: tuple[int, ...] = (2,)


class _Toy(nn.Module):
    """A family of one: a stack of ``depth`` linear layers of ``width`` units."""

    def __init__(
        self, cfg: _ToyConfig, *, num_classes: int = 10, in_chans: int = 1, scale: float = 1.0
    ) -> None:
        super().__init__()
        self.cfg, self.scale = cfg, scale
        self.body = nn.Sequential(*[nn.LazyLinear(cfg.width) for _ in range(cfg.depth)])
        self.num_features = cfg.width
        self.head = nn.Linear(cfg.width, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.body(x.flatten(1))) * self.scale


@pytest.fixture
def toy_family() -> tuple[str, str]:
    rows = {
        "toy_big": Variant(_ToyConfig(8), 123, "made up", gmacs=1.0),
        "toy_small": Variant(_ToyConfig(4), 45, "made up", input_size=32, num_classes=5, test_size=8),
    }
    register_family(
        "toy",
        _Toy,
        rows,
        cam_layer=None,
        input_size=(1, 224, 224),
        test_input_size=(1, 64, 64),
        test_kwargs={"scale": 2.0},
        small_input_kwargs={"depth": 2},
        gmacs_rtol=0.05,
    )
    yield "toy_big", "toy_small"
    for name in rows:
        unregister_model(name)


def test_register_family_gives_every_row_the_family_facts_unless_the_row_says_otherwise(
    toy_family: tuple[str, str],
) -> None:
    big, small = (get_model_spec(n) for n in toy_family)
    assert big.family == small.family == "toy"
    assert big.kwargs == {"cfg": _ToyConfig(8)} and big.num_params == 123 and big.gmacs == 1.0
    assert big.input_size == (1, 224, 224) and big.test_input_size == (1, 64, 64)
    assert big.ref_kwargs == {"num_classes": 1000} and big.gmacs_rtol == 0.05
    assert big.small_input_kwargs == {"depth": 2} and big.test_kwargs == {"scale": 2.0}
    # The row's own side, reference classes and test side; at 32 px it is its own small-image form.
    assert small.input_size == (1, 32, 32) and small.test_input_size == (1, 8, 8)
    assert small.ref_kwargs == {"num_classes": 5}
    assert small.small_input_kwargs is None and small.test_kwargs == {}


def test_a_config_field_replaces_the_rows_value_and_the_rest_goes_to_the_constructor(
    toy_family: tuple[str, str],
) -> None:
    model = create_model("toy_big", depth=3, scale=0.5)
    assert model.cfg == _ToyConfig(8, depth=3) and len(model.body) == 3
    assert model.scale == 0.5
    # A list (JSON, --model-kwargs) becomes a tuple, so the frozen config stays hashable.
    assert create_model("toy_big", widths=[4, 5]).cfg.widths == (4, 5)
    # The small-image form's fields apply first; the caller's own keywords win over them.
    assert create_model("toy_big", image_size=28).cfg.depth == 2
    assert create_model("toy_big", image_size=28, depth=4).cfg.depth == 4
    assert create_model("toy_big", image_size=28, small_input=False).cfg.depth == 1


def test_an_unknown_keyword_is_a_clear_error_naming_the_valid_ones(toy_family: tuple[str, str]) -> None:
    with pytest.raises(ConfigError, match=r"no argument 'colour': its config fields are width, depth, widths; "
                       r"its other arguments are scale"):  # fmt: skip
        create_model("toy_big", colour="red")


def test_resnet18_takes_groups_as_vit_takes_depth() -> None:
    """The issue's example: config fields of every family are overridable by name."""
    with torch.device("meta"):
        vit = create_model("vit_tiny_patch16_224", depth=2)
        plain, grouped = create_model("resnet18"), create_model("resnet18", groups=2)
        drop = create_model("resnet18", drop_path_rate=0.1)  # a constructor argument, not a field
    assert len(vit.encoder.layers) == 2
    assert grouped.cfg.groups == 2 and grouped.layer1[0].conv1.groups == grouped.layer1[0].conv2.groups == 2
    assert grouped.conv1.groups == 1 and grouped.fc.in_features == plain.fc.in_features == 512
    # Grouping halves every block's 3x3 kernels; stem, shortcuts, BN and classifier keep theirs.
    block_convs = sum(
        m.weight.numel() for m in plain.modules() if isinstance(m, nn.Conv2d) and m.kernel_size == (3, 3)
    )
    assert count_params(plain) - count_params(grouped) == block_convs // 2
    assert any(type(m).__name__ == "DropPath" for m in drop.modules())
    with pytest.raises(ConfigError, match="groups"):
        create_model("resnet18", groups=3)  # 64 channels do not split into 3 groups
