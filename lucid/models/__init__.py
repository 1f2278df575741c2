"""lucid.models: the model registry (`@register_model`, `create_model`, `list_models`).

Model families register their factories here when their modules are imported."""
from .registry import (ModelRegistry, create_model, get_model, is_model, isolated_registry,
                       list_models, register_model, unregister_model)
from .resnet import resnet_18, resnet_34, resnet_50, resnet_101, resnet_152  # noqa: F401
from .detection import faster_rcnn_resnet_50_fpn  # noqa: F401

__all__ = ["register_model", "unregister_model", "list_models", "create_model", "get_model",
           "is_model", "isolated_registry", "ModelRegistry",
           "resnet_18", "resnet_34", "resnet_50", "resnet_101", "resnet_152",
           "faster_rcnn_resnet_50_fpn"]
