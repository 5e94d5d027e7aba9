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
