"""imgcls: image classification on PyTorch, from pixel-comparing baselines to transformers."""

from imgcls.errors import ImgclsError
from imgcls.models import count_params, create_model, get_model_spec, list_models, load_pretrained

__version__ = "0.1.0"

__all__ = [
    "ImgclsError",
    "__version__",
    "count_params",
    "create_model",
    "get_model_spec",
    "list_models",
    "load_pretrained",
]
