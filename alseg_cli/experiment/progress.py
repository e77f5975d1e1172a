"""Live loop summary on stderr: rounds done, current Dice, elapsed, ETA per chain.

It reads the done markers in the run directory rather than listening to workers, so the
same display serves in-process runs, spawned processes, and (later) remote executors.
"""
from __future__ import annotations

import time
from pathlib import Path
from typing import Dict, List, Tuple

from rich.console import Console
from rich.live import Live
from rich.table import Table

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
    def __init__(self, cfg: Dict, run_dir: Path, chains: List[Tuple[str, int]]):
        self.cfg, self.run_dir, self.chains = cfg, Path(run_dir), chains
        self.console = Console(stderr=True)
        self.started = time.perf_counter()
        self.total = 3 * len(cfg["budgets"]) * len(chains)
        self.initial = sum(chain_status(cfg, self.run_dir, m, s)["steps"] for m, s in chains)
        # A live table on a terminal; in a log (not a terminal) one line per change and the
        # final table, instead of redrawn frames.
        self.live = (Live(console=self.console, refresh_per_second=1, get_renderable=self.render,
                          transient=False) if self.console.is_terminal else None)
        self._last_line = None

    def render(self) -> Table:
        elapsed = time.perf_counter() - self.started
        table = Table(title="alseg loop", title_justify="left")
        for col in ("method", "seed", "rounds", "Dice"):
            table.add_column(col)
        done = 0
        for method, seed in self.chains:
            st = chain_status(self.cfg, self.run_dir, method, seed)
            done += st["steps"]
            dice = "-" if st["dice"] is None else f"{100 * st['dice']:.1f}"
            table.add_row(method, str(seed), f"{st['rounds']}/{len(self.cfg['budgets'])}", dice)
        now = done - self.initial
        eta = "?" if now <= 0 else _fmt(elapsed / now * (self.total - done))
        table.caption = f"steps {done}/{self.total}  elapsed {_fmt(elapsed)}  ETA {eta}"
        return table

    def start(self):
        if self.live:
            self.live.start()

    def refresh(self):
        if self.live:
            self.live.refresh()
            return
        line = self.render().caption
        if line != self._last_line:
            self.console.print(line, highlight=False)
            self._last_line = line

    def stop(self):
        if self.live:
            self.live.stop()
        else:
            self.console.print(self.render())
