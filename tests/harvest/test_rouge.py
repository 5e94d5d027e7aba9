import pytest
from hypothesis import given
from hypothesis import strategies as st

from distillery.harvest.rouge import lcs_length, rouge_l


def test_identical_is_one_and_disjoint_is_zero():
    assert rouge_l("the cat sat on the mat", "The cat sat on the mat.") == 1.0
    assert rouge_l("alpha beta", "gamma delta") == 0.0
    assert rouge_l("", "anything") == 0.0


def test_known_value():
    # LCS("a b c d", "a c d e") = "a c d" = 3; P = R = 3/4 -> F = 0.75
    assert rouge_l("a b c d", "a c d e") == pytest.approx(0.75)
    assert lcs_length(list("abcbdab"), list("bdcaba")) == 4


words = st.lists(st.sampled_from(["a", "b", "c", "d"]), max_size=12)


@given(words, words)
def test_symmetric_and_bounded(a, b):
    assert rouge_l(a, b) == pytest.approx(rouge_l(b, a))
    assert 0.0 <= rouge_l(a, b) <= 1.0
