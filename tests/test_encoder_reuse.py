"""Reusing a finished encoder across runs (`loop --reuse-encoders`): found only for the same
dataset content, settings, seed and epochs; linked in with its manifest naming the source;
embeddings through the link equal the source's; a loop trains only what it cannot find."""
import json
import os
import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch

from alseg_cli.encoders.embed import embed
from alseg_cli.encoders.pretrain import pretrain
from alseg_cli.encoders.reuse import find_trained, link_encoder
from alseg_cli.errors import AlsegError
from alseg_cli.experiment.loop import run_loop
from alseg_cli.prep import write_phantom_store
from alseg_cli.store import EmbeddingsStore

from test_loop import FakeBackend

torch.set_num_threads(1)
TINY = dict(split="val", size=16)


@pytest.fixture(scope="module")
def trained(phantom_store, tmp_path_factory):
    """A run directory holding one finished 1-epoch encoder (seed 3) and a partial one."""
    run = tmp_path_factory.mktemp("run")
    pretrain(phantom_store, run / "encoders" / "seed3", epochs=1, seed=3, device="cpu", progress=False, **TINY)
    (run / "encoders" / "seed5").mkdir()              # killed mid-training: no manifest
    (run / "encoders" / "seed5" / "checkpoint.pt").write_bytes(b"")
    return run


def test_found_only_with_the_same_data_settings_seed_and_epochs(trained, phantom_store, tmp_path):
    assert find_trained([trained], phantom_store, epochs=1, seed=3, **TINY) == trained / "encoders" / "seed3"
    # the same settings spelled otherwise: explicit defaults, groups as a string, weights as ints
    assert find_trained([trained / "encoders"], phantom_store, epochs=1, seed=3, groups="patient,volume",
                        weights=[1, 0.05, 0.35, 0], tau=0.5, **TINY) is not None
    for other in (dict(seed=4), dict(seed=5), dict(seed=3, groups="slice"), dict(seed=3, weights=[1, 0, 0.35, 0]),
                  dict(seed=3, tau=0.1), dict(seed=3, loss="sp-supcon")):
        assert find_trained([trained], phantom_store, epochs=1, **TINY, **other) is None, other
    assert find_trained([trained], phantom_store, epochs=2, seed=3, **TINY) is None
    assert find_trained([trained], phantom_store, epochs=1, seed=3, split="val", size=32) is None
    other_data = tmp_path / "other.zarr"
    write_phantom_store(other_data, patients=12, size=64, slices=8, seed=1)
    assert find_trained([trained], other_data, epochs=1, seed=3, **TINY) is None
    assert find_trained([tmp_path / "absent"], phantom_store, epochs=1, seed=3, **TINY) is None


def test_linked_encoder_embeds_as_its_source(trained, phantom_store, tmp_path):
    source = trained / "encoders" / "seed3"
    out = tmp_path / "b" / "encoders" / "seed3"
    out.mkdir(parents=True)
    (out / "checkpoint.pt").write_bytes(b"partial")    # a partial training of its own is replaced
    m = link_encoder(source, out)
    assert sorted(p.name for p in out.iterdir()) == ["config.json", "encoder.pt", "loss.json", "loss.png",
                                                      "manifest.json"]
    saved = json.loads((out / "manifest.json").read_text())
    assert saved == json.loads(json.dumps(m)) and saved["reused_from"] == str(source.resolve())
    assert saved["outputs"]["weights"] == str((out / "encoder.pt").resolve())
    assert os.path.samefile(out / "encoder.pt", source / "encoder.pt")      # a hard link, not a copy
    assert "reused_from" not in json.loads((source / "manifest.json").read_text())
    for enc, name in ((source, "a.zarr"), (out, "b.zarr")):
        embed(phantom_store, tmp_path / name, encoder=str(enc), split="val", device="cpu", progress=False)
    np.testing.assert_array_equal(EmbeddingsStore(tmp_path / "a.zarr").vectors(),
                                  EmbeddingsStore(tmp_path / "b.zarr").vectors())


def test_loop_trains_only_the_encoders_it_cannot_find(trained, phantom_store, tmp_path, capsys):
    be = FakeBackend()
    opts = dict(dataset=str(phantom_store), methods="gcl-coreset", budgets="2,5", iterations=7, device="cpu",
                pretrain=True, pretrain_epochs=1, pretrain_options=dict(TINY))
    run = tmp_path / "run"
    run_loop(run, backend=be, seeds="3,4", reuse_encoders=str(trained), progress=True, **opts)
    assert "(1 epochs; linked instead where --reuse-encoders has one)" in capsys.readouterr().err
    pretrained = [c[1] for c in be.calls if c[0] == "pretrain"]
    assert pretrained == [str(run / "encoders" / "seed4")]
    reused = json.loads((run / "encoders" / "seed3" / "manifest.json").read_text())
    assert reused["reused_from"] == str((trained / "encoders" / "seed3").resolve())
    marker = json.loads((run / "encoders" / ".done" / "seed3.json").read_text())
    assert marker["reused_from"] == reused["reused_from"]
    assert "reused_from" not in json.loads((run / "encoders" / ".done" / "seed4.json").read_text())
    # the setting may change on resume (it links only equal encoders), a missing dir may not
    assert run_loop(run, backend=FakeBackend(), seeds="3,4", **opts)["steps_run"] == 0
    with pytest.raises(AlsegError, match="--reuse-encoders .*absent: no such directory"):
        run_loop(run, backend=FakeBackend(), seeds="3,4", reuse_encoders=str(tmp_path / "absent"), **opts)


def test_existing_runs_lists_the_directories_there_are(tmp_path):
    """examples/encoders.sh: the scripts' --reuse-encoders list holds only existing runs."""
    script = Path(__file__).resolve().parents[1] / "examples" / "encoders.sh"
    (tmp_path / "a").mkdir()
    (tmp_path / "c").mkdir()

    def listed(*names):
        sh = f'source "{script}"; existing_runs ' + " ".join(f'"{tmp_path / n}"' for n in names)
        done = subprocess.run(["bash", "-c", sh], capture_output=True, text=True, check=True)
        return done.stdout.strip()

    assert listed("a", "b", "c") == f"{tmp_path / 'a'},{tmp_path / 'c'}"
    assert listed("b") == ""
