"""Run-directory layout and resumable steps.

    RUN_DIR/config.json                         resolved configuration
    RUN_DIR/embeddings/pixels.zarr              raw-pixel vectors (shared by all chains)
    RUN_DIR/encoders/seed<k>/                   GCL encoder trained once per seed (--pretrain)
    RUN_DIR/embeddings/seed<k>.zarr             that encoder's embeddings
    RUN_DIR/encoders/<variant>/seed<k>/         a variant's own encoder (its pretrain_options)
    RUN_DIR/embeddings/<variant>-seed<k>.zarr   and its embeddings
    RUN_DIR/<method>/seed<k>/round<pct>/        selection.json, model/, eval.json
    RUN_DIR/<method>/seed<k>/rounds.json        per-round records (derived; for people)
    <any step dir>/.done/<step>.json            done marker of a step

A step's marker is written atomically *after* its output is complete. On rerun a step
with a marker is skipped; a step without one is redone from scratch (with force, since a
kill between the output's rename and the marker may have left a complete output behind),
except training, which continues each member from its last validation (backend.py).
A kill -9 therefore loses at most the step in flight, and of a training step only what
followed its last validation.
"""
from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any, Callable, Dict, Optional

from ..atomic import write_json
from .config import round_name


def chain_dir(run_dir, method: str, seed: int) -> Path:
    return Path(run_dir) / method / f"seed{seed}"


def round_dir(run_dir, method: str, seed: int, budget) -> Path:
    """RUN_DIR/<method>/seed<k>/round<pct> (budget: a Budget or a percentage)."""
    return chain_dir(run_dir, method, seed) / round_name(budget)


def encoder_dir(run_dir, seed: int, key: Optional[str] = None) -> Path:
    """The loop's encoder of a seed, or a variant's (``key``: its name)."""
    return Path(run_dir) / "encoders" / (f"{key}/seed{seed}" if key else f"seed{seed}")


def embeddings_path(run_dir, source: str) -> Path:
    """source is 'pixels', 'seed<k>' or '<variant>-seed<k>'."""
    return Path(run_dir) / "embeddings" / f"{source}.zarr"


def marker_path(directory, step: str) -> Path:
    return Path(directory) / ".done" / f"{step}.json"


def is_done(directory, step: str) -> bool:
    return marker_path(directory, step).exists()


def read_marker(directory, step: str) -> Optional[Dict[str, Any]]:
    path = marker_path(directory, step)
    if not path.exists():
        return None
    return json.loads(path.read_text())


class StepRunner:
    """Runs named steps at most once per run directory, recording time and a summary.

    ``on_step(step, directory)`` is called before a step actually runs (tests use it to
    inject a failure after N steps; executors use it for logging).
    """

    def __init__(self, on_step: Optional[Callable[[str, Path], None]] = None):
        self.on_step = on_step
        self.ran = []      # (directory, step) actually executed in this process
        self.skipped = []  # (directory, step) found done

    def run(self, directory, step: str, fn: Callable[[], Any],
            summarize: Callable[[Any], Dict[str, Any]] = lambda result: {}) -> Dict[str, Any]:
        directory = Path(directory)
        done = read_marker(directory, step)
        if done is not None:
            self.skipped.append((str(directory), step))
            return done
        if self.on_step is not None:
            self.on_step(step, directory)
        directory.mkdir(parents=True, exist_ok=True)
        start = time.perf_counter()
        result = fn()
        record = {"step": step, "seconds": round(time.perf_counter() - start, 3),
                  "finished": time.strftime("%Y-%m-%dT%H:%M:%S%z"), **summarize(result)}
        write_json(marker_path(directory, step), record, force=True)
        self.ran.append((str(directory), step))
        return record
