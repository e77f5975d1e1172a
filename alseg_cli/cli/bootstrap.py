"""`alseg bootstrap`: a thin layer over alseg_cli.metrics.report.bootstrap_report."""
from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer
from rich.markup import escape
from rich.table import Table

from .common import emit, err_console, handle_errors


@handle_errors
def command(
    sources: List[Path] = typer.Argument(..., help="Loop RUN_DIR(s) or evaluation JSONs laid out as "
                                                   "<method>/seed<k>/round<pct>/eval.json."),
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="Folder for table.csv, table.md, table.json, "
                                                                  "METRIC.png, timings.md (default RUN_DIR/bootstrap)."),
    unit: str = typer.Option("volume", "--unit", help="Resample test volumes, or slices for sets with few volumes."),
    metric: str = typer.Option("dice", "--metric",
                               help="dice (%, higher is better); hd95: the paper's pooled HD95 (medpy: one "
                                    "95th percentile of both surfaces' distances); hd95_max: the larger "
                                    "directed 95th percentile (MONAI). HD95 is lower-is-better, per volume."),
    n_boot: int = typer.Option(1000, "--n-boot", help="Bootstrap resamples (appendix D: 1000)."),
    seed: int = typer.Option(0, "--seed", help="Seed of the resample indices (shared by all methods: paired)."),
    no_plot: bool = typer.Option(False, "--no-plot", help="Skip the PNG plots."),
    scribble_cost: float = typer.Option(1 / 15, "--scribble-cost", help="A scribbled slice's annotation cost "
                                        "relative to a full mask (the paper: 1/15), for METRIC-cost.png: Dice "
                                        "against annotation cost across full, weak and whole-volume runs "
                                        "(figure 2)."),
    compare: Optional[str] = typer.Option(None, "--compare", help="A method (as the table names it): its paired "
                                          "differences against every other method per budget, with 95 % "
                                          "intervals and the share of resamples it is ahead (compare.md/.csv/"
                                          ".json/.png)."),
    force: bool = typer.Option(False, "--force", help="Overwrite an existing output folder."),
):
    """Bootstrap error bars over seeds and methods, as the paper's table 1.

    Per method and budget: 1,000 resamples of the test volumes with replacement, the mean
    over seeds per resample, error = 2 x the sample standard deviation (ddof=1) of those
    means; the same resamples for every method. Table on stderr (best mean in bold).
    A cell missing a seed that other cells have is marked † and warned about.
    noise.md: each cell's standard deviation across seeds and, per budget, how often two
    disjoint halves of the seeds rank the methods alike (seed noise the error bars omit).
    --compare METHOD adds paired differences: per test volume, each method's Dice averaged
    over its seeds, the difference resampled with the same indices; seeds are averaged, not
    resampled (per-seed differences are in compare.csv).
    """
    from ..api import bootstrap

    manifest = bootstrap([str(s) for s in sources], out, unit=unit, n_boot=n_boot, seed=seed,
                         force=force, plot_png=not no_plot, metric=metric, scribble_cost=scribble_cost,
                         compare=compare)
    err_console.print(rich_table(manifest["table"]))
    if any(r["sd"] is not None for r in manifest["noise"]["sd"]):
        err_console.print(rich_noise(manifest["noise"]))
    if manifest.get("compare"):
        err_console.print(rich_compare(manifest["compare"]))
    for warning in manifest["table"]["warnings"]:
        err_console.print(f"[yellow]alseg: warning:[/] {escape(warning)}", highlight=False, soft_wrap=True)
    emit(manifest)


def _grid(title, first, labels, budgets, rows, key, cell, caption=None):
    """A labels x budgets Rich table; ``cell(row)`` renders a row found at (label, budget)."""
    t = Table(title=title, caption=caption)
    t.add_column(first)
    for b in budgets:       # a budget (5 -> "5%"), or "mean" (the mean over budgets)
        t.add_column(f"{b:g}%" if isinstance(b, (int, float)) else str(b), justify="right")
    found = {(r[key], r["budget"]): r for r in rows}
    for label in labels:
        # labels and cells are text: "coreset [run-a]" must not read as Rich markup
        t.add_row(escape(label), *("" if (label, b) not in found else cell(found[(label, b)]) for b in budgets))
    return t


def rich_noise(noise):
    """Seed sd per cell; the caption gives the split-half ranking agreement per budget."""
    scale = noise["scale"]
    caption = "; ".join(f"{r['budget']:g}%: pairs alike {100 * r['pair_agreement']:.0f}%, same best "
                        f"{100 * r['top_agreement']:.0f}%" for r in noise["ranking"])
    return _grid("seed noise: sd across seeds", "method", noise["methods"], noise["budgets"], noise["sd"],
                 "method", lambda r: "" if r["sd"] is None else f"{scale * r['sd']:.1f}",
                 caption=f"ranking agreement between halves of the seeds: {caption}" if caption else None)


def rich_compare(comp):
    """METHOD − other per budget: difference [95 % interval] and the share of resamples it leads."""
    means = comp.get("means") or []
    return _grid(f"{comp['method']} − other: paired difference [95 % interval] (share ahead)", "vs",
                 comp["others"], comp["budgets"] + (["mean"] if means else []), comp["rows"] + means, "other",
                 lambda r: escape(f"{r['text']} ({100 * r['ahead']:.0f}%)"),
                 caption="mean: over the budgets per test volume, then paired" if means else None)


def rich_table(table):
    """The bootstrap table as a Rich renderable (methods x budgets, mean ± error, best in bold)."""
    return _grid(table["title"], "method", table["methods"], table["budgets"], table["rows"], "method",
                 lambda r: f"[bold]{escape(r['text'])}[/bold]" if r["best"] else escape(r["text"]),
                 caption=table.get("footnote") or None)
