"""Budgets: cumulative fraction (``3%``), cumulative count (``45``) or increment (``--add``).

method.md section 1: the count added in a round is ``floor(N_pool * fraction) - |labeled|``.
Fractions are parsed as exact decimals (``Fraction``), so 3% of 1454 is 43, never 43.62 -> 44
through float rounding.
"""
from __future__ import annotations

import math
from fractions import Fraction
from typing import Optional, Tuple

from ..errors import AlsegError


def parse_budget(budget: Optional[str], add: Optional[int], n_pool: int, n_labeled: int) -> Tuple[int, int]:
    """Return (cumulative total after this round, number of slices to add now)."""
    if budget is None and add is None:
        raise AlsegError("give a budget: --budget 3% (cumulative fraction of the pool), "
                         "--budget 45 (cumulative count) or --add 10 (increment)")
    if budget is not None and add is not None:
        raise AlsegError("give either --budget or --add, not both")
    if add is not None:
        if int(add) <= 0:
            raise AlsegError(f"--add {add}: the increment must be a positive count")
        total = n_labeled + int(add)
        requested = f"+{int(add)}"
    else:
        text = str(budget).strip()
        try:
            if text.endswith("%"):
                frac = Fraction(text[:-1].strip()) / 100
                if frac <= 0 or frac > 1:
                    raise ValueError
                total = math.floor(n_pool * frac)
            else:
                total = int(text)
                if total <= 0:
                    raise ValueError
        except (ValueError, ZeroDivisionError):
            raise AlsegError(f"--budget {budget!r}: expected a percentage in (0, 100] like 3% "
                             f"or a positive slice count like 45") from None
        requested = text
    if total > n_pool:
        raise AlsegError(f"budget {requested} = {total} slices is larger than the pool of {n_pool} "
                         f"train slices")
    added = total - n_labeled
    if added <= 0:
        raise AlsegError(f"budget {requested} = {total} slices of a pool of {n_pool} is already met: "
                         f"{n_labeled} slices are labelled; ask for a larger budget")
    return total, added
