"""Model registry, GGUF -> safetensors cache, tiny random models, chat formatting.

Names resolve lazily (module __getattr__), so the registry and `distillery_home` (needed by
the store, the key ring and `distillery info`) do not pay for importing torch and
transformers; `load` and friends import them on first use.
"""

from __future__ import annotations

from distillery.lazy import lazy_getattr

_WHERE = {
    "default_stop": "chat", "format_chat": "chat",
    "LoadedModel": "loader", "list_models": "loader", "load": "loader",
    "load_tokenizer": "loader",
    "DEFAULT_TEACHER": "registry", "REGISTRY": "registry", "ModelNotFoundError": "registry",
    "ModelNotInstalledError": "registry", "ModelSpec": "registry", "distillery_home": "registry",
    "resolve": "registry",
}
__all__ = sorted(_WHERE)


__getattr__ = lazy_getattr(__name__, _WHERE)
