"""The library entry points, one per subcommand; the CLI is a thin layer over these.

Each returns the manifest it wrote (a dict). The entry points import their modules when
called, so that importing this module (and ``alseg --help``) stays cheap; only the option
defaults the CLI shows in its help are imported here.
"""
from __future__ import annotations

from .acquisition.options import DEFAULTS as SELECT_DEFAULTS  # noqa: F401  (the CLI's help text)


def prep(source, out, **options):
    from .prep import run_prep
    return run_prep(source, out, **options)


def pretrain(dataset, out, **options):
    from .encoders.pretrain import pretrain as _pretrain
    return _pretrain(dataset, out, **options)


def embed(dataset, out, **options):
    from .encoders.embed import embed as _embed
    return _embed(dataset, out, **options)


def select(**options):
    from .acquisition.select import select as _select
    return _select(**options)


def propagate(dataset, labeled, model, out, **options):
    from .acquisition.propagate import propagate as _propagate
    return _propagate(dataset, labeled, model, out, **options)


def predict(model, inputs, out, **options):
    from .campaign.predict import predict_files
    return predict_files(model, inputs, out, **options)


def export(selection, out, **options):
    from .campaign.export import export_selection
    return export_selection(selection, out, **options)


def import_labels(dataset, files, **options):
    from .campaign.importer import import_labels as _import
    return _import(dataset, files, **options)


def list_methods():
    from .acquisition.select import list_methods as _list_methods
    return _list_methods()


def train_seg(dataset, labels, out, **options):
    from .segmentation.train import train_seg as _train_seg
    return _train_seg(dataset, labels, out, **options)


def evaluate(dataset, model, out=None, **options):
    from .segmentation.evaluate import evaluate as _evaluate
    return _evaluate(dataset, model, out, **options)


def bootstrap(sources, out=None, **options):
    from .metrics.report import bootstrap_report
    return bootstrap_report(sources, out, **options)


def run_loop(out, **options):
    from .experiment.loop import run_loop as _run_loop
    return _run_loop(out, **options)


def stats(dataset, **options):
    from .metrics.diversity import run_stats
    return run_stats(dataset, **options)


def plot_overlay(dataset, models, out, **options):
    from .figures.overlay import overlay_figure
    return overlay_figure(dataset, models, out, **options)


def plot_map(stores, out, **options):
    from .figures.embedding_map import embedding_map
    return embedding_map(stores, out, **options)


def plot_montage(selection, out, **options):
    from .figures.montage import selection_montage
    return selection_montage(selection, out, **options)


def verify(store):
    from .store import verify_store
    return verify_store(store)
