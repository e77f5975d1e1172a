"""`alseg bootstrap`: gather evaluations over methods x budgets x seeds, bootstrap error bars
(appendix D, metrics/bootstrap.py), and write the paper-style table as CSV, Markdown, JSON
and a PNG plot of the metric against the annotated fraction.

Metrics: ``dice`` (higher is better, shown in %), ``hd95`` (the paper's pooled medpy HD95)
and ``hd95_max`` (MONAI's directed maximum), lower is better, in the evaluation's unit.
A unit's score is the mean over foreground classes; HD95's NaNs (class absent) are left out.
A cell that lacks a seed the other cells have is marked (``missing_seeds``) and warned about.

Sources are loop run directories (RUN_DIR/<method>/seed<k>/round<pct>/eval.json) or single
evaluation JSONs laid out the same way or carrying "method", "budget" and "seed" fields.
"""
from __future__ import annotations

import csv
import json
import math
import re
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

import numpy as np

from ..atomic import atomic_path
from ..errors import AlsegError
from ..manifest import make_manifest
from .bootstrap import bootstrap_error
from .compare import compare_markdown, compare_table, plot_compare, write_compare_csv
from .seed_noise import noise_markdown, noise_table, seed_sd
from .timings import stage_times, timings_markdown

ROUND_RE = re.compile(r"^round(\d+(?:\.\d+)?)$")
SEED_RE = re.compile(r"^seed(\d+)$")


METRICS = {   # name -> (label, lower is better, scale for display)
    "dice": ("mean Dice (%)", False, 100.0),
    "hd95": ("mean HD95 (pooled, medpy)", True, 1.0),
    "hd95_max": ("mean HD95 (directed max, MONAI)", True, 1.0),
}


def _check_metric(metric: str) -> None:
    if metric not in METRICS:
        raise AlsegError(f"--metric {metric!r}: choose {', '.join(METRICS)}")


def _unit_mean(entry, metric: str = "dice") -> float:
    """Mean over foreground classes of one unit's metric (dict class -> value, list, or number).

    Dice values must all be present; HD95's NaN / null (class absent) are left out, and a
    unit with no defined HD95 is NaN.
    """
    values = entry.get(metric, entry if metric == "dice" else None) if isinstance(entry, dict) else entry
    if values is None:
        raise AlsegError(f"an evaluation entry has no {metric} values (re-run evaluate with this alseg)")
    if isinstance(values, dict):
        values = [v for k, v in values.items() if k not in ("mean", "volume", "slice_id")]
    elif not isinstance(values, (list, tuple)):
        values = [values]
    if metric == "dice":
        values = [float(v) for v in values if v is not None]
        if not values:
            raise AlsegError("an evaluation entry has no Dice values")
        return float(np.mean(values))
    values = np.array([np.nan if v is None else float(v) for v in values], dtype=np.float64)
    values = values[~np.isnan(values)]
    return float(values.mean()) if values.size else float("nan")


def _without_absent(evaluation: Dict[str, Any], entries):
    """Drop classes the evaluation flags as absent from every reference mask (their Dice
    is 1 by convention whatever the model predicts); list-valued entries align with ``classes``."""
    absent = set(evaluation.get("absent_classes") or [])
    names = evaluation.get("classes")
    if not absent or not names:
        return entries
    keep = [i for i, n in enumerate(names) if n not in absent]

    def strip(e):
        if not isinstance(e, dict):
            return e
        out = dict(e)
        for key, v in e.items():
            if isinstance(v, list) and len(v) == len(names):
                out[key] = [v[i] for i in keep]
            elif isinstance(v, dict):
                out[key] = {k: x for k, x in v.items() if k not in absent}
        return out
    return {k: strip(e) for k, e in entries.items()} if isinstance(entries, dict) else [strip(e) for e in entries]


def unit_scores(evaluation: Dict[str, Any], unit: str = "volume",
                metric: str = "dice") -> Tuple[List[str], np.ndarray]:
    """(names, per-unit mean-over-classes metric) from an evaluation dict, sorted by name."""
    keys = ("per_volume", "volumes") if unit == "volume" else ("per_slice", "slices")
    entries = None
    for key in keys:
        if key in evaluation:
            entries = evaluation[key]
            break
    if entries is None:
        hint = " (rerun evaluate with per-slice scores)" if unit == "slice" else ""
        raise AlsegError(f"evaluation has no per-{unit} scores (keys {keys}){hint}")
    entries = _without_absent(evaluation, entries)
    if isinstance(entries, dict):
        pairs = [(str(name), _unit_mean(e, metric)) for name, e in entries.items()]
    else:
        name_keys = ("volume", "name", "slice_id", "id")
        pairs = []
        for i, e in enumerate(entries):
            name = next((e[k] for k in name_keys if isinstance(e, dict) and k in e), str(i))
            pairs.append((str(name), _unit_mean(e, metric)))
    pairs.sort()
    return [p[0] for p in pairs], np.array([p[1] for p in pairs], dtype=np.float64)


def mean_dice(evaluation: Dict[str, Any]) -> float:
    """Mean over classes of the mean over volumes (method.md section 6)."""
    for key in ("mean_dice", "dice_mean"):
        if key in evaluation and evaluation[key] is not None:
            return float(evaluation[key])
    summary = evaluation.get("summary") or {}
    if "mean_dice" in summary:
        return float(summary["mean_dice"])
    # mean over volumes of the per-volume class mean equals the class mean of volume means
    # when every volume has every class, which evaluate guarantees (empty cases defined).
    return float(unit_scores(evaluation, "volume")[1].mean())


def _load_json(path: Path) -> Dict[str, Any]:
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise AlsegError(f"{path}: cannot read evaluation JSON ({exc})") from None


def _records_from_eval(path: Path, label: Optional[str] = None) -> Dict[str, Any]:
    data = _load_json(path)
    parts = path.resolve().parts
    method, seed, budget = data.get("method"), data.get("seed"), data.get("budget")
    if len(parts) >= 4:
        m_round, m_seed = ROUND_RE.match(parts[-2]), SEED_RE.match(parts[-3])
        if m_round and m_seed:
            budget = float(m_round.group(1)) if budget is None else budget
            seed = int(m_seed.group(1)) if seed is None else seed
            method = parts[-4] if method is None else method
    if method is None or budget is None or seed is None:
        raise AlsegError(f"{path}: cannot tell method/budget/seed; place it at "
                         "<method>/seed<k>/round<pct>/eval.json or add those fields")
    return {"label": label or str(method), "budget": float(str(budget).rstrip("%")),
            "seed": int(seed), "eval": data, "path": str(path)}


SCRIBBLE_COST = 1 / 15     # a scribbled slice's cost relative to a full mask (the paper's figure 2)


def annotation_cost(eval_path: Path, supervision: Optional[str], scribble_cost: float) -> Optional[float]:
    """The labelled set's annotation cost in % of labelling every training slice with a full
    mask: its slices (selection.json beside eval.json) x 1 for masks or ``scribble_cost``
    for scribbles, over the pool. A volume is its slices. None when the selection is absent."""
    sel = eval_path.parent / "selection.json"
    if not sel.exists():
        return None
    m = _load_json(sel)
    pool = (m.get("budget") or {}).get("pool")
    if not pool:
        return None
    return 100.0 * len(m.get("labeled") or {}) / pool * (scribble_cost if supervision == "scribble" else 1.0)


def collect(sources, unit: str = "volume", metric: str = "dice",
            scribble_cost: float = SCRIBBLE_COST) -> List[Dict[str, Any]]:
    """Every (label, budget, seed, evaluation) found in the sources. Run directories of different
    supervision tag their labels "(full)" / "(scribble)"; a label found in several run
    directories (the same method run twice, e.g. two ablations) is tagged with its run
    directory's name as well, so every cell stays one run's."""
    records = []
    run_dirs = [Path(s) for s in sources if Path(s).is_dir()]
    supervisions = {}
    for d in run_dirs:
        cfg_path = d / "config.json"
        supervisions[d] = json.loads(cfg_path.read_text()).get("supervision") if cfg_path.exists() else None
    tag = len(set(supervisions.values())) > 1  # disambiguate full vs scribble runs
    found_in: Dict[str, List[Path]] = {}
    for src in sources:
        path = Path(src)
        if not path.exists():
            raise AlsegError(f"{path}: not found (give a loop RUN_DIR or evaluation JSON files)")
        if path.is_dir():
            found = sorted(path.glob("*/seed*/round*/eval.json"))
            if not found:
                raise AlsegError(f"{path}: no <method>/seed<k>/round<pct>/eval.json inside; is it a loop RUN_DIR?")
            for ev in found:
                rec = _records_from_eval(ev)
                rec["cost"] = annotation_cost(ev, supervisions[path], scribble_cost)
                if tag:
                    rec["label"] = f"{rec['label']} ({supervisions[path]})"
                rec["run_dir"] = path
                found_in.setdefault(rec["label"], [])
                if path not in found_in[rec["label"]]:
                    found_in[rec["label"]].append(path)
                records.append(rec)
        else:
            records.append(_records_from_eval(path))
    for rec in records:
        dirs = found_in.get(rec["label"], [])
        if rec.get("run_dir") is not None and len(dirs) > 1:
            names = [d.name for d in dirs]
            rec["label"] = f"{rec['label']} [{rec['run_dir'].name if len(set(names)) == len(names) else rec['run_dir']}]"
        rec.pop("run_dir", None)
        if unit == "slice" and metric != "dice":
            raise AlsegError(f"--metric {metric} is per volume; use --unit volume")
        rec["names"], rec["scores"] = unit_scores(rec["eval"], unit, metric)
    return records


def group_cells(records) -> Dict[Tuple[str, float], Dict[int, Dict]]:
    """(label, budget) -> {seed: record}; a second evaluation of one cell and seed is an error."""
    cells: Dict[Tuple[str, float], Dict[int, Dict]] = {}
    for rec in records:
        cell = cells.setdefault((rec["label"], rec["budget"]), {})
        if rec["seed"] in cell:
            raise AlsegError(f"{rec['path']}: a second evaluation for {rec['label']} at {rec['budget']:g}% seed {rec['seed']}")
        cell[rec["seed"]] = rec
    return cells


def build_table(records, n_boot: int = 1000, seed: int = 0, metric: str = "dice") -> Dict[str, Any]:
    """Bootstrap each (label, budget) cell over its seeds; mark the best mean per budget.

    Every cell is expected to hold every seed found anywhere in ``records``; a cell that
    lacks some lists them in ``missing_seeds`` (and ``warnings`` says so).
    """
    _check_metric(metric)
    lower_better = METRICS[metric][1]
    cells = group_cells(records)
    labels = sorted({k[0] for k in cells})
    budgets = sorted({k[1] for k in cells})
    all_seeds = sorted({rec["seed"] for rec in records})
    rows, warnings = [], []
    for (label, budget), by_seed in sorted(cells.items()):
        seeds = sorted(by_seed)
        names = by_seed[seeds[0]]["names"]
        for s in seeds[1:]:
            if by_seed[s]["names"] != names:
                raise AlsegError(f"{by_seed[s]['path']}: test units differ from {by_seed[seeds[0]]['path']}; "
                                 "runs of one cell must be evaluated on the same split")
        matrix = np.stack([by_seed[s]["scores"] for s in seeds])
        mean, err = bootstrap_error(matrix, n_boot=n_boot, seed=seed, allow_nan=metric != "dice")
        missing = [s for s in all_seeds if s not in by_seed]
        if missing:
            warnings.append(f"{label} at {budget:g}%: no evaluation for seed(s) "
                            f"{', '.join(map(str, missing))}; its cell averages {len(seeds)} seed(s)")
        collapsed = [s for s in seeds if by_seed[s]["eval"].get("degenerate")]
        if collapsed:
            warnings.append(f"{label} at {budget:g}%: the model of seed(s) {', '.join(map(str, collapsed))} "
                            f"was degenerate on validation ({by_seed[collapsed[0]]['eval']['degenerate']}); "
                            f"the cell includes it")
        costs = [by_seed[s].get("cost") for s in seeds]
        rows.append({"method": label, "budget": budget, "mean": mean, "error": err, "seed_sd": seed_sd(by_seed),
                     "cost": float(np.mean(costs)) if all(c is not None for c in costs) else None,
                     "seeds": seeds, "missing_seeds": missing, "degenerate_seeds": collapsed, "units": len(names)})
    for budget in budgets:
        at = [r for r in rows if r["budget"] == budget and not math.isnan(r["mean"])]
        best = (min if lower_better else max)((r["mean"] for r in at), default=float("nan"))
        for r in rows:
            if r["budget"] == budget:
                r["best"] = bool(math.isclose(r["mean"], best, rel_tol=0, abs_tol=1e-12))
    table = {"metric": metric, "title": f"{METRICS[metric][0]} ± bootstrap error (2 sd, paired)",
             "methods": labels, "budgets": budgets, "rows": rows, "seeds": all_seeds, "warnings": warnings,
             "means": _means_over_budgets(cells, labels, n_boot, seed, metric, lower_better)}
    for r in rows + table["means"]:
        r["text"] = _text(table, r)          # the cell as every table format shows it
    table["footnote"] = _footnote(table).strip()
    return table


def _means_over_budgets(cells, labels, n_boot: int, seed: int, metric: str, lower_better: bool) -> List[Dict]:
    """The paper's "Mean" column (table 2, tables 3-4's mDICE): per method, each seed's scores
    averaged over the method's budgets, then bootstrapped like a cell (paired over test units).
    Only seeds with every budget count; a method whose budgets differ from the others' says so."""
    out = []
    all_budgets = sorted({b for (_, b) in cells})
    all_seeds = sorted({s for cell in cells.values() for s in cell})
    for label in labels:
        budgets = sorted(b for (lab, b) in cells if lab == label)
        seeds = sorted(set.intersection(*(set(cells[(label, b)]) for b in budgets)))
        if not seeds:
            continue
        matrix = np.mean([np.stack([cells[(label, b)][s]["scores"] for s in seeds]) for b in budgets], axis=0)
        mean, err = bootstrap_error(matrix, n_boot=n_boot, seed=seed, allow_nan=metric != "dice")
        out.append({"method": label, "budget": "mean", "mean": mean, "error": err, "seeds": seeds,
                    "missing_seeds": [s for s in all_seeds if s not in seeds], "budgets": budgets,
                    "all_budgets": budgets == all_budgets})
    finite = [r["mean"] for r in out if not math.isnan(r["mean"])]
    best = (min if lower_better else max)(finite, default=float("nan"))
    for r in out:
        r["best"] = bool(math.isclose(r["mean"], best, rel_tol=0, abs_tol=1e-12))
    return out


def _text(table, r) -> str:
    """One cell: mean ± error in display units, a dagger when seeds are missing."""
    scale = METRICS[table.get("metric", "dice")][2]
    text = f"{scale * r['mean']:.1f} ± {scale * r['error']:.1f}"
    return text + ("†" if r.get("missing_seeds") else "") + ("‡" if r.get("degenerate_seeds") else "")


def _footnote(table) -> str:
    notes = []
    if any(r.get("missing_seeds") for r in table["rows"]):
        notes.append(f"† fewer seeds than the {len(table['seeds'])} found elsewhere "
                     f"({', '.join(map(str, table['seeds']))})")
    if any(r.get("degenerate_seeds") for r in table["rows"]):
        notes.append("‡ includes a collapsed model (degenerate on validation: a class predicted nowhere, "
                     "or far under the previous round's): "
                     + "; ".join(f"{r['method']} {r['budget']:g}% seed {', '.join(map(str, r['degenerate_seeds']))}"
                                 for r in table["rows"] if r.get("degenerate_seeds")))
    return "\n\n".join(notes)


def _cell(table, label, budget) -> Optional[Dict]:
    """The row of one (method, budget), or None."""
    return next((r for r in table["rows"] if r["method"] == label and r["budget"] == budget), None)


def to_markdown(table) -> str:
    means = {r["method"]: r for r in table.get("means", [])}
    head = "| method | " + " | ".join(f"{b:g}%" for b in table["budgets"]) + (" | mean |" if means else " |")
    lines = [head, "|---" * (len(table["budgets"]) + 1 + bool(means)) + "|"]
    for label in table["methods"]:
        cells = []
        for r in [_cell(table, label, b) for b in table["budgets"]] + ([means.get(label)] if means else []):
            if r is None:
                cells.append("")
                continue
            text = r["text"] + ("*" if r.get("all_budgets") is False else "")
            cells.append(f"**{text}**" if r["best"] else text)
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    if any(r.get("all_budgets") is False for r in means.values()):
        lines.append("\n\\* mean over this method's budgets only (others have more)")
    return "\n".join(lines) + "\n" + (f"\n{table['footnote']}\n" if table.get("footnote") else "")


def write_csv(table, path: Path) -> None:
    with open(path, "w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(["method", "budget_percent", f"mean_{table.get('metric', 'dice')}", "error", "seed_sd", "best",
                    "seeds", "missing_seeds", "degenerate_seeds", "units"])
        for r in table["rows"]:
            w.writerow([r["method"], f"{r['budget']:g}", f"{r['mean']:.6f}", f"{r['error']:.6f}",
                        "" if r.get("seed_sd") is None else f"{r['seed_sd']:.6f}", int(r["best"]),
                        " ".join(map(str, r["seeds"])),
                        " ".join(map(str, r.get("missing_seeds", []))),
                        " ".join(map(str, r.get("degenerate_seeds", []))), r["units"]])


def plot(table, path: Path, title: Optional[str] = None, x: str = "budget") -> None:
    """The table as curves against the budget, or (``x="cost"``, the paper's figure 2) against
    the annotation cost on a log axis: scribbled slices cost 1/15 of a mask, volumes their slices."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import matplotlib.ticker

    name, _, scale = METRICS[table.get("metric", "dice")]
    fig, ax = plt.subplots(figsize=(6, 4), dpi=120)
    seen = []
    for label in table["methods"]:
        rs = sorted((r for r in table["rows"] if r["method"] == label and (x == "budget" or r.get("cost"))),
                    key=lambda r: r[x])
        if not rs:
            continue
        xs = np.array([r[x] for r in rs])
        y = np.array([scale * r["mean"] for r in rs])
        e = np.array([scale * r["error"] for r in rs])
        ax.plot(xs, y, marker="o", label=label)
        ax.fill_between(xs, y - e, y + e, alpha=0.2)
        seen.extend(xs.tolist())
    if x == "cost":
        ax.set_xscale("log")
        # plain numbers at 1-2-5 steps across the data, not matplotlib's 2x10^0 labels
        ticks = [m * 10.0 ** k for k in range(-2, 3) for m in (1, 2, 5)]
        lo, hi = (min(seen), max(seen)) if seen else (1.0, 100.0)
        ax.set_xticks([t for t in ticks if lo / 1.5 <= t <= hi * 1.5] or [lo, hi])
        ax.xaxis.set_major_formatter(matplotlib.ticker.FuncFormatter(lambda v, _: f"{v:g}"))
        ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
        ax.set_xlabel("annotation cost (% of full masks on every training slice; scribble = 1/15)")
    else:
        ax.set_xlabel("annotated fraction of the pool (%)")
    ax.set_ylabel(name)
    ax.set_title(title or f"{name.split(' (')[0]} vs {'annotation cost' if x == 'cost' else 'annotated fraction'}")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, format="png")
    plt.close(fig)


def bootstrap_report(sources, out=None, unit: str = "volume", n_boot: int = 1000, seed: int = 0,
                     force: bool = False, plot_png: bool = True, metric: str = "dice",
                     scribble_cost: float = SCRIBBLE_COST, compare: Optional[str] = None) -> Dict[str, Any]:
    """Compute the table and write table.csv, table.md, table.json, noise.md / noise.json (seed
    noise: seed_noise.py) and METRIC.png into ``out``, and METRIC-cost.png (against annotation
    cost, figure 2) for loop runs. ``compare``: a method's paired differences against every
    other (compare.py) in compare.csv / .md / .json and compare.png.

    ``out`` defaults to RUN_DIR/bootstrap for a single run directory. Returns the manifest.
    """
    if isinstance(sources, (str, Path)):
        sources = [sources]
    sources = [str(s) for s in sources]
    if not sources:
        raise AlsegError("no sources: give a loop RUN_DIR or evaluation JSON files")
    for s in sources:
        if not Path(s).exists():
            raise AlsegError(f"{s}: not found (give a loop RUN_DIR or evaluation JSON files)")
    if unit not in ("volume", "slice"):
        raise AlsegError(f"--unit {unit!r}: choose volume or slice")
    _check_metric(metric)
    if out is None:
        if len(sources) == 1 and Path(sources[0]).is_dir():
            out = Path(sources[0]) / "bootstrap"
        else:
            raise AlsegError("several sources: pass -o OUT_DIR for the table, CSV and plot")
    if not 0 < scribble_cost <= 1:
        raise AlsegError(f"--scribble-cost {scribble_cost:g}: a fraction of a mask's cost in (0, 1]")
    records = collect(sources, unit, metric, scribble_cost)
    table = build_table(records, n_boot=n_boot, seed=seed, metric=metric)
    name, lower_better, scale = METRICS[metric]
    cells = group_cells(records)
    noise = noise_table(cells, lower_better=lower_better, scale=scale)
    comp = (compare_table(cells, compare, n_boot=n_boot, seed=seed, lower_better=lower_better,
                          scale=scale) if compare else None)
    out = Path(out)
    run_dirs = [Path(s) for s in sources if Path(s).is_dir()]
    with atomic_path(out, force=force) as tmp:
        tmp.mkdir(parents=True)
        write_csv(table, tmp / "table.csv")
        (tmp / "table.md").write_text(to_markdown(table), encoding="utf-8")
        (tmp / "table.json").write_text(json.dumps(table, indent=2) + "\n", encoding="utf-8")
        (tmp / "noise.md").write_text(noise_markdown(noise, name), encoding="utf-8")
        (tmp / "noise.json").write_text(json.dumps(noise, indent=2) + "\n", encoding="utf-8")
        if plot_png:
            plot(table, tmp / f"{metric}.png")
            if any(r.get("cost") for r in table["rows"]):
                plot(table, tmp / f"{metric}-cost.png", x="cost")
        if comp:
            write_compare_csv(comp, tmp / "compare.csv")
            (tmp / "compare.md").write_text(compare_markdown(comp, name), encoding="utf-8")
            (tmp / "compare.json").write_text(json.dumps(comp, indent=2) + "\n", encoding="utf-8")
            if plot_png:
                plot_compare(comp, tmp / "compare.png", name)
        if run_dirs:   # loop runs: also the wall time of each stage, from their markers
            times = stage_times(*run_dirs)
            (tmp / "timings.json").write_text(json.dumps(times, indent=2) + "\n", encoding="utf-8")
            (tmp / "timings.md").write_text(timings_markdown(times), encoding="utf-8")
    outputs = {"dir": out, "csv": out / "table.csv", "markdown": out / "table.md", "json": out / "table.json",
               "noise": out / "noise.md"}
    if run_dirs:
        outputs["timings"] = out / "timings.md"
    if plot_png:
        outputs["plot"] = out / f"{metric}.png"
    if comp:
        outputs["compare"] = out / "compare.md"
    return make_manifest("bootstrap", args={"unit": unit, "metric": metric, "n_boot": n_boot, "seed": seed,
                                           "compare": compare, "sources": [str(Path(s).resolve()) for s in sources]},
                         outputs=outputs, seed=seed, table=table, noise=noise, evaluations=len(records),
                         **({"compare": comp} if comp else {}))
