"""Store integrity: zarr reads a missing chunk as its fill value, so a deleted shard would be
read as zeros without a word. Every alseg store therefore carries ``chunks.json``: each
chunk file written, with its size. Opening a store checks that listing against the disk
(a directory walk and a stat per file, no reads), so a missing or truncated chunk is a
one-line error naming the store and the array, and saying what to re-run.
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Dict, Optional

from .errors import AlsegError
from .manifest import hash_tree

CHUNKS_FILE = "chunks.json"
HASH_SKIP = {"zarr.json", CHUNKS_FILE}     # root metadata (holds the hash) and the chunk listing
MAKERS = {"alseg.dataset": "alseg prep", "alseg.embeddings": "alseg embed"}


def chunk_files(root: Path) -> Dict[str, Dict[str, int]]:
    """{array path: {chunk key: bytes}} for every array under ``root`` (zarr v3 default keys)."""
    out: Dict[str, Dict[str, int]] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        if "c" in dirnames and "zarr.json" in filenames:
            array = Path(dirpath).relative_to(root).as_posix()
            files = out.setdefault(array, {})
            for sub, _, names in os.walk(Path(dirpath) / "c"):
                for name in names:
                    full = Path(sub) / name
                    files[full.relative_to(dirpath).as_posix()] = full.stat().st_size
            dirnames.remove("c")
    return out


def finish_store(tmp: Path, root) -> str:
    """Record the chunk files and the content hash of a store that is fully written."""
    (tmp / CHUNKS_FILE).write_text(json.dumps(chunk_files(tmp), sort_keys=True), encoding="utf-8")
    digest = hash_tree(tmp, skip=HASH_SKIP)
    root.attrs["content_hash"] = digest
    return digest


def damaged(path, what: str, fmt: Optional[str] = None) -> AlsegError:
    maker = MAKERS.get(fmt, "the command that made it")
    return AlsegError(f"{path}: {what}; the store is damaged: re-run {maker} (with --force) to rebuild it")


def check_chunks(path) -> None:
    """Every chunk file listed in ``chunks.json`` exists with its recorded size (stores that
    predate the listing are not checked)."""
    path = Path(path)
    listing = path / CHUNKS_FILE
    if not listing.exists():
        return
    fmt = peek_format(path)
    try:
        expected = json.loads(listing.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise damaged(path, f"{CHUNKS_FILE} is unreadable ({exc.__class__.__name__})", fmt) from None
    found = chunk_files(path)
    for array, files in sorted(expected.items()):
        have = found.get(array, {})
        for key, size in sorted(files.items()):
            if key not in have:
                raise damaged(path, f"array {array!r} lacks chunk file {key} "
                                    f"({len(files) - len(set(files) & set(have))} of {len(files)} missing)", fmt)
            if have[key] != size:
                raise damaged(path, f"array {array!r} chunk file {key} has {have[key]} bytes, "
                                    f"{size} were written (truncated or altered)", fmt)


def peek_format(path: Path) -> Optional[str]:
    try:
        return json.loads((path / "zarr.json").read_text(encoding="utf-8")).get("attributes", {}).get("format")
    except (OSError, ValueError):
        return None
