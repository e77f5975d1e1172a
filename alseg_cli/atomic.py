"""Atomic outputs: write to a temporary sibling, rename into place when complete.

A failed or interrupted command therefore never leaves a half-written store or
manifest, and an existing output is only replaced when the caller asked for it.
"""
from __future__ import annotations

import contextlib
import json
import os
import shutil
import uuid
from pathlib import Path
from typing import Iterator, Union

from .errors import AlsegError

PathLike = Union[str, os.PathLike]


def check_writable(path: PathLike, force: bool) -> Path:
    """Refuse to overwrite an existing output unless ``force``; create the parent folder."""
    path = Path(path)
    if path.exists() and not force:
        raise AlsegError(f"{path} already exists; pass --force to overwrite it")
    path.parent.mkdir(parents=True, exist_ok=True)
    return path


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    elif path.exists() or path.is_symlink():
        path.unlink()


@contextlib.contextmanager
def atomic_path(path: PathLike, force: bool = False) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success move it onto ``path``.

    Works for files and directories (zarr stores). On any exception the temporary
    output is deleted and ``path`` is left as it was.
    """
    final = check_writable(path, force)
    tmp = final.with_name(f".{final.name}.tmp-{uuid.uuid4().hex[:8]}")
    try:
        yield tmp
        if final.exists():
            backup = final.with_name(f".{final.name}.old-{uuid.uuid4().hex[:8]}")
            os.replace(final, backup)
            os.replace(tmp, final)
            _remove(backup)
        else:
            os.replace(tmp, final)
    except BaseException:
        _remove(tmp)
        raise


def write_json(path: PathLike, obj, force: bool = True) -> Path:
    """Write ``obj`` as indented JSON atomically."""
    with atomic_path(path, force=force) as tmp:
        tmp.write_text(json.dumps(obj, indent=2, sort_keys=False, default=_json_default) + "\n", encoding="utf-8")
    return Path(path)


def _json_default(obj):
    import numpy as np

    if isinstance(obj, np.integer):
        return int(obj)
    if isinstance(obj, np.floating):
        return float(obj)
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")


def dumps(obj) -> str:
    """One-line JSON (for manifests on stdout)."""
    return json.dumps(obj, default=_json_default, separators=(",", ":"))
