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


def test_unknown_persona_is_refused():
    with pytest.raises(ValueError, match="unknown personas"):
        SimConfig(mix={"hacker": (1, 1)})
