"""Watermarks: the key ring, schemes (KGW, Gumbel-max), and text detection.

    ring = KeyRing.load()                                   # file (0600) or environment
    scheme = make_scheme("kgw", ring, account="alice")
    params = scheme.apply(SamplingParams(...))              # generation marks its output
    detect(text, tokenizer, scheme)                         # alice's key (scheme.key_id)
    detect(text, tokenizer, scheme, layer="global")         # zero-bit: the provider's key
    detect_provider_ids(ids, scheme)                        # zero-bit, layout unknown
    detect_corpus_ids([ids, ...], scheme)                   # a collection as one test
    scan(text, tokenizer, make_schemes("kgw", ring, accounts))  # which account?
"""

from distillery.watermark.detect import (
    DetectionResult,
    KeyTest,
    ProviderResult,
    ScanResult,
    TokenMark,
    detect,
    detect_corpus_ids,
    detect_ids,
    detect_provider_corpus,
    detect_provider_ids,
    scan,
    scan_ids,
    score_corpus,
    score_each,
    score_keys,
)
from distillery.watermark.factory import SCHEMES, make_scheme, make_schemes
from distillery.watermark.gumbel import Gumbel
from distillery.watermark.keys import (
    AccountKey,
    KeyFileError,
    KeyRing,
    WatermarkKey,
    default_key_path,
)
from distillery.watermark.kgw import KGW
from distillery.watermark.kgw_transformers import TRANSFORMERS_DEFAULT_KEY, TransformersKGW
from distillery.watermark.scheme import Layer, WatermarkScheme

__all__ = [
    "KGW", "SCHEMES", "TRANSFORMERS_DEFAULT_KEY", "AccountKey", "DetectionResult", "Gumbel",
    "KeyFileError", "KeyRing", "KeyTest", "Layer", "ProviderResult", "ScanResult", "TokenMark",
    "TransformersKGW", "WatermarkKey", "WatermarkScheme", "default_key_path", "detect",
    "detect_corpus_ids", "detect_ids", "detect_provider_corpus", "detect_provider_ids",
    "make_scheme", "make_schemes", "scan", "scan_ids", "score_corpus", "score_each",
    "score_keys",
]
