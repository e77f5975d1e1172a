"""alseg: active learning for 3D medical image segmentation.

Public functions are importable from the package root; they load lazily so that
``import alseg_cli`` (and ``alseg --help``) stays fast.
"""
from importlib import import_module

__version__ = "0.1.0"

_EXPORTS = {
    "AlsegError": "alseg_cli.errors",
    "group_contrastive_loss": "alseg_cli.encoders.losses",
    "nt_xent_loss": "alseg_cli.encoders.losses",
    "gcl_total_loss": "alseg_cli.encoders.losses",
    "group_batches": "alseg_cli.encoders.sampler",
    "kcenter_greedy": "alseg_cli.acquisition.kcenter",
    "dice_per_class": "alseg_cli.metrics.dice",
    "bootstrap_error": "alseg_cli.metrics.bootstrap",
}

__all__ = ["__version__", *_EXPORTS]


def __getattr__(name):
    if name in _EXPORTS:
        return getattr(import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'alseg_cli' has no attribute {name!r}")
