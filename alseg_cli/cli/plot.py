"""`alseg plot`: the paper's pictures as PNG files (overlay, map, montage)."""
from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer

from .common import emit, err_console, handle_errors

app = typer.Typer(help="The paper's pictures as PNG files: prediction overlays (figure 3), t-SNE maps "
                       "of embeddings (figure 4), a montage of a selection's slices.",
                  no_args_is_help=True, add_completion=False)


def _split(text: Optional[str]) -> List[str]:
    return [t.strip() for t in (text or "").split(",") if t.strip()]


@app.command("overlay")
@handle_errors
def overlay(
    dataset: Path = typer.Argument(..., help="Dataset store (.zarr)."),
    out: Path = typer.Option(..., "-o", "--out", help="Output PNG."),
    model: Optional[List[Path]] = typer.Option(None, "--model", help="A model dir (repeat for several)."),
    run: Optional[Path] = typer.Option(None, "--run", help="A loop RUN_DIR: one column per --methods x --budgets."),
    methods: Optional[str] = typer.Option(None, "--methods", help="With --run: e.g. random,gcl-coreset."),
    budgets: Optional[str] = typer.Option(None, "--budgets", help="With --run: e.g. 5,20."),
    seed: int = typer.Option(0, "--seed", help="With --run: the chain seed."),
    slices: Optional[str] = typer.Option(None, "--slices", help="Slice ids to show (default: --n test slices "
                                         "with the most foreground, one per volume)."),
    n: int = typer.Option(4, "--n", help="How many slices when --slices is not given.", min=1),
    split: str = typer.Option("test", "--split"),
    device: str = typer.Option("cpu", "--device"),
    force: bool = typer.Option(False, "--force", help="Overwrite --out."),
):
    """Figure 3: prediction vs ground truth per slice and model; per class, agreement in the
    class's colour and disagreement (predicted but not drawn, or drawn but not predicted) in red."""
    from .. import api
    from ..errors import AlsegError

    models = {str(m): m for m in (model or [])}
    if run is not None:
        if not methods or not budgets:
            raise AlsegError("--run needs --methods and --budgets")
        from ..figures.overlay import loop_models
        models.update(loop_models(run, _split(methods), _split(budgets), seed))
    result = api.plot_overlay(dataset, models, out, slices=_split(slices) or None, n=n, split=split,
                              device=device, force=force)
    err_console.print(f"plot: {out} ({len(result['slices'])} slices x {len(models)} models)", highlight=False)
    emit({"kind": "figure", "figure": "overlay", **result})


@app.command("map")
@handle_errors
def embedding_map(
    stores: List[Path] = typer.Argument(..., help="Embeddings stores, drawn side by side (e.g. NT-Xent vs GCL)."),
    out: Path = typer.Option(..., "-o", "--out", help="Output PNG."),
    colour: str = typer.Option("cluster", "--colour", help="cluster (k-means), patient or volume."),
    clusters: int = typer.Option(10, "--clusters", help="k-means clusters for --colour cluster."),
    selection: Optional[Path] = typer.Option(None, "--selection", help="Mark this selection's labelled slices."),
    dataset: Optional[Path] = typer.Option(None, "--dataset", help="Default: the first store's dataset."),
    max_points: int = typer.Option(3000, "--max-points", help="Seeded subsample of the train split "
                                   "(selected slices always kept).", min=10),
    seed: int = typer.Option(0, "--seed"),
    force: bool = typer.Option(False, "--force", help="Overwrite --out."),
):
    """Figure 4: a t-SNE map of each store's train-split embeddings, coloured by k-means
    cluster, patient or volume, with a selection's slices marked."""
    from .. import api

    result = api.plot_map(stores, out, dataset=dataset, colour=colour, clusters=clusters, selection=selection,
                          max_points=max_points, seed=seed, force=force)
    err_console.print(f"plot: {out} ({len(stores)} map(s))", highlight=False)
    emit({"kind": "figure", "figure": "map", **result})


@app.command("montage")
@handle_errors
def montage(
    selection: Path = typer.Argument(..., help="A selection manifest."),
    out: Path = typer.Option(..., "-o", "--out", help="Output PNG."),
    dataset: Optional[Path] = typer.Option(None, "--dataset", help="Default: the selection's dataset."),
    round_: Optional[int] = typer.Option(None, "--round", help="That round's slices (default: the selection's new ones)."),
    columns: int = typer.Option(8, "--columns", min=1),
    limit: int = typer.Option(64, "--limit", min=1, help="At most this many slices."),
    force: bool = typer.Option(False, "--force", help="Overwrite --out."),
):
    """The slices a selection asks to annotate, in its order, titled by slice id."""
    from .. import api

    result = api.plot_montage(selection, out, dataset=dataset, round_=round_, columns=columns, limit=limit,
                              force=force)
    err_console.print(f"plot: {out} ({len(result['slices'])} of {result['total']} slices)", highlight=False)
    emit({"kind": "figure", "figure": "montage", **result})
