import numpy as np

from distillery.stats import first_occurrences, rows_in


def test_first_occurrence_of_each_row():
    rows = np.array([[1, 2], [3, 4], [1, 2], [1, 3], [3, 4]])
    assert first_occurrences(rows).tolist() == [True, True, False, True, False]


def test_zero_width_windows_dedup_on_the_token_alone():
    rows = np.array([[5], [5], [6]])
    assert first_occurrences(rows).tolist() == [True, False, True]


def test_rows_in():
    rows = np.array([[1, 2], [3, 4], [5, 6]])
    assert rows_in(rows, np.array([[3, 4], [9, 9]])).tolist() == [False, True, False]
    assert rows_in(rows, np.zeros((0, 2), dtype=int)).tolist() == [False] * 3


def test_packed_and_general_paths_agree():
    rng = np.random.default_rng(0)
    small = rng.integers(0, 50, (500, 3))  # packs into one int64
    big = small.astype(np.int64) << 40  # too wide to pack: np.unique(axis=0)
    big[:, 0] -= 1  # and negative
    assert first_occurrences(small).tolist() == first_occurrences(big).tolist()
    assert rows_in(small, small[::7]).tolist() == rows_in(big, big[::7]).tolist()
