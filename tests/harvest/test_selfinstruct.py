import pytest

from distillery.harvest import SelfInstructConfig, self_instruct
from distillery.harvest.selfinstruct import parse_instructions

SEEDS = ["Write a poem about the sea and the sky.", "Explain how a bicycle gear works.",
         "List three uses of vinegar in cleaning.", "Summarise the plot of a famous novel."]


def test_filters_near_duplicates_keywords_and_length():
    replies = iter([
        "4. Write a poem about the sea and the sky.\n"          # ROUGE-L 1.0 with a seed
        "5. Describe the image below in detail please.\n"       # keyword
        "6. Hi.\n"                                              # too short
        "7. Give four tips for learning a new language quickly.\n"
        "8. Give four tips for learning a new language fast.\n"  # near-duplicate of 7
        "9. Compare the climate of deserts and rainforests briefly.",
    ] * 3)
    new, stats = self_instruct(SEEDS, lambda _: next(replies),
                               SelfInstructConfig(n_target=5, max_requests=3))
    texts = [p.text for p in new]
    assert texts == ["Give four tips for learning a new language quickly.",
                     "Compare the climate of deserts and rainforests briefly."]
    assert stats["rouge"] >= 2 and stats["keyword"] >= 1 and stats["length"] >= 1
    assert all(p.strategy == "self-instruct" for p in new)


def test_shows_n_shots_examples_and_parses_plain_lists():
    seen = []

    def complete(prompt):
        seen.append(prompt)
        return "- Name five rivers that flow through Europe today."

    new, _ = self_instruct(SEEDS, complete, SelfInstructConfig(n_target=1, n_shots=3))
    assert len(new) == 1
    assert sum(s in seen[0] for s in SEEDS) == 3
    assert parse_instructions("1) a b c d\n2. e f g h") == ["a b c d", "e f g h"]


def test_config_validation_says_how_to_fix():
    with pytest.raises(ValueError, match="Alpaca uses 0.7"):
        SelfInstructConfig(rouge_threshold=1.5)
