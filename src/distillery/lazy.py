"""Lazy package exports: a package lists where each public name lives, and a name's module is
imported on first use (PEP 562's module __getattr__). Commands that only need the key ring or
the registry then do not pay for importing torch and transformers."""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable


def lazy_getattr(package: str, where: dict[str, str]) -> Callable[[str], object]:
    """-> the module __getattr__ of `package`: name -> package.<where[name]>.name, imported
    once and then bound on the package (later lookups do not come back here)."""

    def __getattr__(name: str) -> object:
        if name not in where:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(f"{package}.{where[name]}"), name)
        sys.modules[package].__dict__[name] = value
        return value

    return __getattr__
