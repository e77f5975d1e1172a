"""Loop summary: rounds done, current Dice, elapsed, ETA per chain.

It reads the done markers in the run directory rather than listening to workers, so the
same summary serves in-process runs, spawned processes, and (later) remote executors.
It reports through a Reporter (progress.py): a live one (the CLI on a terminal) gets the
summary table redrawn every second; otherwise a background thread polls the markers and
notes one line per finished round.
"""
from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Dict, List, Tuple

from ..progress import LineReporter, Reporter
from . import steps as layout

COLUMNS = ("method", "seed", "rounds", "Dice")


def _fmt(seconds: float) -> str:
    seconds = int(max(0, seconds))
    return f"{seconds // 3600:d}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"


def chain_status(cfg: Dict, run_dir: Path, method: str, seed: int) -> Dict:
    """Steps and rounds done so far for one chain, and its latest mean Dice."""
    done_steps, rounds, dice, last, collapsed, linked, last_linked = 0, 0, None, None, 0, 0, False
    for pct in cfg["budgets"]:
        rd = layout.round_dir(run_dir, method, seed, pct)
        for step in ("select", "train", "evaluate"):
            done_steps += layout.is_done(rd, step)
        rec = layout.read_marker(rd, "evaluate")
        if rec is not None:
            rounds += 1
            dice = rec.get("mean_dice", dice)
            last = rec.get("degenerate")
            collapsed += bool(last)
            last_linked = bool((layout.read_marker(rd, "train") or {}).get("reused_from"))
            linked += last_linked
    # last: why the latest round's model is degenerate (or None); collapsed: how many rounds were;
    # linked: how many rounds' models were linked from another round's (twins.py), not trained
    return {"steps": done_steps, "rounds": rounds, "dice": dice, "last_degenerate": last, "collapsed": collapsed,
            "linked": linked, "last_linked": last_linked}


class LoopProgress:
    def __init__(self, cfg: Dict, run_dir: Path, chains: List[Tuple[str, int]], poll_seconds: float = 15.0,
                 reporter: Reporter = None):
        self.cfg, self.run_dir, self.chains = cfg, Path(run_dir), chains
        self.reporter = reporter if reporter is not None else LineReporter()
        self.started = time.perf_counter()
        self.total = 3 * len(cfg["budgets"]) * len(chains)
        self.initial = sum(chain_status(cfg, self.run_dir, m, s)["steps"] for m, s in chains)
        self.poll_seconds = 1.0 if self.reporter.live else poll_seconds
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

    def _dice(self, st) -> str:
        text = "-" if st["dice"] is None else f"{100 * st['dice']:.1f}"
        return text + (f" COLLAPSED ({st['last_degenerate']})" if st.get("last_degenerate") else "")

    def table(self) -> None:
        rows, caption = self.status()
        self.reporter.status("alseg loop", COLUMNS, [(m, str(s), f"{st['rounds']}/{len(self.cfg['budgets'])}",
                                                      self._dice(st)) for m, s, st in rows], caption)

    def note(self, message: str) -> None:
        """A phase of the run (e.g. pretraining)."""
        self.reporter.note(f"loop: {message}")

    def start(self):
        self.poll()  # remember what was done before this run, so only new rounds are noted
        n = len(self.chains)
        self.note(f"{n} chain{'s' * (n != 1)} (method x seed), {self.initial}/{self.total} steps already done")
        self._poller = threading.Thread(target=self._poll_until_stopped, daemon=True)
        self._poller.start()

    def _poll_until_stopped(self):
        while not self._stop.wait(self.poll_seconds):
            self.poll()

    def poll(self):
        """Redraw the table (live reporters), or note each round finished since the last poll."""
        if self.reporter.live:
            self.table()
            return
        rows, caption = self.status()
        first = not self._rounds
        for method, seed, st in rows:
            if not first and st["rounds"] > self._rounds.get((method, seed), 0):
                self.note(f"{method} seed {seed} round {st['rounds']}/{len(self.cfg['budgets'])} "
                          f"Dice {self._dice(st)}{' (model linked)' if st['last_linked'] else ''}  ({caption})")
            self._rounds[(method, seed)] = st["rounds"]

    def stop(self):
        self._stop.set()
        if self._poller is not None:
            self._poller.join()
        self.poll()
        if not self.reporter.live:          # the final summary, one line per chain
            rows, caption = self.status()
            for method, seed, st in rows:
                flag = (f", {st['collapsed']} collapsed round(s)" if st["collapsed"] else "") + \
                       (f", {st['linked']} linked" if st["linked"] else "")
                self.reporter.note(f"loop: {method} seed {seed}: {st['rounds']}/{len(self.cfg['budgets'])} "
                                   f"rounds, last Dice {self._dice(st)}{flag}")
            self.reporter.note(f"loop: {caption}")
        self.reporter.close()
