"""Write a Hugging Face Llama model as an fp32 GGUF, so llama.cpp can run it.

Used for the tiny random test model: the llama.cpp engine's fast tests then run the very
weights the torch engine runs (fp32 both sides), and the two can be compared token for token.
The tokenizer's metadata is copied from the GGUF of the model whose tokenizer it borrows.
Tensor names and the Q/K row permutation follow llama.cpp's convert_hf_to_gguf.py (GGML's
rope rotates adjacent pairs, Hugging Face's rotates halves).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from transformers import PreTrainedModel

NAMES = {
    "input_layernorm": "attn_norm", "self_attn.q_proj": "attn_q", "self_attn.k_proj": "attn_k",
    "self_attn.v_proj": "attn_v", "self_attn.o_proj": "attn_output",
    "post_attention_layernorm": "ffn_norm", "mlp.gate_proj": "ffn_gate",
    "mlp.up_proj": "ffn_up", "mlp.down_proj": "ffn_down",
}


def _permute(w: np.ndarray, n_head: int) -> np.ndarray:
    """Hugging Face's (rotate-half) Q/K rows -> GGML's interleaved rope layout."""
    return w.reshape(n_head, 2, w.shape[0] // n_head // 2, *w.shape[1:]).swapaxes(1, 2) \
            .reshape(w.shape)


def _tensor_name(hf: str) -> str:
    if hf == "model.embed_tokens.weight":
        return "token_embd.weight"
    if hf == "model.norm.weight":
        return "output_norm.weight"
    if hf == "lm_head.weight":
        return "output.weight"
    _, _, layer, rest = hf.split(".", 3)  # model.layers.<i>.<rest>
    module = rest.removesuffix(".weight")
    return f"blk.{layer}.{NAMES[module]}.weight"


def write_llama_gguf(model: PreTrainedModel, tokenizer_gguf: Path, out: Path) -> None:
    import gguf

    cfg = model.config
    head_dim = cfg.hidden_size // cfg.num_attention_heads
    rope_theta = (getattr(cfg, "rope_parameters", None) or {}).get(
        "rope_theta", getattr(cfg, "rope_theta", 10000.0))
    w = gguf.GGUFWriter(out, arch="llama")
    w.add_block_count(cfg.num_hidden_layers)
    w.add_context_length(cfg.max_position_embeddings)
    w.add_embedding_length(cfg.hidden_size)
    w.add_feed_forward_length(cfg.intermediate_size)
    w.add_head_count(cfg.num_attention_heads)
    w.add_head_count_kv(cfg.num_key_value_heads)
    w.add_rope_freq_base(float(rope_theta))
    w.add_layer_norm_rms_eps(float(cfg.rms_norm_eps))
    w.add_rope_dimension_count(head_dim)
    w.add_vocab_size(cfg.vocab_size)
    w.add_file_type(gguf.LlamaFileType.ALL_F32)
    reader = gguf.GGUFReader(tokenizer_gguf)
    for key, field in reader.fields.items():
        if key.startswith("tokenizer."):
            sub = field.types[1] if field.types[0] == gguf.GGUFValueType.ARRAY else None
            w.add_key_value(key, field.contents(), field.types[0], sub)
    tied = getattr(cfg, "tie_word_embeddings", False)
    for name, t in model.state_dict().items():
        if name == "lm_head.weight" and tied:
            continue
        a = t.detach().float().cpu().numpy()
        if name.endswith("q_proj.weight"):
            a = _permute(a, cfg.num_attention_heads)
        elif name.endswith("k_proj.weight"):
            a = _permute(a, cfg.num_key_value_heads)
        w.add_tensor(_tensor_name(name), np.ascontiguousarray(a))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
