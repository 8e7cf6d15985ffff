"""The model zoo. Importing this package registers every family; see :mod:`imgcls.models.registry`."""

# Families register their variant tables on import. One file per family (STYLE.md rule 2).
from imgcls.models import (
    alexnet,  # noqa: F401
    coatnet,  # noqa: F401
    densenet,  # noqa: F401
    efficientnet,  # noqa: F401
    googlenet,  # noqa: F401
    lenet,  # noqa: F401
    linear,  # noqa: F401
    mobilenet,  # noqa: F401
    mobilenetv2,  # noqa: F401
    preact_resnet,  # noqa: F401
    quicknet,  # noqa: F401
    resnet,  # noqa: F401
    resnet_cifar,  # noqa: F401
    shufflenet,  # noqa: F401
    shufflenetv2,  # noqa: F401
    squeezenet,  # noqa: F401
    swin,  # noqa: F401
    vgg,  # noqa: F401
    vit,  # noqa: F401
    wide_resnet,  # noqa: F401
    zfnet,  # noqa: F401
)
from imgcls.models.pretrained import load_pretrained
from imgcls.models.registry import (
    AuxOutputs,
    ModelSpec,
    Variant,
    count_params,
    create_model,
    get_model_spec,
    list_models,
    register_family,
    register_model,
)

__all__ = [
    "AuxOutputs",
    "ModelSpec",
    "Variant",
    "count_params",
    "create_model",
    "get_model_spec",
    "list_models",
    "load_pretrained",
    "register_family",
    "register_model",
]
