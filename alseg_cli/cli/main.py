"""The ``alseg`` command: one small module per subcommand, all work in the library."""
from __future__ import annotations

import typer

from .. import __version__
from . import bootstrap, embed, evaluate, export, import_labels, loop, plot, prep, predict, pretrain, propagate, select, stats, train_seg, verify
from .common import STATE

app = typer.Typer(
    name="alseg",
    help="Active learning for 3D medical image segmentation: choose which 2D slices to annotate next.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)

COMMANDS = {
    "prep": (prep.command, "Turn volumes on disk (NIfTI, MHA, DICOM, HDF5, frames) into a dataset store."),
    "pretrain": (pretrain.command, "Train a contrastive ResNet-18 encoder (GCL, or SP-Con) on a dataset store."),
    "embed": (embed.command, "Embed every slice with an encoder, or import external embeddings."),
    "select": (select.command, "Choose the next slices to annotate with an acquisition method."),
    "export": (export.command, "Hand a selection's slices to an annotator: task list, PNGs, label templates."),
    "import-labels": (import_labels.command, "Take an annotator's label volumes back into the store, checked."),
    "propagate": (propagate.command, "k-NN label propagation: pseudo-label the neighbours of labelled slices."),
    "train-seg": (train_seg.command, "Train a segmentation model (UNet on masks, DMPLS on scribbles)."),
    "evaluate": (evaluate.command, "3D Dice and HD95 per volume and class at native resolution."),
    "predict": (predict.command, "Segment volume files that were never prepped, with their own headers."),
    "bootstrap": (bootstrap.command, "Bootstrap error bars, tables and plots over seeds and methods."),
    "loop": (loop.command, "Run whole active-learning experiments: rounds x methods x seeds."),
    "stats": (stats.command, "Slice diversity overall and within patient, volume and adjacent groups."),
    "verify": (verify.command, "Check a store end to end: chunk files, readability, content hash."),
}
for _name, (_fn, _help) in COMMANDS.items():
    app.command(_name, help=(_fn.__doc__ or _help), short_help=_help)(_fn)
app.add_typer(plot.app, name="plot", short_help="The paper's pictures: overlays (fig. 3), t-SNE maps (fig. 4), montages.")


def _version(value: bool):
    if value:
        typer.echo(f"alseg {__version__}")
        raise typer.Exit()


@app.callback()
def root(
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True,
                                 help="Print the version and exit."),
    debug: bool = typer.Option(False, "--debug", help="Show full tracebacks on errors."),
):
    """Active learning for 3D medical image segmentation."""
    STATE["debug"] = debug


def main():
    import logging

    # a failed zarr read leaves asyncio tasks pending; their shutdown noise would bury the one
    # error line the command prints
    logging.getLogger("asyncio").setLevel(logging.CRITICAL)
    app()


if __name__ == "__main__":
    main()
