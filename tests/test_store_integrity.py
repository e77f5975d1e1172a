"""Stores cannot lose data silently: missing or truncated chunks, damaged metadata, verify."""
from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from alseg_cli.errors import AlsegError
from alseg_cli.store import DatasetStore, EmbeddingsStore, verify_store, write_embeddings

EXE = str(Path(sys.executable).with_name("alseg"))


@pytest.fixture
def store(phantom_store, tmp_path):
    copy = tmp_path / "data.zarr"
    shutil.copytree(phantom_store, copy)
    return copy


@pytest.fixture
def emb(store, tmp_path):
    ds = DatasetStore(store)
    vec = np.random.default_rng(0).normal(size=(len(ds), 40)).astype(np.float32)
    path = tmp_path / "emb.zarr"
    write_embeddings(path, vec, ds.slice_ids.tolist(), {"dataset": str(store), "encoder": "test"})
    return path


def shards(store: Path, array: str):
    return sorted(p for p in (store / array / "c").rglob("*") if p.is_file())


def run(*args, cwd=None):
    return subprocess.run([EXE, *map(str, args)], capture_output=True, text=True, cwd=cwd)


def one_line_error(result, *needles):
    assert result.returncode != 0
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    for needle in needles:
        assert needle in lines[0], lines[0]
    assert "Traceback" not in result.stderr and "np.str_" not in result.stderr


def test_intact_stores_verify_and_strings_are_variable_length(store, emb):
    assert verify_store(store)["ok"] and verify_store(emb)["ok"]
    for path, name in ((store, "slice_id"), (store, "patient"), (emb, "slice_id")):
        meta = json.loads((path / name / "zarr.json").read_text())
        assert meta["data_type"] == "string"       # zarr v3 variable-length UTF-8, not fixed UTF-32


def test_missing_image_shard_stops_embed_and_train(store, tmp_path):
    victim = shards(store, "images")[1]
    victim.unlink()
    with pytest.raises(AlsegError, match=r"array 'images' lacks chunk file c/1/0/0/0.*re-run alseg prep"):
        DatasetStore(store)
    one_line_error(run("embed", store, "--encoder", "pixels", "-o", tmp_path / "e.zarr"), "images", "damaged")
    one_line_error(run("train-seg", store, "--labels", "all", "-o", tmp_path / "m", "--iterations", "2"),
                   "images", "damaged")
    assert not (tmp_path / "e.zarr").exists() and not (tmp_path / "m").exists()


def test_truncated_shard_and_missing_vectors_are_named(store, emb, tmp_path):
    shard = shards(store, "masks")[0]
    shard.write_bytes(shard.read_bytes()[:-10])
    with pytest.raises(AlsegError, match=r"'masks' chunk file c/0/0/0 has \d+ bytes, \d+ were written"):
        DatasetStore(store)
    for f in shards(emb, "vectors"):
        f.unlink()
    with pytest.raises(AlsegError, match=r"emb.zarr: array 'vectors' lacks chunk file .*re-run alseg embed"):
        EmbeddingsStore(emb)


def test_select_refuses_embeddings_with_a_missing_chunk(store, emb, tmp_path):
    shards(emb, "vectors")[0].unlink()
    r = run("select", "--method", "coreset", "-e", emb, "--budget", "5", "-o", tmp_path / "s.json")
    one_line_error(r, "emb.zarr", "vectors", "damaged")
    assert not (tmp_path / "s.json").exists()


def test_damaged_metadata_is_one_named_line(store, emb):
    root_meta = emb / "zarr.json"
    root_meta.write_text(root_meta.read_text()[:50])
    with pytest.raises(AlsegError, match=r"emb.zarr: its zarr.json is unreadable.*re-run alseg embed"):
        EmbeddingsStore(emb)
    arr_meta = store / "images" / "zarr.json"
    arr_meta.write_text(arr_meta.read_text()[:30])
    with pytest.raises(AlsegError, match=r"array 'images' metadata is unreadable"):
        DatasetStore(store).images([0])


def test_verify_recomputes_the_content_hash(store):
    shard = shards(store, "images")[0]
    data = bytearray(shard.read_bytes())
    data[-20] ^= 0xFF                          # same size: only the hash can tell
    shard.write_bytes(bytes(data))
    DatasetStore(store)                        # the cheap open-time check passes
    r = run("verify", store)
    one_line_error(r, "content hash", "differs", "re-run alseg prep")
    ok = run("verify", store.parent / "nope.zarr")
    one_line_error(ok, "no such store")


def test_unreadable_chunk_is_one_line_even_without_a_listing(store, tmp_path):
    (store / "chunks.json").unlink()           # a store from before the listing: reads must still fail well
    shard = shards(store, "images")[0]
    shard.write_bytes(shard.read_bytes()[:-30])   # the shard index checksum no longer matches
    r = run("embed", store, "--encoder", "pixels", "-o", tmp_path / "e.zarr")
    one_line_error(r, "array 'images' cannot be read", "re-run alseg prep")
    assert not (tmp_path / "e.zarr").exists()
