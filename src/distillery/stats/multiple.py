"""Multiple-testing correction for scanning many keys over one text."""

from __future__ import annotations

import numpy as np


def holm_bonferroni(p_values: np.ndarray | list[float]) -> np.ndarray:
    """Holm (1979) step-down adjusted p-values, controlling the family-wise error rate.

    H0_i: key i did not mark the text. Sorted ascending p_(1) <= ... <= p_(m), the adjusted
    value is max_{j <= i} min(1, (m - j + 1) p_(j)); reject H0_i when it is <= alpha. The
    smallest adjusted p is m * p_(1) (Bonferroni), so scanning N keys costs a factor N in p,
    i.e. tokens growing like log N (REFERENCES "Attribution cost"). Returned in input order.
    """
    p = np.asarray(p_values, dtype=np.float64)
    m = p.size
    if m == 0:
        return p.copy()
    order = np.argsort(p, kind="stable")
    stepped = np.minimum(1.0, (m - np.arange(m)) * p[order])
    adjusted = np.empty(m)
    adjusted[order] = np.maximum.accumulate(stepped)
    return adjusted
