"""ROUGE-L (Lin 2004, "ROUGE: A Package for Automatic Evaluation of Summaries", section 3).

ROUGE-L F = (1 + b^2) R P / (R + b^2 P), with R = LCS(x, y) / |y|, P = LCS(x, y) / |x| over word
tokens; b = 1 gives the harmonic mean, which is what Self-Instruct's filter (rouge_score's
`rougeL` fmeasure) uses. Tokens: lower-cased alphanumeric runs, as rouge_score's tokenizer.
Shared by the self-instruct filter and the evaluation.
"""

from __future__ import annotations

import re

_TOKEN = re.compile(r"[a-z0-9]+")


def tokenize(text: str) -> list[str]:
    return _TOKEN.findall(text.lower())


def lcs_length(a: list[str], b: list[str]) -> int:
    """Longest common subsequence by dynamic programming, O(|a| |b|) time, O(|b|) memory."""
    if len(a) < len(b):
        a, b = b, a
    prev = [0] * (len(b) + 1)
    for x in a:
        cur = [0]
        for j, y in enumerate(b):
            cur.append(prev[j] + 1 if x == y else max(prev[j + 1], cur[j]))
        prev = cur
    return prev[-1]


def rouge_l(candidate: str | list[str], reference: str | list[str]) -> float:
    """ROUGE-L F1 of two texts (or pre-tokenized word lists); 0 when either is empty."""
    c = tokenize(candidate) if isinstance(candidate, str) else candidate
    r = tokenize(reference) if isinstance(reference, str) else reference
    if not c or not r:
        return 0.0
    lcs = lcs_length(c, r)
    if lcs == 0:
        return 0.0
    p, rec = lcs / len(c), lcs / len(r)
    return 2 * p * rec / (p + rec)
