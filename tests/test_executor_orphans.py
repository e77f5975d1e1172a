"""Killing the loop (SIGTERM or -9) ends its --jobs worker processes too: no orphan keeps
training into the run directory beside a resumed run."""
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

DRIVER = """
import time
from alseg_cli.experiment.executors import Task, run_local
tasks = [Task(f"t{k}", "chain", time.sleep, (120,)) for k in range(2)]
run_local(tasks, 2, (), in_process=lambda t: None)
"""


def _children(pid: int):
    out = []
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                stat = (d / "stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                out.append(int(d.name))
    return out


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


@pytest.mark.skipif(not Path("/proc").is_dir(), reason="reads /proc (Linux)")
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL])
def test_workers_exit_when_the_loop_is_killed(sig):
    driver = subprocess.Popen([sys.executable, "-c", DRIVER])
    try:
        deadline = time.time() + 60
        workers = []
        while time.time() < deadline and len(workers) < 2:
            time.sleep(0.5)
            workers = [p for p in _children(driver.pid) if "spawn_main" in Path(f"/proc/{p}/cmdline").read_text()]
        assert len(workers) == 2, "the pool's workers never started"
        os.kill(driver.pid, sig)
        driver.wait(timeout=30)
        deadline = time.time() + 15
        while time.time() < deadline and any(_alive(p) for p in workers):
            time.sleep(0.2)
        assert not any(_alive(p) for p in workers), "workers outlived the killed loop"
    finally:
        if driver.poll() is None:
            driver.kill()
