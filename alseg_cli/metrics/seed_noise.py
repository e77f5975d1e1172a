"""How much of a table is seed noise (``bootstrap``'s noise.md).

Bootstrap error bars resample test volumes; they say nothing about how far a cell would move
with another seed (another first pick, another training run). Two measures of that:

* ``seed_sd``: per (method, budget), the standard deviation (ddof=1) across seeds of each
  seed's mean score: what one more seed could plausibly change.
* ``split_half_agreement``: per budget, split the seeds every method has into two disjoint
  halves of equal size (every such split, each unordered pair once), rank the methods by their
  mean over each half, and count how often the two rankings agree: the share of method pairs
  ordered the same way in both halves (a tie in either half counts one half), and the share of
  splits naming the same best method. With 3 seeds the halves are single seeds, one left out.
  1.0 means another set of seeds would most likely rank the methods the same way; about 0.5
  for pairs means the ranking at that budget is a coin toss.
"""
from __future__ import annotations

from itertools import combinations
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np


def seed_means(by_seed: Dict[int, Dict]) -> Dict[int, float]:
    """seed -> mean over the test units (NaN units, as HD95 has, left out)."""
    return {s: float(np.nanmean(rec["scores"])) for s, rec in by_seed.items()}


def seed_sd(by_seed: Dict[int, Dict]) -> Optional[float]:
    """Standard deviation (ddof=1) across seeds of the per-seed means; None under 2 seeds."""
    values = list(seed_means(by_seed).values())
    return float(np.std(values, ddof=1)) if len(values) >= 2 else None


def half_splits(seeds: Sequence[int]) -> List[Tuple[Tuple[int, ...], Tuple[int, ...]]]:
    """Every unordered pair of disjoint, equal-size halves (size len // 2) of ``seeds``."""
    seeds = sorted(seeds)
    h = len(seeds) // 2
    out = []
    for a in combinations(seeds, h):
        rest = [s for s in seeds if s not in a]
        for b in combinations(rest, h):
            if a < b:
                out.append((a, b))
    return out


def _pair_agreement(x: np.ndarray, y: np.ndarray) -> float:
    """Share of pairs (i < j) ordered alike by x and y; a tie in either counts 1/2."""
    total, agree = 0, 0.0
    for i, j in combinations(range(len(x)), 2):
        sx, sy = np.sign(x[i] - x[j]), np.sign(y[i] - y[j])
        agree += 0.5 if sx == 0 or sy == 0 else float(sx == sy)
        total += 1
    return agree / total


def split_half_agreement(means: Dict[str, Dict[int, float]], lower_better: bool = False) -> Optional[Dict]:
    """``means``: method -> {seed: mean score} at one budget. Uses the seeds every method has;
    None when fewer than 2 methods or 2 such seeds."""
    methods = sorted(means)
    if len(methods) < 2:
        return None
    common = sorted(set.intersection(*(set(means[m]) for m in methods)))
    splits = half_splits(common)
    if not splits:
        return None
    sign = -1.0 if lower_better else 1.0
    pairs, tops = [], []
    for a, b in splits:
        xa = sign * np.array([np.mean([means[m][s] for s in a]) for m in methods])
        xb = sign * np.array([np.mean([means[m][s] for s in b]) for m in methods])
        pairs.append(_pair_agreement(xa, xb))
        tops.append(float(np.argmax(xa) == np.argmax(xb)))
    return {"methods": methods, "seeds": common, "splits": len(splits), "half_size": len(common) // 2,
            "pair_agreement": float(np.mean(pairs)), "top_agreement": float(np.mean(tops))}


def noise_table(cells: Dict, lower_better: bool = False, scale: float = 1.0) -> Dict:
    """Seed sd per (method, budget) and the split-half ranking agreement per budget.
    ``cells``: (label, budget) -> {seed: record with "scores"} (report.group_cells)."""
    labels = sorted({k[0] for k in cells})
    budgets = sorted({k[1] for k in cells})
    sd = [{"method": label, "budget": budget, "sd": seed_sd(by_seed), "seeds": sorted(by_seed)}
          for (label, budget), by_seed in sorted(cells.items())]
    ranking = []
    for budget in budgets:
        means = {label: seed_means(by_seed) for (label, b), by_seed in cells.items() if b == budget}
        r = split_half_agreement(means, lower_better)
        if r is not None:
            ranking.append({"budget": budget, **r})
    return {"methods": labels, "budgets": budgets, "sd": sd, "ranking": ranking, "scale": scale}


def noise_markdown(noise: Dict, metric_name: str) -> str:
    scale = noise["scale"]
    sd = {(r["method"], r["budget"]): r for r in noise["sd"]}
    head = "| method | " + " | ".join(f"{b:g}%" for b in noise["budgets"]) + " |"
    lines = [f"Seed noise, {metric_name}: standard deviation across seeds of each seed's mean "
             "(ddof 1; blank with one seed)\n", head, "|---" * (len(noise["budgets"]) + 1) + "|"]
    for label in noise["methods"]:
        row = []
        for b in noise["budgets"]:
            r = sd.get((label, b))
            row.append("" if r is None or r["sd"] is None else f"{scale * r['sd']:.1f} (n={len(r['seeds'])})")
        lines.append(f"| {label} | " + " | ".join(row) + " |")
    if noise["ranking"]:
        lines += ["", "Ranking agreement between disjoint halves of the seeds (every split into two halves "
                      "of equal size): share of method pairs ordered alike; share of splits with the same "
                      "best method", "", "| budget | seeds | splits | pairs alike | same best |",
                  "|---|---|---|---|---|"]
        for r in noise["ranking"]:
            lines.append(f"| {r['budget']:g}% | {len(r['seeds'])} ({r['half_size']} vs {r['half_size']}) | "
                         f"{r['splits']} | {100 * r['pair_agreement']:.0f} % | {100 * r['top_agreement']:.0f} % |")
    return "\n".join(lines) + "\n"
