"""Budgets: cumulative fraction (``3%``), cumulative count (``45``) or increment (``+10``).

A ``Budget`` is parsed once, where it enters (a flag, a config file, the loop's schedule),
and travels as is: it is the text the user wrote (a ``str``, so it prints and serialises as
itself) carrying its exact value. Fractions are exact decimals (``Fraction``): 3% of 1454 is
43, never 43.62 -> 44 through float rounding; method.md section 1: the count added in a
round is ``floor(N_pool * fraction) - |labeled|``.
"""
from __future__ import annotations

import math
from fractions import Fraction
from typing import Optional, Tuple

from ..errors import AlsegError


def _decimal(value: Fraction) -> str:
    """A fraction with a finite decimal expansion written exactly (2, 2.5, 0.125)."""
    if value.denominator == 1:
        return str(value.numerator)
    digits = 0
    while (value * 10 ** digits).denominator != 1:
        digits += 1
        if digits > 30:
            return str(float(value))
    scaled = str(abs(value.numerator * 10 ** digits // value.denominator)).rjust(digits + 1, "0")
    return ("-" if value < 0 else "") + scaled[:-digits] + "." + scaled[-digits:]


class Budget(str):
    """'3%' (kind 'fraction'), '45' ('count') or '+10' ('add'), with its exact value."""

    kind: str
    fraction: Optional[Fraction]     # of the pool, for kind 'fraction'
    count: Optional[int]             # slices, for kinds 'count' and 'add'

    def __new__(cls, text) -> "Budget":
        if isinstance(text, Budget):
            return text
        raw = str(text).strip()
        kind, fraction, count = None, None, None
        try:
            if raw.endswith("%"):
                fraction = Fraction(raw[:-1].strip()) / 100
                kind = "fraction" if 0 < fraction <= 1 else None
            elif raw.startswith("+"):
                count = int(raw[1:])
                kind = "add" if count > 0 else None
            else:
                count = int(raw)
                kind = "count" if count > 0 else None
        except (ValueError, ZeroDivisionError):
            kind = None
        if kind is None:
            raise AlsegError(f"--budget {raw!s}: expected a percentage in (0, 100] like 3% "
                             f"or a positive slice count like 45")
        self = super().__new__(cls, raw)
        self.kind, self.fraction, self.count = kind, fraction, count
        return self

    @classmethod
    def percent(cls, value) -> "Budget":
        """A cumulative percentage from a number (a config's 2, 2.5): exact via its shortest repr."""
        return cls(f"{_decimal(Fraction(str(value)))}%")

    @classmethod
    def increment(cls, add: int) -> "Budget":
        if int(add) <= 0:
            raise AlsegError(f"--add {add}: the increment must be a positive count")
        return cls(f"+{int(add)}")

    @property
    def percent_text(self) -> str:
        """'2.5' for '2.5%': the round folder name's number."""
        return _decimal(self.fraction * 100)

    def total(self, n_pool: int, n_labeled: int) -> int:
        """The labelled-set size this budget asks for."""
        if self.kind == "fraction":
            return math.floor(n_pool * self.fraction)
        return n_labeled + self.count if self.kind == "add" else self.count


def parse_budget(budget, add: Optional[int], n_pool: int, n_labeled: int) -> Tuple[int, int]:
    """Return (cumulative total after this round, number of slices to add now)."""
    if budget is None and add is None:
        raise AlsegError("give a budget: --budget 3% (cumulative fraction of the pool), "
                         "--budget 45 (cumulative count) or --add 10 (increment)")
    if budget is not None and add is not None:
        raise AlsegError("give either --budget or --add, not both")
    b = Budget.increment(add) if add is not None else Budget(budget)
    total = b.total(n_pool, n_labeled)
    requested = str(b)
    if total > n_pool:
        raise AlsegError(f"budget {requested} = {total} slices is larger than the pool of {n_pool} "
                         f"train slices")
    added = total - n_labeled
    if added <= 0:
        raise AlsegError(f"budget {requested} = {total} slices of a pool of {n_pool} is already met: "
                         f"{n_labeled} slices are labelled; ask for a larger budget")
    return total, added
