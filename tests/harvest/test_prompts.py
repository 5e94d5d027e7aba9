import json

import pytest

from distillery.harvest import (
    COT_VARIANTS,
    Prompt,
    PromptFile,
    cot_prompts,
    iter_prompts,
    load_seed_tasks,
    prompt_hash,
    seed_prompts,
    taxonomy_prompts,
)


def test_seed_tasks_are_many_distinct_and_varied():
    rows = load_seed_tasks()
    assert len(rows) >= 200
    assert len({r["category"] for r in rows}) >= 12
    assert len({r["instruction"] for r in rows}) == len(rows)
    assert len({r["id"] for r in rows}) == len(rows)


def test_seed_category_filter_and_unknown_category():
    math = seed_prompts(["math"])
    assert math and all(p.category == "math" for p in math)
    with pytest.raises(ValueError, match="unknown categories"):
        seed_prompts(["nope"])


def test_taxonomy_sweep_covers_every_domain():
    ps = taxonomy_prompts()
    assert len(ps) == 720 and len({p.hash for p in ps}) == 720
    assert len({p.category for p in ps}) == 12


def test_cot_variants_wrap_the_base_prompt():
    base = seed_prompts(["math"])[:2]
    out = cot_prompts(base)
    assert len(out) == 2 * len(COT_VARIANTS)
    step = [p for p in out if p.strategy.startswith("cot:step-by-step")]
    assert all("step by step" in p.text for p in step)
    sysv = [p for p in out if p.strategy.startswith("cot:system")][0]
    assert sysv.messages[0]["role"] == "system"
    assert len(cot_prompts(base, one_each=True)) == 2
    with pytest.raises(ValueError, match="unknown chain-of-thought"):
        cot_prompts(base, ["nope"])


def test_prompt_hash_depends_on_messages_only():
    a = Prompt.user("hi", "seed")
    b = Prompt.user("hi", "taxonomy", "x")
    assert a.hash == b.hash == prompt_hash([{"role": "user", "content": "hi"}])
    assert Prompt.user("hi", "seed", system="s").hash != a.hash


def test_prompt_file_roundtrip_dedups(tmp_path):
    ps = seed_prompts()[:5]
    n = PromptFile.write(tmp_path / "p.jsonl", [*ps, ps[0]])
    assert n == 5
    assert PromptFile.read(tmp_path / "p.jsonl") == ps
    (tmp_path / "q.jsonl").write_text(json.dumps({"prompt": "hello"}) + "\n")
    assert next(iter_prompts(tmp_path / "q.jsonl")).text == "hello"
