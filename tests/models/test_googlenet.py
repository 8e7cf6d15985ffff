"""GoogLeNet specifics: torchvision layout (with and without auxiliary heads), auxiliary outputs in training
mode only, transform_input, and what separates the paper's network from torchvision's."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from imgcls.errors import ConfigError
from imgcls.models import AuxOutputs, count_params, create_model
from imgcls.models.googlenet import INCEPTION_TABLE, NUM_PARAMS_WITH_AUX, VARIANTS, BasicConv2d

from .conftest import layout, torchvision_layout


def _meta(name: str, **kw: object) -> nn.Module:
    with torch.device("meta"):
        return create_model(name, **kw)


def _branch3_kernel(model: nn.Module, module: str) -> tuple[int, ...]:
    return model.get_submodule(f"inception{module}.branch3.1.conv").kernel_size


def _small(name: str, **kw: object) -> nn.Module:
    torch.manual_seed(0)
    return create_model(name, num_classes=10, small_input=True, **kw)


def test_state_dict_matches_torchvision_with_and_without_aux() -> None:
    expected = torchvision_layout("googlenet")
    assert layout(_meta("googlenet")) == expected
    no_aux = layout(_meta("googlenet", aux_logits=False))
    assert no_aux == [(k, s) for k, s in expected if not k.startswith(("aux1.", "aux2."))]


@pytest.mark.parametrize("name", sorted(VARIANTS))
def test_parameter_counts_with_and_without_aux(name: str) -> None:
    without_aux, with_aux = VARIANTS[name].num_params, NUM_PARAMS_WITH_AUX[name]
    assert count_params(_meta(name, aux_logits=False)) == without_aux
    assert count_params(_meta(name)) == with_aux  # googlenet: 13,004,888 (torchvision with aux1 / aux2)


@pytest.mark.parametrize("name", sorted(VARIANTS))
def test_aux_outputs_in_training_mode_only(name: str) -> None:
    model = _small(name)
    x = torch.randn(2, 3, 32, 32)
    out = model.train()(x)
    assert isinstance(out, AuxOutputs)
    assert out.logits.shape == (2, 10) and out.aux_weight == 0.3
    assert [a.shape for a in out.aux] == [(2, 10), (2, 10)]
    # aux[0] comes from aux1 (on 4a), aux[1] from aux2 (on 4d): shift one head's bias and watch.
    with torch.no_grad():
        model.aux2.fc2.bias += 100.0
    torch.manual_seed(1)
    shifted = model(x)
    assert shifted.aux[1].mean() > 50 and shifted.aux[0].abs().mean() < 50
    with torch.no_grad():
        y = model.eval()(x)
    assert isinstance(y, torch.Tensor) and y.shape == (2, 10)
    assert isinstance(_small(name, aux_logits=False).train()(x), torch.Tensor)


def test_aux_heads_native_shapes() -> None:
    seen: list[torch.Size] = []
    for name in sorted(VARIANTS):
        seen.clear()
        model = _meta(name, num_classes=7).train()
        model.inception5b.register_forward_hook(lambda m, i, o: seen.append(o.shape))
        out = model(torch.empty(2, 3, 224, 224, device="meta"))
        assert out.logits.shape == (2, 7) and [a.shape for a in out.aux] == [(2, 7), (2, 7)]
        assert seen == [(2, 1024, 7, 7)]  # Table 1: 7x7x1024 before the average pool


def test_reset_classifier_resets_aux_heads() -> None:
    model = _small("googlenet")
    model.reset_classifier(4)
    out = model.train()(torch.randn(2, 3, 32, 32))
    assert out.logits.shape == (2, 4) and all(a.shape == (2, 4) for a in out.aux)


def test_transform_input_is_torchvisions() -> None:
    plain = _small("googlenet").eval()
    transformed = _small("googlenet", transform_input=True).eval()
    transformed.load_state_dict(plain.state_dict())
    x = torch.randn(2, 3, 32, 32)
    # torchvision's _transform_input, channel by channel.
    mean, std = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
    x_tv = torch.cat([x[:, c : c + 1] * (std[c] / 0.5) + (mean[c] - 0.5) / 0.5 for c in range(3)], 1)
    with torch.no_grad():
        torch.testing.assert_close(transformed(x), plain(x_tv))
    with pytest.raises(ConfigError, match="in_chans=3"):
        create_model("googlenet", in_chans=1, transform_input=True)


def test_torchvision_layout_details() -> None:
    model = _meta("googlenet")
    convs = [m for m in model.modules() if isinstance(m, BasicConv2d)]
    assert all(c.conv.bias is None and isinstance(c.bn, nn.BatchNorm2d) and c.bn.eps == 1e-3 for c in convs)
    assert {_branch3_kernel(model, n) for n in INCEPTION_TABLE} == {(3, 3)}  # torchvision's "5x5" branch
    assert model.maxpool4.kernel_size == 2 and model.dropout.p == 0.2
    assert not any(type(m).__name__ == "LocalResponseNorm" for m in model.modules())


def test_paper_network_details() -> None:
    model = _meta("googlenet_paper")
    assert not any(isinstance(m, nn.BatchNorm2d) for m in model.modules())
    assert all(c.conv.bias is not None for c in model.modules() if isinstance(c, BasicConv2d))
    assert {_branch3_kernel(model, n) for n in INCEPTION_TABLE} == {(5, 5)}
    assert model.maxpool4.kernel_size == 3 and model.dropout.p == 0.4
    assert type(model.lrn1).__name__ == type(model.lrn2).__name__ == "LocalResponseNorm"
    assert isinstance(model.aux1.pool, nn.AvgPool2d) and model.aux1.pool.kernel_size == 5  # 5x5 / 3
    # Table 1's output widths of the Inception modules.
    widths = [model.get_submodule(f"inception{n}").out_chs for n in INCEPTION_TABLE]
    assert widths == [256, 480, 512, 512, 512, 528, 832, 832, 1024]
