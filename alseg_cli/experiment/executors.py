"""Executors run the loop's task graph: ``local`` (this process, or spawned processes) and
``ray`` (a local Ray instance or a cluster).

The graph (``Task``: a key, a kind, a function with its arguments, the keys it waits for) is
built by the loop: pixel embeddings once; per seed the GCL encoder and its embeddings; per
(method, seed) chain its rounds. A chain waits only for the embeddings it uses, so chains
that need no encoder start while encoders train. Every task's steps are done-marked and its
outputs atomic, so a task that dies is rerun (Ray retries it) from its last complete step,
and a rerun of the whole command resumes.
"""
from __future__ import annotations

import os
import socket
import threading
import time
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from dataclasses import dataclass, field
from multiprocessing import get_context
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Tuple

from ..errors import AlsegError

EXECUTORS = ("local", "ray")
RAY_RETRIES = 3             # reruns of a task whose worker died (not of one that raised an error)


@dataclass
class Task:
    key: str                                   # "pixels", "seed0", "random/seed0"
    kind: str                                  # "embed", "pretrain" or "chain"
    fn: Callable
    args: Tuple
    deps: Tuple[str, ...] = ()
    threads: int = 1                           # torch CPU threads inside the task
    resources: Dict[str, float] = field(default_factory=dict)   # Ray: num_cpus, num_gpus


def topological(tasks: List[Task]) -> List[Task]:
    """Tasks ordered so that each comes after what it waits for (stable otherwise)."""
    keys = {t.key for t in tasks}
    done, order, left = set(), [], list(tasks)
    while left:
        ready = [t for t in left if all(d in done or d not in keys for d in t.deps)]
        if not ready:
            raise AlsegError("internal error: the loop's task graph has a cycle")
        for t in ready:
            order.append(t)
            done.add(t.key)
        left = [t for t in left if t.key not in done]
    return order


def exit_with_parent(parent: int, poll_seconds: float = 1.0) -> None:
    """Worker initializer: end this worker when the loop that spawned it is gone (killed with
    SIGTERM or -9, a finally clause never runs), so no orphan keeps training into the run
    directory beside a resumed run. The killed step restarts on resume, as after kill -9."""
    def watch():
        while True:
            time.sleep(poll_seconds)
            if os.getppid() != parent:
                os._exit(1)
    threading.Thread(target=watch, name="exit-with-parent", daemon=True).start()


def run_task(task_fn, args, threads: int, paths: Tuple[str, ...]):
    """What every task runs first wherever it runs: check that the shared files are visible
    (a node that cannot see them fails the run with one line), then set its torch threads."""
    for p in paths:
        if not Path(p).exists():
            raise AlsegError(f"{socket.gethostname()}: cannot see {p}; the run directory and the dataset "
                             f"must be on a filesystem shared by every node")
    import torch

    torch.set_num_threads(max(1, int(threads)))
    return task_fn(*args)


def run_local(tasks: List[Task], jobs: int, paths, in_process: Callable[[Task], Any]) -> Dict[str, Any]:
    """Run the graph here: one task at a time in this process (jobs <= 1, or when a task is
    the only one that can run, which then gets every job's threads if it is a pretraining), or
    up to ``jobs`` spawned processes, each task submitted as soon as what it waits for is done."""
    order = topological(tasks)
    if jobs <= 1:
        return {t.key: in_process(t) for t in order}
    results: Dict[str, Any] = {}
    running: Dict[Any, Task] = {}
    pool = None
    try:
        while len(results) < len(order):
            started = {t.key for t in running.values()}
            ready = [t for t in order if t.key not in results and t.key not in started
                     and all(d in results for d in t.deps)]
            if not running and len(ready) == 1:
                # nothing else can start before it ends (every other task waits on it): run it
                # here, with every job's threads if it is a pretraining
                t = ready[0]
                solo = Task(t.key, t.kind, t.fn, t.args, t.deps,
                            t.threads * jobs if t.kind == "pretrain" else t.threads)
                results[t.key] = in_process(solo)
                continue
            for t in ready[:max(0, jobs - len(running))]:
                if pool is None:   # spawn: safe with torch threads and CUDA, the same on every platform
                    pool = ProcessPoolExecutor(max_workers=jobs, mp_context=get_context("spawn"),
                                               initializer=exit_with_parent, initargs=(os.getpid(),))
                running[pool.submit(run_task, t.fn, t.args, t.threads, paths)] = t
            finished, _ = wait(list(running), return_when=FIRST_COMPLETED)
            for fut in finished:
                results[running.pop(fut).key] = fut.result()
    finally:
        if pool is not None:
            pool.shutdown(cancel_futures=True)
    return results


def run_ray(tasks: List[Task], paths, address: Optional[str] = None, on_start=None) -> Dict[str, Any]:
    """Submit the graph to Ray: each task a remote call that waits for its dependencies'
    results, with its declared resources; a task whose worker dies is retried, a task that
    raises stops the run with its one-line error (finished work stays on disk)."""
    try:
        import ray
    except ImportError:
        raise AlsegError("--executor ray needs Ray: pip install 'alseg[ray]' (or pip install ray)") from None
    owns = not ray.is_initialized()
    if owns:
        try:
            ray.init(address=address, include_dashboard=False, log_to_driver=False,
                     configure_logging=False, ignore_reinit_error=True)
        except Exception as exc:  # connection refused, bad address, ...
            raise AlsegError(f"--ray-address {address or '(local)'}: cannot start or join Ray "
                             f"({exc.__class__.__name__}: {str(exc).splitlines()[0][:160]})") from None
    remote = ray.remote(_ray_task)
    try:
        refs: Dict[str, Any] = {}
        for t in topological(tasks):
            deps = [refs[d] for d in t.deps if d in refs]
            opts = {"max_retries": RAY_RETRIES, "num_cpus": t.resources.get("num_cpus", 1),
                    "num_gpus": t.resources.get("num_gpus", 0)}
            refs[t.key] = remote.options(name=f"alseg:{t.key}", **opts).remote(
                t.fn, t.args, t.threads, paths, *deps)
        if on_start:
            on_start()
        pending = dict((ref, key) for key, ref in refs.items())
        results: Dict[str, Any] = {}
        while pending:
            ready, _ = ray.wait(list(pending), num_returns=1, timeout=None)
            for ref in ready:
                key = pending.pop(ref)
                try:
                    results[key] = ray.get(ref)
                except Exception as exc:
                    for other in pending:
                        ray.cancel(other, force=False)
                    raise _unwrap(exc, key) from None
        return results
    finally:
        if owns:
            ray.shutdown()


def _ray_task(fn, args, threads, paths, *deps):
    """A Ray task: the dependencies' results are only waited for, never used."""
    return run_task(fn, args, threads, paths)


def _unwrap(exc: Exception, key: str) -> Exception:
    """A task's own AlsegError (or other error) as one line, without Ray's wrapping."""
    cause = getattr(exc, "cause", None)
    if isinstance(cause, AlsegError):
        return AlsegError(str(cause))
    if cause is not None:
        return AlsegError(f"{key}: {cause.__class__.__name__}: {str(cause).splitlines()[0] if str(cause) else ''}")
    first = str(exc).strip().splitlines()[0] if str(exc).strip() else exc.__class__.__name__
    return AlsegError(f"{key}: {first}")
