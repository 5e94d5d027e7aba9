"""Fixtures of the tiny radioactivity world (world.py holds its helpers and constants)."""

from __future__ import annotations

import re

import numpy as np
import pytest
import torch
from world import CAMPAIGN, OTHER, raw, teacher_rows, train_student

from distillery.models import load_tokenizer
from distillery.models.loader import tiny_random_model
from distillery.watermark import KeyRing


@pytest.fixture(scope="session")
def ring():
    return KeyRing({1: bytes(range(7, 39))})


@pytest.fixture(scope="session")
def tokenizer():
    return load_tokenizer("tiny-random")


@pytest.fixture(scope="session")
def alphabet(tokenizer):
    """64 token ids of the form " word" that round-trip through the tokenizer alone."""
    out = []
    for tid in range(len(tokenizer)):
        s = tokenizer.convert_ids_to_tokens(tid)
        if s and re.fullmatch(r"Ġ[a-z]{4,7}", s) and tokenizer.encode(
                tokenizer.decode([tid]), add_special_tokens=False) == [tid]:
            out.append(tid)
        if len(out) == 64:
            break
    return np.array(out)


@pytest.fixture(scope="session")
def world(tokenizer, alphabet, ring):
    """Unmarked teacher texts to read (the probe) and four suspects."""
    torch.set_num_threads(1)
    marked = teacher_rows(tokenizer, alphabet, ring, CAMPAIGN, 300, seed=1)
    unmarked = teacher_rows(tokenizer, alphabet, ring, None, 300, seed=2)
    other = teacher_rows(tokenizer, alphabet, ring, OTHER, 300, seed=3)
    # the exact test: text the tested keys did not mark (check.py, "Which text to read")
    probe = teacher_rows(tokenizer, alphabet, ring, None, 30, seed=4)
    return {
        "probe": raw(probe),
        "marked": train_student(tokenizer, alphabet, marked),
        "unmarked": train_student(tokenizer, alphabet, unmarked),
        "other": train_student(tokenizer, alphabet, other),
        "base": tiny_random_model(len(tokenizer)).eval(),
    }
