"""Pictures of what a trained model uses: class activation maps, occlusion, deconvnet projections, guided
backpropagation, filters and feature maps, attention maps and rollout.

Each method is a function ``method(model, images, ...)`` on normalised images (B, C, H, W) that returns
tensors; :mod:`imgcls.explain.render` draws them, and :func:`imgcls.explain.run.explain_run` (``imgcls
explain``) does both for a trained run. Hooks are removed afterwards and no weight or gradient of the model
is changed.
"""

from imgcls.explain.attention import attention_maps, attention_rollout, class_attention, window_attention
from imgcls.explain.cam import grad_cam, grad_cam_pp
from imgcls.explain.deconvnet import Projection, deconvnet, guided_backprop
from imgcls.explain.features import feature_maps, first_layer_filters
from imgcls.explain.hooks import layer_names, resolve_layer
from imgcls.explain.occlusion import occlusion

__all__ = [
    "Projection",
    "attention_maps",
    "attention_rollout",
    "class_attention",
    "deconvnet",
    "feature_maps",
    "first_layer_filters",
    "grad_cam",
    "grad_cam_pp",
    "guided_backprop",
    "layer_names",
    "occlusion",
    "resolve_layer",
    "window_attention",
]
