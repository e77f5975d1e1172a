"""Acquisition: the registry of selection methods, the k-center greedy kernel, uncertainty scores.

``alseg_cli.acquisition.METHODS`` is the registry with every method registered (``methods``
and ``learned``); it loads on first use, so that importing ``acquisition.options`` (the CLI's
help text) stays cheap.
"""


def __getattr__(name):
    if name == "METHODS":
        from . import learned  # noqa: F401  (registers coregcn, typiclust, vaal)
        from .methods import METHODS
        return METHODS
    raise AttributeError(f"module 'alseg_cli.acquisition' has no attribute {name!r}")
