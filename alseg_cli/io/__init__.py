"""Reading sources: layouts (where the volumes are) and readers (how a file becomes an array).

Importing the package registers every layout, the CHAOS and MS-CMR ones (chaos.py, mscmr.py,
built on layouts.py and readers.py) included.
"""
from . import chaos, mscmr  # noqa: F401
