"""`alseg select`: choose the next slices to annotate with an acquisition method."""
from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer

from ..api import SELECT_DEFAULTS
from .common import emit, err_console, handle_errors, read_stdin_manifest, stdin_is_piped


@handle_errors
def command(
    method: Optional[str] = typer.Option(None, "--method", "-m", help="Acquisition method (see --list)."),
    budget: Optional[str] = typer.Option(None, "--budget", "-b",
                                         help="Cumulative budget: '3%' of the train pool or a slice count '45'."),
    add: Optional[int] = typer.Option(None, "--add", help="Add this many slices to the labelled set instead."),
    embeddings: Optional[str] = typer.Option(None, "--embeddings", "-e",
                                             help="Embeddings store (EMB.zarr), or '-' for a piped embed manifest."),
    dataset: Optional[Path] = typer.Option(None, "--dataset", "-d",
                                           help="Dataset store (default: the one the embeddings name)."),
    model: Optional[List[Path]] = typer.Option(None, "--model",
                                               help="Segmentation model dir (repeat for an ensemble)."),
    labeled: Optional[str] = typer.Option(None, "--labeled", "-l",
                                          help="Previous selection manifest, or '-' to read it from stdin."),
    seed: int = typer.Option(0, "--seed", help="Seed of every random choice."),
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="Write the selection manifest here too."),
    mc_samples: Optional[int] = typer.Option(None, "--mc-samples", help=f"MC-dropout passes (bald, "
                                             f"mc-variance; default {SELECT_DEFAULTS.mc_samples})."),
    batch_slices: Optional[int] = typer.Option(None, "--batch-slices", help=f"Slices per batch "
                                               f"(stochastic-batches; default {SELECT_DEFAULTS.batch_slices})."),
    reduce: Optional[str] = typer.Option(None, "--reduce", help=f"Pixel-to-slice reduction: mean, max or sum "
                                         f"(default {SELECT_DEFAULTS.reduce})."),
    typicality: Optional[str] = typer.Option(None, "--typicality",
                                             help="typiclust: 'l2' (the paper's mean L2 distance to the 20 "
                                                  "nearest neighbours; the default) or 'sqeuclidean' (the "
                                                  "official code's faiss distances). Clusters of 5 points or "
                                                  "fewer are only used once the larger ones are exhausted."),
    unit: str = typer.Option("slice", "--unit", help="slice, or volume: whole volumes up to the budget's slice "
                             "count (random, or coreset/gcl-coreset on mean-pooled volume embeddings; the "
                             "paper's figure 2 baseline)."),
    protect: Optional[Path] = typer.Option(None, "--protect", help="A pseudo.json from `alseg propagate`: its "
                                           "slices are not picked while the rest of the pool holds the round."),
    list_: bool = typer.Option(False, "--list", help="List the methods with what they need, then exit."),
    force: bool = typer.Option(False, "--force", help="Overwrite an existing --out."),
    device: str = typer.Option("auto", "--device", help="auto, cpu or cuda."),
):
    """Choose the next slices to annotate; the selection manifest goes to stdout (and -o).

    Pipes: `alseg embed D.zarr ... | alseg select --method coreset --budget 3%` and
    `alseg select ... --budget 2% | alseg select ... --labeled - --budget 3%`.
    """
    from ..api import list_methods, select
    from ..errors import AlsegError

    if list_:
        for m in list_methods():
            err_console.print(f"[bold]{m['name']:<20}[/] needs {m['needs']:<11} {m['description']}",
                              highlight=False, soft_wrap=True)
        emit({"kind": "methods", "methods": list_methods()})
        return
    if method is None:
        raise AlsegError("--method is required (alseg select --list shows the methods)")
    piped = None
    if embeddings == "-" or labeled == "-" or (embeddings is None and stdin_is_piped()):
        piped = read_stdin_manifest(required=(embeddings == "-" or labeled == "-"))
    if piped is not None:
        kind = piped.get("kind")
        if kind == "embeddings" and embeddings in (None, "-"):
            embeddings = (piped.get("outputs") or {}).get("embeddings")
            if not embeddings:
                raise AlsegError("the piped embeddings manifest has no outputs.embeddings store path")
        elif kind == "selection" and labeled in (None, "-"):
            labeled = piped
        else:
            raise AlsegError(f"stdin holds a {kind!r} manifest; pipe an embeddings manifest "
                             f"(or a selection manifest with --labeled -)")
    if embeddings == "-" or labeled == "-":
        raise AlsegError("'-' was given but stdin held no matching manifest")
    args = {"method": method, "budget": budget, "add": add, "embeddings": embeddings,
            "dataset": None if dataset is None else str(dataset), "models": [str(m) for m in model or []],
            "labeled": labeled if isinstance(labeled, str) else "<stdin>", "seed": seed,
            "out": None if out is None else str(out), "mc_samples": mc_samples,
            "batch_slices": batch_slices, "reduce": reduce, "device": device, "unit": unit}
    args["typicality"] = typicality
    manifest = select(method=method, budget=budget, add=add, embeddings=embeddings, dataset=dataset,
                      models=[str(m) for m in model or []], labeled=labeled, seed=seed, out=out,
                      mc_samples=mc_samples, batch_slices=batch_slices, reduce=reduce, typicality=typicality,
                      force=force, device=device, args=args, unit=unit, protect=protect)
    b = manifest["budget"]
    whole = f" ({manifest['annotation']['whole_volumes']} whole volumes)" if unit == "volume" else ""
    err_console.print(f"{method}: selected {b['added']} slices ({b['resolved']} of {b['pool']} labelled "
                      f"after this round{whole}) in {manifest['seconds']:.2f} s", highlight=False)
    emit(manifest)
