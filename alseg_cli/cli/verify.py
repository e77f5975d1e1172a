"""`alseg verify`: check a dataset or embeddings store completely."""
from __future__ import annotations

from pathlib import Path
from typing import List

import typer

from .common import emit, err_console, handle_errors


@handle_errors
def command(stores: List[Path] = typer.Argument(..., help="Dataset or embeddings stores (.zarr).")):
    """Check stores end to end: every chunk file written is present with its size, every array
    reads, and the content hash recomputed from the files equals the one recorded at creation.

    Opening a store in any command already checks the chunk files (a cheap listing); verify
    also reads everything. A damaged store is one error line naming the store and array.
    """
    from ..api import verify

    for store in stores:
        result = verify(store)
        err_console.print(f"{store}: ok ({result['format']}, {result['arrays']} arrays, "
                          f"content hash {result['content_hash'][:12]})", highlight=False)
        emit(result)
