"""`alseg select` from the command line: real shell pipes, --list, one-line errors."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from alseg_cli.store import DatasetStore, write_embeddings

ALSEG = str(Path(sys.executable).with_name("alseg"))
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


def sh(cmd, cwd):
    return subprocess.run(["bash", "-c", "set -o pipefail; " + cmd], cwd=cwd, capture_output=True,
                          text=True, env=ENV, timeout=300)


def embed_available() -> bool:
    r = subprocess.run([ALSEG, "embed", "--help"], capture_output=True, text=True, env=ENV)
    return r.returncode == 0 and "--encoder" in r.stdout


@pytest.fixture(scope="module")
def workdir(phantom_store, tmp_path_factory):
    """An embeddings store and the manifest 'alseg embed' would print for it."""
    d = tmp_path_factory.mktemp("cli")
    ds = DatasetStore(phantom_store)
    write_embeddings(d / "emb.zarr", ds.images().reshape(len(ds), -1)[:, ::16], ds.slice_ids.tolist(),
                     {"dataset": str(phantom_store), "encoder": {"kind": "pixels", "gcl": False}})
    (d / "emb_manifest.json").write_text(json.dumps(
        {"kind": "embeddings", "outputs": {"embeddings": str(d / "emb.zarr")}}) + "\n")
    return d


def test_embed_pipe_then_selection_pipe(phantom_store, workdir):
    if embed_available():
        first = f"{ALSEG} embed {phantom_store} --encoder pixels -o e2.zarr"
    else:  # alseg embed is built concurrently; pipe the manifest it would print
        first = "cat emb_manifest.json"
    r = sh(f"{first} | {ALSEG} select --method coreset --budget 2% -o r1.json "
           f"| {ALSEG} select --method coreset --embeddings emb.zarr --labeled - --budget 5% > r2.json",
           workdir)
    assert r.returncode == 0, r.stderr
    r1 = json.loads((workdir / "r1.json").read_text())
    lines = (workdir / "r2.json").read_text().splitlines()
    assert len(lines) == 1                                  # stdout: exactly one JSON manifest
    r2 = json.loads(lines[0])
    n = r2["budget"]["pool"]
    assert len(r1["selected"]) == n * 2 // 100 and r2["budget"]["resolved"] == n * 5 // 100
    assert set(r1["labeled"]) < set(r2["labeled"]) and not set(r1["selected"]) & set(r2["selected"])
    assert all(r2["labeled"][s] == 1 for s in r2["selected"])
    assert r2["dataset"] == str(Path(phantom_store).resolve())


def test_selection_pipe_with_random_and_stdin_dataset(phantom_store, workdir):
    r = sh(f"{ALSEG} select --method random --budget 3% --dataset {phantom_store} --seed 4 "
           f"| {ALSEG} select --method random --labeled - --add 5 --seed 4", workdir)
    assert r.returncode == 0, r.stderr
    m = json.loads(r.stdout)
    assert len(m["selected"]) == 5 and len(m["labeled"]) == m["budget"]["resolved"]


def test_list_prints_every_method(workdir):
    from alseg_cli.acquisition.methods import METHODS

    r = sh(f"{ALSEG} select --list", workdir)
    assert r.returncode == 0
    listed = json.loads(r.stdout)["methods"]
    assert [m["name"] for m in listed] == METHODS.names()
    assert all(name in r.stderr for name in METHODS.names())


@pytest.mark.parametrize("args,match", [
    ("--method magic --budget 3% --embeddings emb.zarr", "unknown acquisition method"),
    ("--method coreset --budget 300% --embeddings emb.zarr", "expected a percentage"),
    ("--method coreset --budget 5000 --embeddings emb.zarr", "larger than the pool"),
    ("--method bald --budget 3% --embeddings emb.zarr", "random or coreset"),
    ("--method coreset --budget 3% --embeddings missing.zarr", "missing.zarr"),
    ("--method coreset --budget 3% --embeddings emb.zarr --labeled test_labeled.json",
     "labelled slice phantom"),
    ("--method typiclust --budget 3% --embeddings emb.zarr --typicality cosine", "--typicality"),
])
def test_errors_are_one_line_and_write_nothing(args, match, workdir, phantom_store):
    from alseg_cli.store import DatasetStore

    store = DatasetStore(phantom_store)
    test_id = str(store.slice_ids[store.indices("test")][0])
    (workdir / "test_labeled.json").write_text(json.dumps({"kind": "selection", "labeled": {test_id: 0}}))
    r = sh(f"{ALSEG} select {args} -o out.json < /dev/null", workdir)
    assert r.returncode != 0 and r.stdout == ""
    assert len(r.stderr.strip().splitlines()) == 1 and match in r.stderr, r.stderr
    assert "np.str_" not in r.stderr and not (workdir / "out.json").exists()
