"""Model registry, GGUF -> safetensors cache, tiny random models, chat formatting.

Names resolve lazily (module __getattr__), so the registry and `distillery_home` (needed by
the store, the key ring and `distillery info`) do not pay for importing torch and
transformers; `load` and friends import them on first use.
"""

from __future__ import annotations

import importlib

_WHERE = {
    "default_stop": "chat", "format_chat": "chat",
    "LoadedModel": "loader", "list_models": "loader", "load": "loader",
    "load_tokenizer": "loader",
    "DEFAULT_TEACHER": "registry", "REGISTRY": "registry", "ModelNotFoundError": "registry",
    "ModelNotInstalledError": "registry", "ModelSpec": "registry", "distillery_home": "registry",
    "resolve": "registry",
}
__all__ = sorted(_WHERE)


def __getattr__(name: str):
    if name not in _WHERE:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{_WHERE[name]}"), name)
