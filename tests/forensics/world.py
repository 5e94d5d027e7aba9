"""A tiny, learnable teacher-student world for radioactivity tests: its helpers and constants
(conftest.py holds the fixtures).

The teacher is uniform over an alphabet of 64 whole-word tokens (" word" tokens that
re-tokenise to themselves) and marked by the real KGW logits processor (context width 1,
delta 4, two layers): its text is a pure watermark signal over bigram windows, which a 2-layer
tiny-random student learns in a few seconds of plain next-token training. The processor is
called on the alphabet's logits directly, without a model forward (the teacher has no model
to run): the same `scheme(input_ids, scores)` the engine calls while decoding.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

from distillery.models.loader import tiny_random_model
from distillery.watermark import make_scheme

N_ACCOUNTS = 120
ACCOUNTS = [f"acct-{i:03d}" for i in range(N_ACCOUNTS)]
CAMPAIGN, OTHER = "acct-007", "acct-042"
WM = {"context_width": 1, "delta": 4.0}  # short window, strong bias: learnable by a tiny model


def teacher_rows(tokenizer, alphabet, ring, account: str | None, n: int, seed: int,
                 tokens: int = 48) -> list[dict]:
    """n harvest-format rows of the marked teacher (account None: unmarked)."""
    g = torch.Generator().manual_seed(seed)
    V = len(tokenizer)
    base = torch.full((n, V), float("-inf"))
    base[:, torch.from_numpy(alphabet)] = 0.0
    scheme = make_scheme("kgw", ring, account=account, **WM) if account is not None else None
    ids = torch.from_numpy(alphabet)[torch.randint(len(alphabet), (n, 1), generator=g)]
    for _ in range(tokens - 1):
        scores = scheme(ids, base.clone()) if scheme is not None else base
        nxt = torch.multinomial(torch.softmax(scores, -1), 1, generator=g)
        ids = torch.cat([ids, nxt], dim=1)
    rows = []
    for i in range(n):
        msgs = [{"role": "user", "content": f"Write words {seed}-{i}."}]
        rows.append({"prompt_hash": f"{seed:04d}{i:06d}".ljust(64, "0"), "messages": msgs,
                     "response": tokenizer.decode(ids[i].tolist())})
    return rows


def alphabet_rows(tokenizer, alphabet, scheme, n: int, seed: int, tokens: int) -> list[str]:
    """Like teacher_rows, in numpy over the alphabet alone: the green list of each step from
    scheme.score_tok (the detector's side of the same key), for tests needing many rings."""
    rng = np.random.default_rng(seed)
    w = scheme.window if scheme is not None else 1
    out = []
    for _ in range(n):
        ids = [int(x) for x in rng.choice(alphabet, w)]
        while len(ids) < tokens:
            if scheme is None:
                ids.append(int(rng.choice(alphabet)))
                continue
            ctx = np.array([ids[-scheme.context_width:]], dtype=np.int64)
            is_global = bool(scheme.row_layers_np(ctx)[0][0])
            key = scheme.global_key if is_global else scheme.account_key
            win = np.repeat(np.array([ids[-w:]], dtype=np.int64), len(alphabet), axis=0)
            green = scheme.score_tok(win, alphabet, [key])[0]
            p = np.exp(scheme.delta * green)
            ids.append(int(rng.choice(alphabet, p=p / p.sum())))
        out.append(tokenizer.decode(ids))
    return out


def train_student(tokenizer, alphabet, rows: list[dict], steps: int = 80, seed: int = 0):
    """tiny-random trained on <bos> + answer (raw-text reading mode), cheaply: the rows of the
    (tied) embedding outside the alphabet and <bos> are zero, so their logits are exactly 0,
    and the loss over [alphabet logits, log(#others)] equals the full-vocabulary softmax loss
    while computing 65 columns of the 49k-token head instead of all of them."""
    torch.manual_seed(seed)
    model = tiny_random_model(len(tokenizer))
    emb = model.get_input_embeddings().weight
    keep = torch.zeros(len(emb), dtype=torch.bool)
    keep[torch.from_numpy(alphabet)] = True
    keep[tokenizer.bos_token_id] = True
    with torch.no_grad():
        emb[~keep] = 0.0
    cols = torch.from_numpy(alphabet)
    col_of = torch.full((len(emb),), -1, dtype=torch.long)
    col_of[cols] = torch.arange(len(cols))
    rest = torch.log(torch.tensor(float(len(emb) - len(cols))))
    seqs = torch.tensor([[tokenizer.bos_token_id, *tokenizer.encode(r["response"],
                                                                    add_special_tokens=False)]
                         for r in rows])
    opt = torch.optim.Adam([p for p in model.parameters()], lr=1e-2)
    g = torch.Generator().manual_seed(seed)
    model.train()
    for _ in range(steps):
        batch = seqs[torch.randint(len(seqs), (32,), generator=g)]
        h = model.model(input_ids=batch).last_hidden_state[:, :-1]  # (B, T-1, H)
        logits = h @ emb[cols].T  # (B, T-1, 64)
        logits = torch.cat([logits, rest.expand(*logits.shape[:2], 1)], dim=-1)
        loss = torch.nn.functional.cross_entropy(logits.flatten(0, 1),
                                                 col_of[batch[:, 1:]].flatten())
        opt.zero_grad()
        loss.backward()  # rows outside `keep` get no gradient: Adam leaves them at zero
        opt.step()
    return model.eval()


def save_student(model, tokenizer, path: Path) -> str:
    """A student directory as `distillery train` writes it (full fine-tune of tiny-random)."""
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    (path / "student.json").write_text(json.dumps({"base": "tiny-random", "lora": False}))
    return str(path)


def raw(rows: list[dict]) -> list[dict]:
    return [{**r, "messages": []} for r in rows]
