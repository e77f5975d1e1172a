"""Atomic outputs: write to a temporary sibling, rename into place when complete.

A failed or interrupted command therefore never leaves a half-written store or
manifest, and an existing output is only replaced when the caller asked for it. While an
output is being written a lock file ``.NAME.lock`` (holding the writer's pid) sits beside
it: a second command aiming at the same path fails at once, and the final rename never
replaces an output that appeared meanwhile (no-replace link / rename). Whoever takes the
lock removes the temporaries of writers that were killed (``.NAME.tmp-*``).
"""
from __future__ import annotations

import contextlib
import errno
import json
import os
import shutil
import socket
import uuid
from pathlib import Path
from typing import Iterator, Union

from .errors import AlsegError

PathLike = Union[str, os.PathLike]


def _exists_error(path: Path) -> AlsegError:
    return AlsegError(f"{path} already exists; pass --force to overwrite it")


def _os_error(path: Path, exc: OSError) -> AlsegError:
    """An OSError as a sentence naming the output (read-only disks, permissions, full disks)."""
    why = {errno.EROFS: "the file system is read-only", errno.EACCES: "permission denied",
           errno.EPERM: "permission denied", errno.ENOSPC: "the disk is full",
           errno.EDQUOT: "the disk quota is exceeded"}.get(exc.errno, exc.strerror or str(exc))
    return AlsegError(f"cannot write {path}: {why}; choose another output path")


def check_writable(path: PathLike, force: bool) -> Path:
    """Refuse to overwrite an existing output unless ``force``; create the parent folder."""
    path = Path(path)
    if path.exists() and not force:
        raise _exists_error(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise _os_error(path, exc) from None
    if not os.access(path.parent, os.W_OK):
        raise _os_error(path, OSError(errno.EACCES, "permission denied"))
    return path


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _lock_holder(lock: Path):
    """(pid, host) written in a lock file; host '' for locks without one."""
    try:
        parts = lock.read_text().split()
        return int(parts[0]), (parts[1] if len(parts) > 1 else "")
    except (OSError, ValueError, IndexError):
        return 0, ""


@contextlib.contextmanager
def _output_lock(final: Path) -> Iterator[None]:
    """Hold ``.NAME.lock`` beside ``final``; a live holder is an error, a dead one's lock is taken over."""
    lock = final.with_name(f".{final.name}.lock")
    for attempt in range(2):
        try:
            fd = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            break
        except FileExistsError:
            pid, host = _lock_holder(lock)
            here = host in ("", socket.gethostname())
            if attempt == 0 and here and pid != os.getpid() and not (pid and _pid_alive(pid)):
                lock.unlink(missing_ok=True)      # its writer (on this host) was killed
                continue
            where = f"pid {pid}" + ("" if here else f" on {host}")
            raise AlsegError(f"{final} is being written by another alseg process ({where}); "
                             f"wait for it to finish, or remove {lock} if no such process runs") from None
        except OSError as exc:
            raise _os_error(final, exc) from None
    with os.fdopen(fd, "w") as fh:
        fh.write(f"{os.getpid()} {socket.gethostname()}")
    try:
        yield
    finally:
        lock.unlink(missing_ok=True)


def _clean_stale(final: Path) -> None:
    """Remove temporaries and backups left beside ``final`` by killed writers (we hold the lock)."""
    for pattern in (f".{final.name}.tmp-*", f".{final.name}.old-*"):
        for stale in final.parent.glob(pattern):
            _remove(stale)


def _commit(tmp: Path, final: Path) -> None:
    """Move ``tmp`` to ``final`` without ever replacing something that is there."""
    if tmp.is_dir():
        try:
            os.rename(tmp, final)         # fails on an existing non-empty directory or a file
        except OSError as exc:
            if exc.errno in (errno.EEXIST, errno.ENOTEMPTY, errno.ENOTDIR, errno.EISDIR):
                raise _exists_error(final) from None
            raise
        return
    try:
        os.link(tmp, final)               # atomic, and fails when final exists
    except FileExistsError:
        raise _exists_error(final) from None
    except OSError:                       # no hard links here (some network file systems)
        if final.exists():
            raise _exists_error(final) from None
        os.replace(tmp, final)
        return
    tmp.unlink()


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
    with _output_lock(final):
        _clean_stale(final)
        if final.exists() and not force:          # appeared after check_writable
            raise _exists_error(final)
        tmp = final.with_name(f".{final.name}.tmp-{uuid.uuid4().hex[:8]}")
        try:
            yield tmp
            if final.exists() and force:
                backup = final.with_name(f".{final.name}.old-{uuid.uuid4().hex[:8]}")
                os.replace(final, backup)
                os.replace(tmp, final)
                _remove(backup)
            else:
                _commit(tmp, final)
        except OSError as exc:
            _remove(tmp)
            if isinstance(exc, PermissionError) or exc.errno in (errno.EROFS, errno.ENOSPC, errno.EDQUOT):
                raise _os_error(final, exc) from None
            raise
        except BaseException:
            _remove(tmp)
            raise


def link_or_copy(source: PathLike, dest: PathLike) -> None:
    """Hard-link a finished file into a new output (no bytes copied; safe because alseg
    replaces outputs by rename and never edits a file in place); copy where links fail."""
    try:
        os.link(source, dest)
    except OSError:                    # another file system, or one without hard links
        shutil.copy2(source, dest)


def write_json(path: PathLike, obj, force: bool = True) -> Path:
    """Write ``obj`` as indented JSON atomically."""
    with atomic_path(path, force=force) as tmp:
        tmp.write_text(json.dumps(obj, indent=2, sort_keys=False, default=_json_default) + "\n", encoding="utf-8")
    return Path(path)


def read_json_or_empty(path: PathLike) -> dict:
    """A JSON record that may be absent or unreadable (another run's, a marker): {} then."""
    try:
        return json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return {}


def replace_json(path: PathLike, obj) -> Path:
    """Write JSON by temporary file + rename, without the output lock: for a file that several
    writers may write at once with the same content (the last rename wins, nothing is torn)."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp-{uuid.uuid4().hex[:8]}")
    tmp.write_text(json.dumps(obj, indent=2, default=_json_default) + "\n", encoding="utf-8")
    os.replace(tmp, path)
    return path


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
