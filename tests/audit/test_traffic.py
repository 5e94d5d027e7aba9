"""The traffic format, labels beside it, and benign material kept apart from the attack pools."""

from __future__ import annotations

import json

import pytest

from distillery.audit.simulate import BENIGN, DEFAULT_MIX, SimConfig, simulate
from distillery.audit.traffic import Request, iter_traffic, labels_path, read_labels, write_traffic


def test_round_trip_and_labels_beside(tmp_path):
    reqs, labels = simulate(SimConfig(seed=3, scale=0.1))
    path = tmp_path / "traffic.jsonl"
    assert write_traffic(path, reqs, labels) == len(reqs)
    assert list(iter_traffic(path)) == reqs
    assert read_labels(path) == {lab.account: lab for lab in labels}
    assert labels_path(path).name == "traffic.labels.jsonl"
    text = path.read_text()
    keys = {k for line in text.splitlines() for k in json.loads(line)}
    assert not keys & {"persona", "role", "campaign", "label"}, keys
    assert not any(lab.persona in lab.account for lab in labels)  # opaque account names
    assert [r.t for r in reqs] == sorted(r.t for r in reqs)
    first = json.loads(text.splitlines()[0])
    assert {"t", "account", "endpoint"} <= set(first)


def test_request_validation():
    with pytest.raises(ValueError, match="either messages"):
        Request(0.0, "a")
    with pytest.raises(ValueError, match="unknown params"):
        Request(0.0, "a", prompt="x", params={"temprature": 1})
    with pytest.raises(ValueError, match="endpoint"):
        Request(0.0, "a", prompt="x", endpoint="embeddings")


def _shingles(text: str, k: int = 6) -> set[tuple[str, ...]]:
    w = text.lower().split()
    return {tuple(w[i:i + k]) for i in range(len(w) - k + 1)}


def test_benign_material_is_not_drawn_from_the_attack_pools():
    from distillery.harvest import prompts as P

    attack = set()
    for p in P.seed_prompts() + P.taxonomy_prompts():
        attack |= _shingles(p.text)
    mix = {k: v for k, v in DEFAULT_MIX.items() if k in BENIGN}
    reqs, _ = simulate(SimConfig(seed=0, mix=mix, scale=0.3))
    for r in reqs:
        text = " ".join(m["content"] for m in r.messages) if r.messages else r.prompt
        assert not (_shingles(text) & attack), text


def test_careful_attackers_copy_benign_behaviour_from_their_own_material():
    """The careful personas: sessions with history, a browser client's parameters, no
    chain-of-thought wording, and material shared with neither the benign personas nor the
    harvester's pools; what is left to catch them is what they ask, not how."""
    from distillery.audit.features import row_from_request
    from distillery.harvest import prompts as P

    careful = ("careful", "careful_mixed", "careful_campaign")
    reqs, labels = simulate(SimConfig(seed=0, mix={"careful": (1, 120), "careful_mixed": (1, 120),
                                                   "careful_campaign": (10, 12)}))
    bmix = {k: v for k, v in DEFAULT_MIX.items() if k in BENIGN}
    benign, _ = simulate(SimConfig(seed=0, mix=bmix, scale=0.3))
    persona = {lab.account: lab.persona for lab in labels}
    assert set(persona.values()) == set(careful)
    other = set()
    for p in P.seed_prompts() + P.taxonomy_prompts():
        other |= _shingles(p.text)
    for r in benign:
        other |= _shingles(" ".join(m["content"] for m in r.messages) if r.messages else r.prompt)
    rows = [row_from_request(r) for r in reqs if persona[r.account] != "careful_mixed"]
    assert not any(r.cot or r.top_logprobs or r.n > 1 or r.max_tokens > 800 for r in rows)
    assert 0.3 < sum(r.turns > 1 for r in rows) / len(rows) < 0.8  # conversations
    assert all(r.ua.startswith(("OpenAI/", "curl/", "LangChain/")) for r in rows)
    ours = {r.messages[-1]["content"] for r in reqs if persona[r.account] != "careful_mixed"}
    assert len(ours) > 100  # a sweep, not a template
    assert not any(_shingles(t) & other for t in ours)


def test_unknown_persona_is_refused():
    with pytest.raises(ValueError, match="unknown personas"):
        SimConfig(mix={"hacker": (1, 1)})
