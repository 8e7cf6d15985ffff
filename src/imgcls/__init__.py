"""imgcls: image classification on PyTorch, from pixel-comparing baselines to transformers."""

import os as _os

# OpenMP worker threads that spin while they wait fight every other busy process for the cores: on the 2-core
# machines we develop on, with one core busy elsewhere, a quicknet_s training step ran at 580 img/s with
# spinning and 2,644 img/s with passive waiting (README, "Speed"). It must be set
# before torch loads OpenMP, so it only takes effect when imgcls is imported first; a user's setting wins.
_os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

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
