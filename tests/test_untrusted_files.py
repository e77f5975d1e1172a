"""Files from other people are data, never code: every checkpoint alseg reads is loaded with
weights_only, and one that carries a pickled object is refused in one line without running it."""
from __future__ import annotations

import pathlib

import pytest
import torch

from alseg_cli.errors import AlsegError

torch.set_num_threads(1)


class Payload:
    """Unpickling this would create the marker file: the code a shared checkpoint could run."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (pathlib.Path.touch, (pathlib.Path(self.marker),))


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    from alseg_cli.acquisition.select import select
    from alseg_cli.prep import write_phantom_store
    from alseg_cli.segmentation.train import train_seg

    d = tmp_path_factory.mktemp("untrusted")
    write_phantom_store(d / "data.zarr", patients=6, size=32, slices=6, seed=1)
    select(method="random", budget="10%", dataset=d / "data.zarr", seed=0, out=d / "sel.json", device="cpu")
    train_seg(d / "data.zarr", str(d / "sel.json"), d / "model", iterations=2, base_channels=4, device="cpu",
              progress=False, val_every=1)
    return d


def _poison(path: pathlib.Path, marker: pathlib.Path) -> None:
    state = torch.load(path, weights_only=True)
    state["extra"] = Payload(marker)
    torch.save(state, path)


def test_prediction_refuses_a_checkpoint_with_code(model, tmp_path):
    from alseg_cli.segmentation.evaluate import evaluate

    marker = tmp_path / "ran"
    _poison(model / "model" / "member0" / "best.pt", marker)
    with pytest.raises(AlsegError, match="beyond tensors"):
        evaluate(model / "data.zarr", model / "model", tmp_path / "eval.json", split="test", device="cpu",
                 progress=False)
    assert not marker.exists() and not (tmp_path / "eval.json").exists()


def test_resume_refuses_a_checkpoint_with_code(model, tmp_path):
    from alseg_cli.segmentation.checkpoint import MemberState

    marker = tmp_path / "ran"
    mdir = model / "model" / "member0"
    _poison(mdir / "last.pt", marker)
    net = torch.nn.Linear(1, 1)
    with pytest.raises(AlsegError, match="beyond tensors"):
        MemberState.resume(mdir, net, torch.optim.SGD(net.parameters(), lr=0.1), torch.Generator(), "cpu")
    assert not marker.exists()


def test_pretrain_resume_refuses_a_checkpoint_with_code(tmp_path):
    from alseg_cli.encoders.pretrain import _prepare_out

    out = tmp_path / "enc"
    out.mkdir()
    torch.save({"epoch": 1, "payload": Payload(tmp_path / "ran")}, out / "checkpoint.pt")
    with pytest.raises(AlsegError, match="beyond tensors"):
        _prepare_out(out, force=False, resume=True)
    assert not (tmp_path / "ran").exists()
