"""Paired differences between methods (``bootstrap --compare METHOD``).

Per-method error bars cannot say whether A beats B; a paired difference can. For one budget,
each method's (seeds, units) score matrix is averaged over its seeds per test unit, the
difference d_u = A_u - B_u is taken per unit, and the test units are resampled with the very
indices ``bootstrap`` uses (bootstrap.resample_indices: a function of the unit count and the
seed only). Reported: the mean difference, its 95 % percentile interval over the resamples,
and the fraction of resamples in which A is ahead (its statistic strictly better).

How seeds enter: they are averaged, not resampled; the interval is the test set's
sampling uncertainty of the seed-averaged difference. Seed noise is shown beside it by the
per-seed differences (seed k of A against seed k of B, where both have it: the loop's seed k
draws the same first random pick and training seed for every method).
"""
from __future__ import annotations

import warnings
from typing import Any, Dict, List

import numpy as np

from ..errors import AlsegError
from .bootstrap import _as_matrix, resample_indices


def paired_difference(a, b, n_boot: int = 1000, seed: int = 0, lower_better: bool = False) -> Dict[str, float]:
    """A vs B on the same test units: (runs, units) matrices, runs may differ in number."""
    a, b = _as_matrix(a, allow_nan=True), _as_matrix(b, allow_nan=True)
    if a.shape[1] != b.shape[1]:
        raise AlsegError(f"paired comparison needs the same test units ({a.shape[1]} vs {b.shape[1]})")
    with warnings.catch_warnings():      # an all-NaN column warns; it is dropped just after
        warnings.simplefilter("ignore", RuntimeWarning)
        d = np.nanmean(a, axis=0) - np.nanmean(b, axis=0)
    defined = ~np.isnan(d)           # HD95: a unit undefined for either method drops out
    if not defined.any():
        raise AlsegError("paired comparison: no test unit is defined for both methods")
    d = d[defined]
    stats = d[resample_indices(d.size, n_boot, seed)].mean(axis=1)
    ahead = stats < 0 if lower_better else stats > 0
    low, high = np.percentile(stats, [2.5, 97.5])
    return {"difference": float(d.mean()), "low": float(low), "high": float(high),
            "ahead": float(ahead.mean()), "units": int(d.size)}


def compare_table(cells: Dict, method: str, n_boot: int = 1000, seed: int = 0, lower_better: bool = False,
                  scale: float = 1.0) -> Dict[str, Any]:
    """``method`` against every other label at every budget both have. ``cells`` maps
    (label, budget) -> {seed: record with "names" and "scores"} (report.group_cells)."""
    labels = sorted({k[0] for k in cells})
    if method not in labels:
        raise AlsegError(f"--compare {method!r}: no such method in the runs (have: {', '.join(labels)})")
    rows: List[Dict[str, Any]] = []
    for (label, budget), other in sorted(cells.items()):
        mine = cells.get((method, budget))
        if label == method or mine is None:
            continue
        names_a, names_b = _names(mine), _names(other)
        if names_a != names_b:
            raise AlsegError(f"--compare: {method} and {label} at {budget:g}% were tested on different "
                             "volumes; compare runs evaluated on the same split")
        a = np.stack([mine[s]["scores"] for s in sorted(mine)])
        b = np.stack([other[s]["scores"] for s in sorted(other)])
        r = paired_difference(a, b, n_boot=n_boot, seed=seed, lower_better=lower_better)
        common = sorted(set(mine) & set(other))
        per_seed = {s: float(np.nanmean(mine[s]["scores"]) - np.nanmean(other[s]["scores"])) for s in common}
        rows.append({"method": method, "other": label, "budget": budget, **r,
                     "seeds": sorted(mine), "other_seeds": sorted(other), "per_seed": per_seed,
                     "text": _text(r, scale)})
    if not rows:
        raise AlsegError(f"--compare {method!r}: no other method shares a budget with it")
    others = sorted({r["other"] for r in rows})
    means = [m for m in (_mean_row(cells, method, other, n_boot, seed, lower_better, scale) for other in others) if m]
    return {"method": method, "rows": rows, "means": means, "others": others,
            "budgets": sorted({r["budget"] for r in rows}), "scale": scale, "lower_better": lower_better}


def _seed_mean(by_seed: Dict) -> np.ndarray:
    """A cell's score per test unit, averaged over its seeds."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return np.nanmean(np.stack([by_seed[s]["scores"] for s in sorted(by_seed)]), axis=0)


def _mean_row(cells: Dict, method: str, other: str, n_boot: int, seed: int, lower_better: bool, scale: float):
    """The difference of the mean over budgets (the paper's table 4 mDICE): per test unit, each
    method's seed-averaged score averaged over the budgets, then paired as a budget is; only
    for a method that has every budget ``method`` has (else the means are over other budgets)."""
    budgets = sorted(b for (label, b) in cells if label == method)
    if any((other, b) not in cells for b in budgets):
        return None
    mine, theirs = (np.stack([_seed_mean(cells[(lab, b)]) for b in budgets]) for lab in (method, other))
    r = paired_difference(mine, theirs, n_boot=n_boot, seed=seed, lower_better=lower_better)
    seeds = {lab: sorted(set.intersection(*(set(cells[(lab, b)]) for b in budgets))) for lab in (method, other)}

    def over_budgets(lab, s):          # seed s's mean score, averaged over the budgets
        return np.mean([np.nanmean(cells[(lab, bud)][s]["scores"]) for bud in budgets])
    per_seed = {s: float(over_budgets(method, s) - over_budgets(other, s))
                for s in sorted(set(seeds[method]) & set(seeds[other]))}
    return {"method": method, "other": other, "budget": "mean", "budgets": budgets, **r, "seeds": seeds[method],
            "other_seeds": seeds[other], "per_seed": per_seed, "text": _text(r, scale)}


def _text(r: Dict[str, float], scale: float) -> str:
    return f"{scale * r['difference']:+.1f} [{scale * r['low']:+.1f}, {scale * r['high']:+.1f}]"


def _names(by_seed: Dict) -> List[str]:
    names = [list(rec["names"]) for rec in by_seed.values()]
    return names[0] if all(n == names[0] for n in names) else None


def compare_markdown(comp: Dict[str, Any], metric_name: str) -> str:
    head = (f"{comp['method']} − other, {metric_name}: mean difference [95 % interval over paired "
            f"resamples of the test volumes]; ahead = share of resamples where {comp['method']} is better\n\n")
    columns = comp["budgets"] + (["mean"] if comp.get("means") else [])
    lines = ["| vs | " + " | ".join(column_name(b) for b in columns) + " |", "|---|" + "---|" * len(columns)]
    cell = {(r["other"], r["budget"]): r for r in comp["rows"] + comp.get("means", [])}
    for other in comp["others"]:
        row = [f"{cell[(other, b)]['text']} ({100 * cell[(other, b)]['ahead']:.0f} %)" if (other, b) in cell else ""
               for b in columns]
        lines.append(f"| {other} | " + " | ".join(row) + " |")
    note = ("\nmean: over the budgets, per test volume, then paired (the paper's mDICE).\n"
            if comp.get("means") else "")
    return head + "\n".join(lines) + "\n" + note


def column_name(budget) -> str:
    """'5%' for a budget, 'mean' for the mean over budgets."""
    return f"{budget:g}%" if isinstance(budget, (int, float)) else str(budget)


def write_compare_csv(comp: Dict[str, Any], path) -> None:
    import csv
    with open(path, "w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(["method", "other", "budget_percent", "difference", "low_95", "high_95", "ahead",
                    "units", "seeds", "other_seeds", "per_seed_differences"])
        for r in comp["rows"] + comp.get("means", []):
            w.writerow([r["method"], r["other"], column_name(r["budget"]).rstrip("%"), f"{r['difference']:.6f}",
                        f"{r['low']:.6f}", f"{r['high']:.6f}", f"{r['ahead']:.4f}", r["units"],
                        " ".join(map(str, r["seeds"])), " ".join(map(str, r["other_seeds"])),
                        " ".join(f"{s}:{v:.6f}" for s, v in r["per_seed"].items())])


def plot_compare(comp: Dict[str, Any], path, metric_name: str) -> None:
    """Differences with their intervals against the budget, one series per other method."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(6, 4), dpi=120)
    k = len(comp["others"])
    for j, other in enumerate(comp["others"]):
        rs = sorted((r for r in comp["rows"] if r["other"] == other), key=lambda r: r["budget"])
        x = np.array([r["budget"] for r in rs]) * (1 + 0.03 * (j - (k - 1) / 2))    # dodge on a log axis
        y = comp["scale"] * np.array([r["difference"] for r in rs])
        lo = comp["scale"] * np.array([r["low"] for r in rs])
        hi = comp["scale"] * np.array([r["high"] for r in rs])
        ax.errorbar(x, y, yerr=[y - lo, hi - y], marker="o", capsize=3, label=f"vs {other}")
    ax.axhline(0, color="k", lw=0.8)
    ax.set_xscale("log")
    ax.set_xticks(comp["budgets"], [f"{b:g}" for b in comp["budgets"]])
    ax.set_xlabel("annotated fraction of the pool (%)")
    ax.set_ylabel(f"{comp['method']} − other ({metric_name})")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, format="png")
    plt.close(fig)
