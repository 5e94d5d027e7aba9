"""What a careful thief does to our signal, built so that it can be measured: (a) paraphrasing
the harvested answers with a model of its own before training (`paraphrase_rows`), and (b) Pan
et al.'s inference-time watermark neutralisation ("WN", ACL 2025; REFERENCES "Radioactivity").

The thief holds its student, the student's base model and its harvested answers, but not our
key. For the most frequent 1- and 2-token prefixes of those answers (in the student's own
tokens) it compares the student's next-token distribution after the prefix alone with the
base's, and takes the tokens whose log-probability rose most under fine-tuning: where the
watermark was learned, those are disproportionately green. When serving, whenever the last
tokens of a context match such a prefix (the 2-token one first), it subtracts `penalty` from
those tokens' logits. The weights are untouched, so reading mode on the weights is not
affected; what changes is what the served model says, i.e. an API-mode test, or reading mode
through this hook (Reader(logits_hook=...)) as a stand-in for a served model's top-k.

Where this follows the paper and where it is simpler: the prefix statistics, the
rise-in-probability rule and the additive penalty are theirs; the thresholds here are a
count of tokens per prefix (`top`) and a fixed penalty, not their tuned values; prefixes are
scored with the prefix alone after <bos> (no longer context).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import torch

PARAPHRASE_PROMPT = ("Rewrite the following text in your own words. Keep its meaning and its "
                     "length, and add nothing.\n\n{text}")


def paraphrase_rows(rows: Sequence[dict], model: str, max_tokens: int = 160,
                    engine: str = "auto", seed: int = 0) -> list[dict]:
    """Scrubbing (a): every harvested answer rewritten by the thief's own unwatermarked model
    (sampled, temperature 0.7, top-p 0.95). Each row keeps its prompt; the paraphrase replaces
    the response, the original is kept as "original_response", and logprobs are dropped (they
    were the teacher's)."""
    from .api import generate_locally
    from .reading import TextRow

    asks = [TextRow(({"role": "user", "content": PARAPHRASE_PROMPT.format(text=r["response"])},),
                    "") for r in rows]
    said = generate_locally(asks, model, max_tokens=max_tokens, seed=seed, engine=engine)
    return [{**r, "response": a.response.strip(), "original_response": r["response"],
             "logprobs": None, "scrubbed": f"paraphrase:{model}"}
            for r, a in zip(rows, said, strict=True)]


@dataclass
class Neutraliser:
    """prefix (1 or 2 student token ids) -> token ids to push down; call it as a logits hook."""

    penalised: dict[tuple[int, ...], torch.Tensor]
    penalty: float

    def __call__(self, logits: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
        """(n, V) logits, (n, 2) the last two context tokens -> the neutralised logits."""
        logits = logits.clone()
        for i, (a, b) in enumerate(context.tolist()):
            ids = self.penalised.get((a, b))
            if ids is None:
                ids = self.penalised.get((b,))
            if ids is not None:
                logits[i, ids] -= self.penalty
        return logits

    @property
    def n_prefixes(self) -> int:
        return len(self.penalised)


def frequent_prefixes(texts: Iterable[Sequence[int]], n1: int, n2: int
                      ) -> list[tuple[int, ...]]:
    """The n1 most frequent single tokens and n2 most frequent token pairs of the corpus."""
    c1: Counter = Counter()
    c2: Counter = Counter()
    for ids in texts:
        c1.update((t,) for t in ids)
        c2.update(zip(ids[:-1], ids[1:], strict=True))
    return [p for p, _ in c1.most_common(n1)] + [p for p, _ in c2.most_common(n2)]


def _batch(prefixes: Sequence[tuple[int, ...]], bos: int | None):
    """Left-padded <bos> + prefix rows: the last position predicts the next token."""
    rows = [([bos] if bos is not None else []) + list(p) for p in prefixes]
    T = max(len(r) for r in rows)
    ids = torch.zeros((len(rows), T), dtype=torch.long)
    att = torch.zeros((len(rows), T), dtype=torch.long)
    for i, r in enumerate(rows):
        ids[i, T - len(r):] = torch.tensor(r)
        att[i, T - len(r):] = 1
    return ids, att


@torch.no_grad()
def neutraliser(student, base, tokenizer, texts: Iterable[str], n1: int = 200,
                n2: int = 800, top: int = 20, penalty: float = 2.0, batch: int = 32
                ) -> Neutraliser:
    """Build the thief's table from its student, its base (a model, or a context manager
    factory that turns the student into its base: a LoRA student's disable_adapter) and its
    harvested answers: for each frequent prefix, the `top` tokens whose probability rose most
    under fine-tuning."""
    import contextlib

    if isinstance(base, torch.nn.Module):
        base_model, base_ctx = base, contextlib.nullcontext
    else:
        base_model, base_ctx = student, base
    prefixes = frequent_prefixes(
        [tokenizer.encode(t, add_special_tokens=False) for t in texts], n1, n2)
    table = {}
    for lo in range(0, len(prefixes), batch):
        chunk = prefixes[lo: lo + batch]
        ids, att = _batch(chunk, tokenizer.bos_token_id)
        p_s = student(input_ids=ids, attention_mask=att).logits[:, -1].float().softmax(-1)
        with base_ctx():
            p_b = base_model(input_ids=ids, attention_mask=att).logits[:, -1].float().softmax(-1)
        rise = (p_s - p_b).topk(top, dim=-1)
        for p, v, i in zip(chunk, rise.values, rise.indices, strict=True):
            table[p] = i[v > 0]
    return Neutraliser(table, penalty)
