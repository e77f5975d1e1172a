"""Wall time of each stage of a loop run, read back from its steps' done-markers.

Every marker (RUN_DIR/.../.done/<step>.json, written by the loop) records the seconds its
step took, so a finished or half-finished RUN_DIR can be summarised at any time: per method
and budget, the mean over seeds of select / train / evaluate, and the once-per-seed
pretrain and embed steps (an encoder linked from another run says so: its seconds are the link's).
A round whose model was linked, not trained (loop: twins), is left out of the train mean and
counted beside it.
"""
from __future__ import annotations

import re
from pathlib import Path
from statistics import mean
from typing import Any, Dict, List

from ..atomic import read_json_or_empty

ROUND_STAGES = ("select", "train", "evaluate")


def _seconds(marker: dict):
    try:
        return float(marker["seconds"])
    except (KeyError, TypeError, ValueError):
        return None


def stage_times(*run_dirs) -> Dict[str, Any]:
    """Several run directories (e.g. methods run apart) are summarised together."""
    once, cells = {}, {}
    for run_dir in map(Path, run_dirs):
        _collect(run_dir, once, cells)
    rounds = [{"method": m, "budget": b, "linked": c["linked"],
               "runs": max(len(c["select"]), len(c["train"]) + c["linked"], len(c["evaluate"])),
               **{s: (mean(c[s]) if c[s] else None) for s in ROUND_STAGES}}
              for (m, b), c in sorted(cells.items())]
    return {"once": once, "rounds": rounds}


def _collect(run_dir: Path, once: Dict[str, float], cells: Dict[tuple, Dict[str, List[float]]]) -> None:
    # the loop's encoders (encoders/.done/seed<k>), a variant's or method's own
    # (encoders/<key>/.done/seed<k>: "pretrain <key>-seed<k>", as its embeddings are named)
    markers = [("pretrain", "", m) for m in sorted((run_dir / "encoders" / ".done").glob("*.json"))]
    markers += [("pretrain", m.parent.parent.name + "-", m)
                for m in sorted((run_dir / "encoders").glob("*/.done/*.json"))]
    markers += [("embed", "", m) for m in sorted((run_dir / "embeddings" / ".done").glob("*.json"))]
    for kind, key, path in markers:
        marker = read_json_or_empty(path)
        sec = _seconds(marker)
        if sec is None:
            continue
        source = marker.get("reused_from")          # an encoder linked by loop --reuse-encoders
        once[f"{kind} {key}{path.stem.removesuffix('.zarr')}" + (f" (linked from {source})" if source else "")] = sec
    for rd in run_dir.glob("*/seed*/round*"):
        match = re.fullmatch(r"round([0-9.]+)", rd.name)
        if not match or not rd.is_dir():
            continue
        key = (rd.parent.parent.name, float(match.group(1)))
        for stage in ROUND_STAGES:
            marker = read_json_or_empty(rd / ".done" / f"{stage}.json")
            sec = _seconds(marker)
            if sec is None:
                continue
            cell = cells.setdefault(key, {**{s: [] for s in ROUND_STAGES}, "linked": 0})
            if stage == "train" and marker.get("reused_from"):
                cell["linked"] += 1                 # a model linked from another round: no training
            else:
                cell[stage].append(sec)


def timings_markdown(times: Dict[str, Any]) -> str:
    def fmt(sec):
        if sec is None:
            return "-"
        return f"{sec:.1f} s" if sec < 10 else f"{sec:.0f} s" if sec < 120 else f"{sec / 60:.1f} min"

    lines = ["| step | wall time |", "|---|---|"]
    lines += [f"| {name} | {fmt(sec)} |" for name, sec in times["once"].items()]
    lines += ["", "| method | budget | select | train | evaluate | seeds |", "|---|---|---|---|---|---|"]
    lines += [f"| {r['method']} | {r['budget']:g} % | {fmt(r['select'])} | {fmt(r['train'])}"
              + (f" ({r['linked']} linked)" if r.get("linked") else "")
              + f" | {fmt(r['evaluate'])} | {r['runs']} |" for r in times["rounds"]]
    return "\n".join(lines) + "\n"
