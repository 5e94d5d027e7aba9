"""Model registry, GGUF -> safetensors cache, tiny random models, chat formatting."""

from distillery.models.chat import default_stop, format_chat
from distillery.models.loader import LoadedModel, list_models, load, load_tokenizer
from distillery.models.registry import (
    DEFAULT_TEACHER,
    REGISTRY,
    ModelNotFoundError,
    ModelNotInstalledError,
    ModelSpec,
    distillery_home,
    resolve,
)

__all__ = [
    "DEFAULT_TEACHER", "REGISTRY", "LoadedModel", "ModelNotFoundError", "ModelNotInstalledError",
    "ModelSpec", "default_stop", "distillery_home", "format_chat", "list_models", "load",
    "load_tokenizer", "resolve",
]
