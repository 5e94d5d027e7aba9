import pytest
import torch
from transformers import Gemma3ForCausalLM, Gemma3TextConfig, LlamaConfig, LlamaForCausalLM

from distillery.distill.forward import answer_logits
from distillery.distill.losses import IGNORE


def tiny(kind: str):
    torch.manual_seed(0)
    if kind == "llama":
        cfg = LlamaConfig(vocab_size=97, hidden_size=32, intermediate_size=64,
                          num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2)
        return LlamaForCausalLM(cfg).eval()
    cfg = Gemma3TextConfig(vocab_size=97, hidden_size=32, intermediate_size=64,
                           num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                           head_dim=8, final_logit_softcapping=5.0, sliding_window=4)
    return Gemma3ForCausalLM(cfg).eval()


def batch():
    ids = torch.randint(0, 97, (3, 9), generator=torch.Generator().manual_seed(1))
    attn = torch.ones_like(ids)
    attn[1, 6:] = 0
    labels = ids.clone()
    labels[:, :3] = IGNORE
    labels[1, 6:] = IGNORE
    labels[2, :7] = IGNORE
    return ids, attn, labels


@pytest.mark.parametrize("kind", ["llama", "gemma3-softcap"])
@pytest.mark.parametrize("lora", [False, True])
def test_answer_logits_equal_the_full_forward_at_answer_positions(kind, lora):
    model = tiny(kind)
    if lora:
        from peft import LoraConfig, get_peft_model

        model = get_peft_model(model, LoraConfig(r=4, target_modules="all-linear"))
        for n, p in model.named_parameters():  # non-zero adapters, so they must be used
            if "lora_B" in n:
                torch.nn.init.normal_(p, std=0.5)
    ids, attn, labels = batch()
    with torch.no_grad():
        full = model(input_ids=ids, attention_mask=attn).logits[:, :-1]
        logits, targets, keep = answer_logits(model, ids, attn, labels)
    assert keep.sum() == len(targets) == len(logits) == 6 + 3 + 2
    torch.testing.assert_close(logits, full[keep], rtol=1e-5, atol=1e-5)
    assert torch.equal(targets, labels[:, 1:][keep])


def test_answer_logits_hook_sees_the_two_tokens_before_each_prediction():
    """The served model's rewrite (a neutraliser) gets (token t-1, token t) for the logits at
    t, the same context the forensic reader gives it."""
    model = tiny("llama")
    ids, attn, labels = batch()
    seen = []

    def hook(logits, ctx):
        seen.append(ctx)
        return logits - 1.0

    with torch.no_grad():
        plain, _, keep = answer_logits(model, ids, attn, labels)
        hooked, _, _ = answer_logits(model, ids, attn, labels, logits_hook=hook)
    torch.testing.assert_close(hooked, plain - 1.0)
    prev = torch.roll(ids, 1, dims=1)[:, :-1][keep]
    assert torch.equal(seen[0], torch.stack([prev, ids[:, :-1][keep]], dim=-1))


def test_evaluate_refuses_a_hook_with_rouge_before_loading_anything():
    from distillery.distill import EvalConfig, evaluate

    cfg = EvalConfig(dataset="no-such.jsonl", student="no-such-student", rouge=True)
    with pytest.raises(ValueError, match="bits per byte only"):
        evaluate(cfg, logits_hook=lambda logits, ctx: logits)


def test_chunked_reads_equal_one_pass_and_an_empty_selection_is_empty():
    from distillery.distill.forward import next_token_argmax, next_token_topk

    model = tiny("gemma3-softcap")
    ids, attn, labels = batch()
    select = attn.bool()
    with torch.no_grad():
        p1, i1 = next_token_topk(model, ids, attn, select, k=3, chunk=2)
        p2, i2 = next_token_topk(model, ids, attn, select, k=3, chunk=None)
        top1 = next_token_argmax(model, ids, attn, select, chunk=5)
        torch.testing.assert_close(p1, p2)
        assert torch.equal(i1, i2) and torch.equal(top1, i2[:, 0]) and len(top1) == select.sum()
        none = torch.zeros_like(select)
        p, i = next_token_topk(model, ids, attn, none, k=3)
        assert p.shape == i.shape == (0, 3)
        assert next_token_argmax(model, ids, attn, none).shape == (0,)
        logits, targets, keep = answer_logits(model, ids, attn, torch.full_like(ids, IGNORE))
    assert logits.shape == (0, 97) and len(targets) == 0 and not keep.any()
