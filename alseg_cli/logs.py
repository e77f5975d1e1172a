"""Plain progress lines for logs: long commands whose stderr is a file or a pipe print one
line per milestone (epoch, validation) instead of a live bar that only a terminal can show."""
from __future__ import annotations

import sys
import time


def log_line(message: str) -> None:
    print(f"{time.strftime('%H:%M:%S')} {message}", file=sys.stderr, flush=True)
