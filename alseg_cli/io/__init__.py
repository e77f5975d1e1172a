"""Reading sources: layouts (where the volumes are) and readers (how a file becomes an array).

Importing the package registers every layout, the CHAOS one (chaos.py, built on layouts.py and
readers.py) included.
"""
from . import chaos  # noqa: F401
