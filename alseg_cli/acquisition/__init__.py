"""Acquisition: the registry of selection methods, the k-center greedy kernel, uncertainty scores.

Importing the package registers every method (``methods`` and ``learned``), so iterating
``METHODS`` always sees all of them.
"""
from . import learned, methods  # noqa: F401
from .methods import METHODS  # noqa: F401
