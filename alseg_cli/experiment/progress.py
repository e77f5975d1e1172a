"""Live loop summary on stderr: rounds done, current Dice, elapsed, ETA per chain.

It reads the done markers in the run directory rather than listening to workers, so the
same display serves in-process runs, spawned processes, and (later) remote executors.
On a terminal it is a Rich table redrawn every second; in a log (stderr a file or a pipe)
a background thread polls the markers and prints one timestamped line per finished round.
"""
from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Dict, List, Tuple

from rich.console import Console
from rich.live import Live
from rich.table import Table

from ..logs import log_line
from . import steps as layout


def _fmt(seconds: float) -> str:
    seconds = int(max(0, seconds))
    return f"{seconds // 3600:d}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"


def chain_status(cfg: Dict, run_dir: Path, method: str, seed: int) -> Dict:
    """Steps and rounds done so far for one chain, and its latest mean Dice."""
    done_steps, rounds, dice = 0, 0, None
    for pct in cfg["budgets"]:
        rd = layout.round_dir(run_dir, method, seed, pct)
        for step in ("select", "train", "evaluate"):
            done_steps += layout.is_done(rd, step)
        rec = layout.read_marker(rd, "evaluate")
        if rec is not None:
            rounds += 1
            dice = rec.get("mean_dice", dice)
    return {"steps": done_steps, "rounds": rounds, "dice": dice}


class LoopProgress:
    def __init__(self, cfg: Dict, run_dir: Path, chains: List[Tuple[str, int]], poll_seconds: float = 15.0):
        self.cfg, self.run_dir, self.chains = cfg, Path(run_dir), chains
        self.console = Console(stderr=True)
        self.started = time.perf_counter()
        self.total = 3 * len(cfg["budgets"]) * len(chains)
        self.initial = sum(chain_status(cfg, self.run_dir, m, s)["steps"] for m, s in chains)
        self.live = (Live(console=self.console, refresh_per_second=1, get_renderable=self.render,
                          transient=False) if self.console.is_terminal else None)
        self.poll_seconds = poll_seconds
        self._rounds: Dict[Tuple[str, int], int] = {}
        self._stop = threading.Event()
        self._poller = None

    def status(self):
        """Per-chain status, steps done in all, and the ETA from this run's pace."""
        rows = [(m, s, chain_status(self.cfg, self.run_dir, m, s)) for m, s in self.chains]
        done = sum(st["steps"] for _, _, st in rows)
        now = done - self.initial
        elapsed = time.perf_counter() - self.started
        eta = "?" if now <= 0 else _fmt(elapsed / now * (self.total - done))
        return rows, f"steps {done}/{self.total}  elapsed {_fmt(elapsed)}  ETA {eta}"

    def render(self) -> Table:
        rows, caption = self.status()
        table = Table(title="alseg loop", title_justify="left", caption=caption)
        for col in ("method", "seed", "rounds", "Dice"):
            table.add_column(col)
        for method, seed, st in rows:
            dice = "-" if st["dice"] is None else f"{100 * st['dice']:.1f}"
            table.add_row(method, str(seed), f"{st['rounds']}/{len(self.cfg['budgets'])}", dice)
        return table

    def note(self, message: str) -> None:
        """A phase of the run (e.g. pretraining), shown above the table or as a log line."""
        if self.live:
            self.console.print(message, highlight=False)
        else:
            log_line(f"loop: {message}")

    def start(self):
        if self.live:
            self.live.start()
            return
        self.poll()  # remember what was done before this run, so only new rounds are printed
        n = len(self.chains)
        log_line(f"loop: {n} chain{'s' * (n != 1)} (method x seed), {self.initial}/{self.total} steps already done")
        self._poller = threading.Thread(target=self._poll_until_stopped, daemon=True)
        self._poller.start()

    def _poll_until_stopped(self):
        while not self._stop.wait(self.poll_seconds):
            self.poll()

    def poll(self):
        """Log one line per round finished since the last poll (logs only)."""
        rows, caption = self.status()
        first = not self._rounds
        for method, seed, st in rows:
            if not first and st["rounds"] > self._rounds.get((method, seed), 0):
                dice = "-" if st["dice"] is None else f"{100 * st['dice']:.1f}"
                log_line(f"loop: {method} seed {seed} round {st['rounds']}/{len(self.cfg['budgets'])} "
                         f"Dice {dice}  ({caption})")
            self._rounds[(method, seed)] = st["rounds"]

    def stop(self):
        if self.live:
            self.live.stop()
            return
        self._stop.set()
        if self._poller is not None:
            self._poller.join()
        self.poll()
        self.console.print(self.render())
