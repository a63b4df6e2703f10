"""Layer 2: the model zoo. Importing this package registers every family."""

from . import alexnet, fastnet, lenet, pretrained, resnet, vgg  # noqa: F401  (registration side effect)
from .defaults import make_config
from .registry import ModelSpec, build_model, count_parameters, get_spec, list_models, model_table, register_model

__all__ = ["ModelSpec", "build_model", "count_parameters", "get_spec", "list_models", "make_config", "model_table",
           "register_model"]
