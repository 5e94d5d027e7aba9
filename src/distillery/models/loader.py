"""Load registered models, dequantising a shipped GGUF once into a safetensors cache.

Layout under $DISTILLERY_HOME/models/<name>/:
  tokenizer/  the tokenizer (parsing it from GGUF is ~12 s of pure Python: cache it too)
  model/      the dequantised model as safetensors
Each directory is written to a temporary sibling and renamed, so a killed load never leaves a
half-written cache that a later load would trust.
"""

from __future__ import annotations

import logging
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

import torch
from transformers import (
    AutoModelForCausalLM,
    AutoTokenizer,
    GgufConfig,
    LlamaConfig,
    PreTrainedModel,
    PreTrainedTokenizerBase,
)
from transformers.utils import logging as hf_logging

from distillery.models.chat import ensure_chat_template
from distillery.models.registry import REGISTRY, ModelSpec, distillery_home, gguf_path, resolve

log = logging.getLogger(__name__)

DTYPES = {"float32": torch.float32, "fp32": torch.float32, "bfloat16": torch.bfloat16,
          "bf16": torch.bfloat16, "float16": torch.float16, "fp16": torch.float16}


@dataclass
class LoadedModel:
    spec: ModelSpec
    model: PreTrainedModel
    tokenizer: PreTrainedTokenizerBase


def cache_dir(spec: ModelSpec) -> Path:
    return distillery_home() / "models" / spec.name


def is_cached(spec: ModelSpec) -> bool:
    if spec.source in ("local", "student"):
        return True
    if spec.source == "tiny-random":
        return (cache_dir(REGISTRY[spec.tokenizer_of]) / "tokenizer").is_dir()
    d = cache_dir(spec)
    return (d / "tokenizer").is_dir() and (d / "model").is_dir()


def parse_dtype(dtype: str | torch.dtype) -> torch.dtype:
    if isinstance(dtype, torch.dtype):
        return dtype
    if dtype not in DTYPES:
        raise ValueError(f"unknown dtype {dtype!r}: use one of {', '.join(DTYPES)}")
    return DTYPES[dtype]


def _write_atomically(target: Path, write) -> None:
    """write(tmp) then rename tmp -> target. If another process cached the same thing first
    (the rename finds target there), its copy wins and ours is dropped."""
    tmp = target.with_name(target.name + f".tmp-{os.getpid()}-{time.time_ns()}")
    tmp.mkdir(parents=True)
    try:
        write(tmp)
        tmp.rename(target)
    except OSError:
        shutil.rmtree(tmp, ignore_errors=True)
        if not target.is_dir():
            raise
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def dequantize_gguf(spec: ModelSpec) -> PreTrainedModel:
    """The slow path (20 s SmolLM2, 55 s Gemma): GGUF -> float32 torch weights."""
    path = gguf_path(spec)
    log.info("dequantising %s from %s (once; cached afterwards)", spec.name, path)
    # dequantize=True, else the model stays flagged as quantized and can be neither saved
    # nor trained.
    return AutoModelForCausalLM.from_pretrained(
        path.parent, gguf_file=path.name, quantization_config=GgufConfig(dequantize=True),
        dtype=torch.float32,
    )


def load_tokenizer(name: str) -> PreTrainedTokenizerBase:
    spec = resolve(name)
    if spec.source == "student" and spec.lora:
        return load_tokenizer(spec.base)
    if spec.source in ("local", "student"):
        tok = AutoTokenizer.from_pretrained(spec.path)
    elif spec.source == "tiny-random":
        tok = load_tokenizer(spec.tokenizer_of)
    else:
        target = cache_dir(spec) / "tokenizer"
        if not target.is_dir():
            path = gguf_path(spec)
            log.info("parsing the %s tokenizer from GGUF (once)", spec.name)
            tok = AutoTokenizer.from_pretrained(path.parent, gguf_file=path.name)
            target.parent.mkdir(parents=True, exist_ok=True)
            _write_atomically(target, tok.save_pretrained)
        tok = AutoTokenizer.from_pretrained(target)
    ensure_chat_template(tok, has_own=spec.chat)
    if tok.pad_token_id is None:
        tok.pad_token = tok.eos_token
    return tok


def tiny_random_model(vocab_size: int, seed: int = 0) -> PreTrainedModel:
    """A 2-layer Llama: fast enough for unit tests, peaked enough that greedy argmax is stable.

    initializer_range is 10x the usual 0.02 so next-token logits are far from ties; batched
    and one-by-one greedy decoding then agree despite float reduction-order noise.
    """
    config = LlamaConfig(
        vocab_size=vocab_size, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=2048,
        initializer_range=0.2, tie_word_embeddings=True, bos_token_id=1, eos_token_id=2,
        pad_token_id=2,
    )
    torch.manual_seed(seed)
    return AutoModelForCausalLM.from_config(config, dtype=torch.float32)


def _from_cache(path: Path, dtype: torch.dtype) -> PreTrainedModel:
    """A cached load takes ~2 s: no progress bar (the dequantisation keeps its own)."""
    shown = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        return AutoModelForCausalLM.from_pretrained(path, dtype=dtype)
    finally:
        if shown:
            hf_logging.enable_progress_bar()


def load(name: str, dtype: str | torch.dtype = torch.float32) -> LoadedModel:
    """Load a model by registered name, student directory or local directory, from cache when
    possible. A LoRA student comes back as a peft model on its base, so
    `with model.disable_adapter():` gives the base back (evaluation compares the two)."""
    spec = resolve(name)
    torch_dtype = parse_dtype(dtype)
    tokenizer = load_tokenizer(name)
    if spec.source == "student" and spec.lora:
        from peft import PeftModel

        model = PeftModel.from_pretrained(load(spec.base, dtype=torch_dtype).model,
                                          str(spec.path))
    elif spec.source in ("local", "student"):
        model = _from_cache(spec.path, torch_dtype)
    elif spec.source == "tiny-random":
        model = tiny_random_model(len(tokenizer)).to(torch_dtype)
    else:
        target = cache_dir(spec) / "model"
        if not target.is_dir():
            model = dequantize_gguf(spec)
            _write_atomically(target, model.save_pretrained)
        model = _from_cache(target, torch_dtype)
    model.eval()
    return LoadedModel(spec=spec, model=model, tokenizer=tokenizer)


def gguf_file(name: str) -> Path:
    """The GGUF the llama.cpp engine runs: the shipped file, or for tiny-random an fp32 export
    of the very weights `load` builds (written once, named by their hash)."""
    spec = resolve(name)
    if spec.source == "gguf-package":
        return gguf_path(spec)
    if spec.source != "tiny-random":
        raise ValueError(f"model {spec.name!r} has no GGUF: serve it with the torch engine")
    import hashlib

    from distillery.models.gguf_export import write_llama_gguf

    model = load(name).model
    digest = hashlib.sha256()
    for t in model.state_dict().values():
        digest.update(t.numpy().tobytes())
    target = cache_dir(spec) / f"gguf-{digest.hexdigest()[:16]}"
    if not target.is_dir():
        source = gguf_path(REGISTRY[spec.tokenizer_of])
        _write_atomically(target, lambda d: write_llama_gguf(model, source, d / "model.gguf"))
    return target / "model.gguf"


def list_models() -> list[dict]:
    from distillery.models.registry import is_installed

    return [
        {"name": s.name, "description": s.description, "installed": is_installed(s),
         "cached": is_cached(s)}
        for s in REGISTRY.values()
    ]
