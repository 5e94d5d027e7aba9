"""Exact tests (binomial, Gamma), de-duplication, multiple-testing correction: pure functions."""

from distillery.stats.dedup import first_occurrences, row_ids, rows_in
from distillery.stats.exact import (
    P_FLOOR,
    TestResult,
    binomial_tail,
    binomial_test,
    gamma_tail,
    gamma_test,
)
from distillery.stats.multiple import holm_bonferroni

__all__ = [
    "P_FLOOR", "TestResult", "binomial_tail", "binomial_test", "first_occurrences", "gamma_tail",
    "gamma_test", "holm_bonferroni", "row_ids", "rows_in",
]
