from distillery.distill.data import (
    Example,
    VocabMap,
    batches,
    collate,
    encode_row,
    encode_rows,
    split_rows,
)
from distillery.distill.losses import IGNORE
from distillery.harvest import read_rows
from distillery.models import load_tokenizer


def test_labels_cover_the_answer_and_the_end_token_even_when_pad_is_eos(echo_rows):
    tok = load_tokenizer("tiny-random")
    assert tok.pad_token_id == tok.eos_token_id  # SmolLM2's pitfall
    row = echo_rows(1)[0]
    ex = encode_row(row, tok, 256)
    labelled = [t for t in ex.labels if t != IGNORE]
    assert labelled[-1] == tok.eos_token_id
    assert tok.decode(labelled[:-1]) == row["response"]
    b = collate([ex, encode_row(echo_rows(2)[1], tok, 256)], tok.pad_token_id)
    # the end token stays labelled though it has the pad id; padding does not
    assert (b["labels"] == tok.eos_token_id).sum() == 2
    assert b["attention_mask"].sum() == len(ex.input_ids) + len(encode_row(
        echo_rows(2)[1], tok, 256).input_ids)


def test_plain_template_answer_ends_with_eos(echo_rows):
    tok = load_tokenizer("tiny-random")
    tok.chat_template = None
    from distillery.models.chat import ensure_chat_template

    ensure_chat_template(tok, has_own=False)  # Gemma's case: plain "User:/Assistant:" text
    ex = encode_row(echo_rows(1)[0], tok, 256)
    text = tok.decode(ex.input_ids)
    assert "Assistant: Sure." in text and ex.labels[-1] == tok.eos_token_id


def test_split_is_deterministic_and_disjoint(echo_rows):
    rows = echo_rows(200)
    tr, he = split_rows(rows, 0.2)
    assert len(tr) + len(he) == 200 and 20 < len(he) < 60
    assert {r["prompt_hash"] for r in tr}.isdisjoint({r["prompt_hash"] for r in he})
    assert split_rows(list(reversed(rows)), 0.2)[1] == list(reversed(he))


def test_batches_are_a_pure_function_of_seed_and_epoch():
    exs = [Example([1] * (1 + i % 7), [IGNORE] * (1 + i % 7)) for i in range(10)]
    for group in (1, 16):
        assert batches(exs, 3, 0, 1, group) == batches(exs, 3, 0, 1, group)
        assert batches(exs, 3, 0, 1, group) != batches(exs, 3, 0, 2, group)
        assert sorted(i for b in batches(exs, 3, 0, 0, group) for i in b) == list(range(10))


def test_grouping_by_length_cuts_padding():
    import random

    rng = random.Random(0)
    exs = [Example([1] * n, [IGNORE] * n) for n in (rng.randint(20, 256) for _ in range(512))]

    def padded(bs):
        return sum(len(b) * max(len(exs[i].input_ids) for i in b) for b in bs)

    real = sum(len(e.input_ids) for e in exs)
    assert padded(batches(exs, 8, 0, 0, group=16)) < 1.15 * real < padded(batches(exs, 8, 0, 0, 1))


def test_topk_targets_align_with_a_shared_tokenizer(engine_dataset):
    tok = load_tokenizer("tiny-random")
    rows = read_rows(engine_dataset)
    exs = encode_rows(rows, tok, 256, use_topk=True)
    # a row aligns exactly when the API's token strings are the student's own tokenization of
    # the answer (a random model often samples a non-canonical split: those rows are skipped)
    vocab = VocabMap(tok)
    for row, e in zip(rows, exs, strict=True):
        same = [vocab.get(t["token"]) for t in row["logprobs"]] == tok.encode(
            row["response"], add_special_tokens=False)
        assert (e.topk is not None) == same
    aligned = [e for e in exs if e.topk]
    assert len(aligned) >= 4
    e = aligned[0]
    for pos, ids, lps in e.topk:
        assert e.labels[pos] != IGNORE and len(ids) == len(lps) <= 5
    b = collate(aligned[:2], tok.pad_token_id)
    assert b["kd_ids"].shape[1] <= 5 and (b["kd_t"] >= 0).all()
    assert VocabMap(tok).get("token_id:42") == 42
