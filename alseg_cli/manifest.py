"""Manifests: the small JSON facts every command writes beside its output and on stdout.

Every manifest records kind, format version, alseg version, the command line, the
resolved arguments and seed, library versions, device, creation time, inputs (paths
and content hashes) and outputs, so any output can be traced and replayed.
"""
from __future__ import annotations

import hashlib
import json
import os
import platform
import sys
import time
from pathlib import Path
from typing import Any, Dict, Iterable, Optional

from . import __version__
from .atomic import write_json
from .errors import AlsegError

FORMAT_VERSION = 1
KINDS = ("dataset", "encoder", "embeddings", "selection", "model", "evaluation", "bootstrap", "loop", "stats",
         "pseudo-labels", "prediction", "export")


def library_versions() -> Dict[str, str]:
    versions = {"python": platform.python_version()}
    for name in ("numpy", "torch", "torchvision", "zarr", "scipy", "sklearn", "nibabel", "SimpleITK"):
        module = sys.modules.get(name)
        if module is not None:
            versions[name] = getattr(module, "__version__", None) or getattr(module, "Version", lambda: "?")()
    return versions


def hash_file(path: Path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            h.update(block)
    return h.hexdigest()


def hash_tree(root: Path, skip: Iterable[str] = ()) -> str:
    """Content hash of a directory: relative paths and file contents, in sorted order."""
    skip = set(skip)
    h = hashlib.sha256()
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        for name in sorted(filenames):
            full = Path(dirpath) / name
            rel = full.relative_to(root).as_posix()
            if rel in skip:
                continue
            h.update(rel.encode() + b"\0" + hash_file(full).encode())
    return h.hexdigest()


def content_hash(path: os.PathLike) -> str:
    """sha256 of a file, or of a directory tree; alseg zarr stores carry theirs in attrs."""
    path = Path(path)
    if not path.exists():
        raise AlsegError(f"{path} does not exist")
    if path.is_dir():
        meta = path / "zarr.json"
        if meta.exists():
            attrs = json.loads(meta.read_text()).get("attributes", {})
            if "content_hash" in attrs:
                return attrs["content_hash"]
        return hash_tree(path)
    return hash_file(path)


def make_manifest(kind: str, args: Dict[str, Any], inputs: Dict[str, Any] = None,
                  outputs: Dict[str, Any] = None, seed: Optional[int] = None,
                  device: Optional[str] = None, **extra) -> Dict[str, Any]:
    """Build a manifest dict. ``inputs`` maps a role to a path (hashed here) or a list of paths."""
    if kind not in KINDS:
        raise ValueError(f"unknown manifest kind {kind!r}")

    def describe(p):
        if p is None:
            return None
        if isinstance(p, (list, tuple)):
            return [describe(x) for x in p]
        return {"path": str(Path(p).resolve()), "sha256": content_hash(p)}

    manifest = {
        "kind": kind,
        "format_version": FORMAT_VERSION,
        "alseg_version": __version__,
        "command": list(sys.argv),
        "args": args,
        "seed": seed,
        "libraries": library_versions(),
        "device": device,
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "inputs": {role: describe(p) for role, p in (inputs or {}).items()},
        "outputs": {role: (str(Path(p).resolve()) if isinstance(p, (str, Path)) else p)
                    for role, p in (outputs or {}).items()},
    }
    manifest.update(extra)
    return manifest


def relocated(manifest: Dict[str, Any], source: os.PathLike, dest: os.PathLike) -> Dict[str, Any]:
    """The manifest of an output linked from ``source`` to ``dest``: its output paths under
    ``source`` point under ``dest``, and ``reused_from`` names the output that was made (the
    source, or what the source was itself linked from)."""
    source, dest = str(Path(source).resolve()), str(Path(dest).resolve())

    def move(p):
        return dest + p[len(source):] if isinstance(p, str) and (p == source or p.startswith(source + os.sep)) else p
    return {**manifest, "outputs": {k: move(v) for k, v in (manifest.get("outputs") or {}).items()},
            "reused_from": manifest.get("reused_from") or source}


def save_manifest(path: os.PathLike, manifest: Dict[str, Any], force: bool = True) -> Path:
    return write_json(path, manifest, force=force)


def load_manifest(source, expect: Optional[Iterable[str]] = None) -> Dict[str, Any]:
    """Load a manifest from a path or a JSON string; check its kind when ``expect`` is given."""
    if isinstance(source, dict):
        manifest = source
    else:
        text = str(source)
        if not text.lstrip().startswith("{"):
            path = Path(text)
            if not path.exists():
                raise AlsegError(f"{path}: manifest not found")
            text = path.read_text()
        try:
            manifest = json.loads(text)
        except json.JSONDecodeError as exc:
            raise AlsegError(f"{str(source)[:80]}: not a JSON manifest ({exc.msg})") from None
    if not isinstance(manifest, dict) or "kind" not in manifest:
        raise AlsegError(f"{str(source)[:80]}: not an alseg manifest (no 'kind')")
    if expect is not None and manifest["kind"] not in set(expect):
        raise AlsegError(f"expected a manifest of kind {sorted(set(expect))}, got {manifest['kind']!r}")
    return manifest
