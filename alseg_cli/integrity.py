"""Store integrity: zarr reads a missing chunk as its fill value, so a deleted shard would be
read as zeros without a word. Every alseg store therefore carries ``chunks.json``: each
chunk file written, with its size. Opening a store checks that listing against the disk
(a stat per listed file, no reads), so a missing or truncated chunk is a
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
    """{array path: {chunk key: bytes}} for every array under ``root`` (zarr v3 default keys).
    Plain os.scandir and string paths: this runs on every open of a store."""
    out: Dict[str, Dict[str, int]] = {}

    def files_under(folder: str, prefix: str, into: Dict[str, int]) -> None:
        with os.scandir(folder) as entries:
            for e in entries:
                if e.is_dir(follow_symlinks=False):
                    files_under(e.path, f"{prefix}{e.name}/", into)
                else:
                    into[f"{prefix}{e.name}"] = e.stat().st_size

    def walk(folder: str, rel: str) -> None:
        with os.scandir(folder) as entries:
            subdirs = sorted((e.name, e.path) for e in entries if e.is_dir(follow_symlinks=False))
        names = {n for n, _ in subdirs}
        if "c" in names and os.path.isfile(os.path.join(folder, "zarr.json")):
            files_under(os.path.join(folder, "c"), "c/", out.setdefault(rel, {}))
        for name, path in subdirs:
            if name != "c":
                walk(path, f"{rel}/{name}" if rel else name)

    walk(str(root), "")
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


def check_chunks(path, fmt: Optional[str] = None) -> None:
    """Every chunk file listed in ``chunks.json`` exists with its recorded size: one stat per
    listed file, nothing read (stores that predate the listing are not checked). ``fmt``
    names the store's kind in the message (read from its zarr.json when not given)."""
    path = Path(path)
    listing = path / CHUNKS_FILE
    if not listing.exists():
        return
    try:
        expected = json.loads(listing.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise damaged(path, f"{CHUNKS_FILE} is unreadable ({exc.__class__.__name__})",
                      fmt or peek_format(path)) from None
    root = str(path)
    for array, files in sorted(expected.items()):
        sizes = {}
        for key in files:
            try:
                sizes[key] = os.stat(f"{root}/{array}/{key}").st_size
            except FileNotFoundError:
                pass
        for key, size in sorted(files.items()):
            if key not in sizes:
                raise damaged(path, f"array {array!r} lacks chunk file {key} "
                                    f"({len(files) - len(sizes)} of {len(files)} missing)", fmt or peek_format(path))
            if sizes[key] != size:
                raise damaged(path, f"array {array!r} chunk file {key} has {sizes[key]} bytes, "
                                    f"{size} were written (truncated or altered)", fmt or peek_format(path))


def peek_format(path: Path) -> Optional[str]:
    try:
        return json.loads((path / "zarr.json").read_text(encoding="utf-8")).get("attributes", {}).get("format")
    except (OSError, ValueError):
        return None
