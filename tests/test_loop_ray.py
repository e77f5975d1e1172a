"""`loop --executor ray` on a real local Ray: the task graph's order and parallelism, identical
selections to the local executor, a killed worker retried, a failing step's one-line error."""
from __future__ import annotations

import json
import os
import signal
import threading
import time
from pathlib import Path

import pytest

from alseg_cli.errors import AlsegError
from alseg_cli.experiment import steps as layout
from alseg_cli.experiment.loop import run_loop
from test_loop import FakeBackend, options, selections

ray = pytest.importorskip("ray")
HERE = Path(__file__).resolve().parent


@pytest.fixture(scope="module", autouse=True)
def local_ray():
    # workers import this module's backends by name: put tests/ on their path
    path = os.pathsep.join([str(HERE), os.environ.get("PYTHONPATH", "")])
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False,
             runtime_env={"env_vars": {"PYTHONPATH": path, "OMP_NUM_THREADS": "1"}})
    yield
    ray.shutdown()


@pytest.fixture
def dataset(tmp_path):
    p = tmp_path / "data.zarr"
    p.mkdir()
    return str(p)


def _stamp(out, what):
    """Each step leaves (what, pid, start, end) beside its output: workers run elsewhere."""
    log = Path(out).parent / f".{Path(out).name}.{what}.json"
    return log, time.time()


class TimedBackend(FakeBackend):
    """The fake steps, with a slow pretraining and a record of when each step ran."""

    def _timed(self, out, what, fn):
        log, start = _stamp(out, what)
        result = fn()
        log.write_text(json.dumps({"pid": os.getpid(), "start": start, "end": time.time()}))
        return result

    def pretrain(self, dataset, out, seed, epochs, device, **kw):
        def slow():
            # slow pretraining: 3 s, and in the Ray run until the random chain's first selection is
            # done (it must not wait for the encoder; at most 60 s, so a busy machine cannot flake)
            run = Path(out).parent.parent
            first = run / "random" / "seed0" / "round2" / ".selection.json.select.json"
            t0 = time.time()
            while time.time() - t0 < 3.0 or (run.name == "ray" and not first.exists() and time.time() - t0 < 60):
                time.sleep(0.1)
            return super(TimedBackend, self).pretrain(dataset, out, seed, epochs, device, **kw)
        return self._timed(out, "pretrain", slow)

    def select(self, **kw):
        return self._timed(kw["out"], "select", lambda: super(TimedBackend, self).select(**kw))


def _record(path, what):
    return json.loads((Path(path).parent / f".{Path(path).name}.{what}.json").read_text())


def test_chains_without_an_encoder_run_during_pretraining_and_select_the_same(tmp_path, dataset):
    local = tmp_path / "local"
    run_loop(local, backend=f"{__name__}:TimedBackend", pretrain=True,
             **options(dataset, methods="random,gcl-coreset", seeds="0"))
    dist = tmp_path / "ray"
    m = run_loop(dist, backend=f"{__name__}:TimedBackend", pretrain=True, executor="ray",
                 **options(dataset, methods="random,gcl-coreset", seeds="0"))
    assert selections(dist) == selections(local)
    assert [c["method"] for c in m["chains"]] == ["random", "gcl-coreset"] and m["steps_run"] == 18
    enc = _record(dist / "encoders" / "seed0", "pretrain")
    first_random = _record(dist / "random" / "seed0" / "round2" / "selection.json", "select")
    first_gcl = _record(dist / "gcl-coreset" / "seed0" / "round2" / "selection.json", "select")
    assert first_random["start"] < enc["end"]          # random did not wait for the encoder
    assert first_gcl["start"] >= enc["end"]            # gcl-coreset did
    assert first_random["pid"] != enc["pid"]           # ... and ran beside it


class MemberTimes(FakeBackend):
    def train(self, **kw):
        start = time.time()
        time.sleep(1.0)
        out = super().train(**kw)
        if kw.get("member") is not None:
            (Path(kw["out"]).parent / f".member{kw['member']}.json").write_text(
                json.dumps({"pid": os.getpid(), "start": start, "end": time.time()}))
        return out


def test_ensemble_members_train_in_parallel_and_coreset_selects_ahead(tmp_path, dataset):
    run = tmp_path / "ray"
    m = run_loop(run, backend=f"{__name__}:MemberTimes", executor="ray", models_per_round=2,
                 **options(dataset, methods="coreset", seeds="0", budgets="2,5"))
    rd = run / "coreset" / "seed0" / "round2"
    a, b = (json.loads((rd / f".member{k}.json").read_text()) for k in (0, 1))
    assert a["pid"] != b["pid"] and a["start"] < b["end"] and b["start"] < a["end"]   # overlapped
    assert m["steps_run"] == 6
    local = tmp_path / "local"
    run_loop(local, backend=FakeBackend(), models_per_round=2, **options(dataset, methods="coreset", seeds="0",
                                                                          budgets="2,5"))
    assert selections(run) == selections(local)


class DiesOnceBackend(FakeBackend):
    """The first attempt of coreset's second training announces its pid and hangs until killed."""

    def train(self, **kw):
        out = Path(kw["out"])
        flag = out.parent / ".pid"
        if "coreset" in str(out) and "round5" in str(out) and not flag.exists():
            flag.write_text(str(os.getpid()))
            time.sleep(120)
        return super().train(**kw)


def test_a_worker_killed_mid_training_is_retried_and_the_run_completes_identically(tmp_path, dataset):
    local = tmp_path / "local"
    run_loop(local, backend=FakeBackend(), **options(dataset, methods="random,coreset", seeds="0"))
    dist = tmp_path / "ray"
    flag = dist / "coreset" / "seed0" / "round5" / ".pid"

    def kill_when_announced():
        for _ in range(600):
            if flag.exists() and flag.read_text():
                os.kill(int(flag.read_text()), signal.SIGKILL)
                return
            time.sleep(0.1)
    killer = threading.Thread(target=kill_when_announced, daemon=True)
    killer.start()
    run_loop(dist, backend=f"{__name__}:DiesOnceBackend", executor="ray",
             **options(dataset, methods="random,coreset", seeds="0"))
    killer.join(timeout=1)
    assert flag.exists() and selections(dist) == selections(local)


class BadDataBackend(FakeBackend):
    def select(self, **kw):
        if "round5" in str(kw["out"]):
            raise AlsegError("slices.zarr: array 'images' lacks chunk file c/1/0/0/0")
        return super().select(**kw)


def test_a_failing_step_stops_the_run_with_its_line_and_keeps_finished_work(tmp_path, dataset):
    run = tmp_path / "ray"
    with pytest.raises(AlsegError, match=r"^slices\.zarr: array 'images' lacks chunk file c/1/0/0/0$"):
        run_loop(run, backend=f"{__name__}:BadDataBackend", executor="ray",
                 **options(dataset, methods="random", seeds="0"))
    assert layout.is_done(run / "random" / "seed0" / "round2", "select")     # finished steps stay
    # the same command (here with the local executor) resumes from the markers
    m = run_loop(run, backend=FakeBackend(), **options(dataset, methods="random", seeds="0"))
    assert m["steps_skipped"] >= 1 and m["steps_run"] + m["steps_skipped"] == 9


def test_a_worker_that_cannot_see_the_run_dir_is_one_line(tmp_path):
    from alseg_cli.experiment.executors import Task, run_ray

    task = Task("x", "chain", print, ("never",))
    with pytest.raises(AlsegError, match=r"cannot see .*nowhere.*shared by every node"):
        run_ray([task], (str(tmp_path / "nowhere"),))


def test_the_real_steps_on_phantoms_select_what_the_local_executor_selects(phantom_store, tmp_path):
    # two models per round: on Ray the members train as tasks of their own, side by side
    opts = dict(dataset=str(phantom_store), methods="random,coreset", budgets="10,20", seeds="0",
                iterations=3, base_channels=4, device="cpu", models_per_round=2)
    local = run_loop(tmp_path / "local", **opts)
    dist = run_loop(tmp_path / "ray", executor="ray", **opts)
    assert selections(tmp_path / "ray") == selections(tmp_path / "local")
    assert [c["dice"] for c in dist["chains"]] == [c["dice"] for c in local["chains"]]   # CPU: the same metrics
    for run in ("local", "ray"):   # the per-chain summary, written once per chain by its one writer
        rounds = json.loads((tmp_path / run / "coreset" / "seed0" / "rounds.json").read_text())
        assert [r["round"] for r in rounds] == [0, 1]


@pytest.mark.slow
def test_driver_killed_then_the_same_command_resumes(phantom_store, tmp_path):
    import subprocess
    import sys

    exe = str(Path(sys.executable).with_name("alseg"))
    args = ["loop", "--dataset", str(phantom_store), "--methods", "random,coreset", "--budgets", "10,20,30",
            "--seeds", "0", "--iterations", "3", "--base-channels", "4", "--device", "cpu", "--no-progress"]
    subprocess.run([exe, *args, "-o", str(tmp_path / "local")], check=True, capture_output=True)
    run = tmp_path / "ray"
    proc = subprocess.Popen([exe, *args, "-o", str(run), "--executor", "ray"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    marker = run / "coreset" / "seed0" / "round10" / ".done" / "evaluate.json"
    for _ in range(900):
        if marker.exists() or proc.poll() is not None:
            break
        time.sleep(0.1)
    proc.kill()
    proc.wait()
    r = subprocess.run([exe, *args, "-o", str(run), "--executor", "ray"], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr[-2000:]
    assert selections(run) == selections(tmp_path / "local")
    assert json.loads(r.stdout)["steps_skipped"] >= 3
