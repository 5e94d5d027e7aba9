"""Watermarks: the key ring, schemes (KGW, Gumbel-max), and text detection.

    ring = KeyRing.load()                                   # file (0600) or environment
    scheme = make_scheme("kgw", ring, account="alice")
    params = scheme.apply(SamplingParams(...))              # generation marks its output
    detect(text, tokenizer, scheme)                         # alice's key (scheme.key_id)
    detect(text, tokenizer, scheme, layer="global")         # zero-bit: the provider's key
    detect_provider_ids(ids, scheme)                        # zero-bit, layout unknown
    detect_corpus_ids([ids, ...], scheme)                   # a collection as one test
    scan(text, tokenizer, make_schemes("kgw", ring, accounts))  # which account?

Names resolve lazily (module __getattr__): the key ring (`keygen`, the gateway's key checks)
imports neither torch nor transformers; the schemes and detection import them on first use.
"""

from __future__ import annotations

import sys
import types

from distillery.lazy import lazy_getattr

_WHERE = {
    "DetectionResult": "detect", "KeyTest": "detect", "ProviderResult": "detect",
    "ScanResult": "detect", "TokenMark": "detect", "detect": "detect",
    "detect_corpus_ids": "detect", "detect_ids": "detect", "detect_provider_corpus": "detect",
    "detect_provider_ids": "detect", "scan": "detect", "scan_ids": "detect",
    "score_corpus": "detect", "score_each": "detect", "score_keys": "detect",
    "SCHEMES": "factory", "make_scheme": "factory", "make_schemes": "factory",
    "Gumbel": "gumbel",
    "AccountKey": "keys", "KeyFileError": "keys", "KeyRing": "keys", "WatermarkKey": "keys",
    "default_key_path": "keys",
    "KGW": "kgw",
    "TRANSFORMERS_DEFAULT_KEY": "kgw_transformers", "TransformersKGW": "kgw_transformers",
    "Layer": "scheme", "WatermarkScheme": "scheme",
}
__all__ = sorted(_WHERE)


__getattr__ = lazy_getattr(__name__, _WHERE)


class _Package(types.ModuleType):
    def __setattr__(self, name: str, value) -> None:
        # importing the submodule `detect` binds it on this package, which would shadow the
        # function `detect` (what the eager imports used to bind): keep the function
        if isinstance(value, types.ModuleType) and _WHERE.get(name) == name:
            value = getattr(value, name)
        super().__setattr__(name, value)


sys.modules[__name__].__class__ = _Package
