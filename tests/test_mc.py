"""Fast MC dropout equals the plain loop of passes: same masks, same probabilities, same picks."""
import numpy as np
import pytest
import torch

from alseg_cli.segmentation.mc import inference_copy, mc_passes
from alseg_cli.segmentation.nets import build_network
from alseg_cli.segmentation.predict import enable_mc_dropout, iter_predictions, load_model
from alseg_cli.segmentation.train import train_seg
from alseg_cli.store import DatasetStore


def _trained_like(name, size, base):
    """A network with non-trivial batch-norm statistics (a few train-mode forwards)."""
    torch.manual_seed(0)
    net = build_network(name, 1, 4, base).train()
    with torch.no_grad():
        for _ in range(3):
            net(torch.randn(4, 1, *size))
    return net.eval()


def plain_mc(net, x, samples):
    """Today's reference: dropout modules in train mode, one forward per pass."""
    enable_mc_dropout(net)
    with torch.no_grad():
        out = torch.stack([net(x).float().softmax(1) for _ in range(samples)])
    net.eval()
    return out


@pytest.mark.parametrize("name,size,base", [("unet", (32, 40), 4), ("dmpls", (35, 33), 4),
                                             ("unet-resnet50", (64, 64), 4)])
@pytest.mark.parametrize("fast", [False, True])
def test_mc_passes_equal_the_plain_loop(name, size, base, fast):
    net = _trained_like(name, size, base)
    x = torch.randn(3, 1, *size)
    torch.manual_seed(11)
    want = plain_mc(net, x, 4)
    after_plain = torch.rand(1)
    model = inference_copy(net, channels_last=True) if fast else net
    torch.manual_seed(11)
    got = mc_passes(model, x, 4)
    assert torch.rand(1) == after_plain          # the same number of random draws as the loop
    assert got.shape == (4, 3, 4) + size
    torch.testing.assert_close(got, want, rtol=0, atol=1e-5)
    assert not torch.allclose(got[0], got[1])     # passes differ: masks really applied


def test_inference_copy_folds_bn_and_keeps_outputs():
    net = _trained_like("unet", (32, 32), 4)
    fused = inference_copy(net)
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in fused.modules())
    assert any(isinstance(m, torch.nn.BatchNorm2d) for m in net.modules())     # original untouched
    x = torch.randn(2, 1, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(fused(x.contiguous(memory_format=torch.channels_last)), net(x),
                                   rtol=0, atol=1e-5)


@pytest.fixture(scope="module")
def model_dir(phantom_store, tmp_path_factory):
    out = tmp_path_factory.mktemp("mc") / "m"
    train_seg(phantom_store, "all", out, iterations=40, val_every=40, base_channels=4, seed=2, progress=False)
    return out


def test_prediction_api_mc_equals_the_plain_loop_with_its_seeds(model_dir, phantom_store):
    store = DatasetStore(phantom_store)
    idx = store.indices("train")[:10]
    got = list(iter_predictions([model_dir], store, idx, mode="mc", samples=3, seed=5, batch_size=4))
    net = load_model(model_dir, device="cpu")
    for start, (bi, probs) in zip(range(0, idx.size, 4), got):
        torch.manual_seed(5 * 1_000_003 + start)       # the API's per-batch seed, as before
        want = plain_mc(net, torch.from_numpy(store.images(bi)), 3)
        torch.testing.assert_close(probs, want, rtol=0, atol=1e-5)


def test_bald_picks_unchanged(model_dir, phantom_store):
    from alseg_cli.acquisition.scores import bald, reduce_pixels
    from alseg_cli.api import select

    store = DatasetStore(phantom_store)
    first = select(method="random", add=4, dataset=phantom_store, seed=0)
    picked = select(method="bald", add=5, labeled=first, models=[model_dir], seed=3, mc_samples=4,
                    batch_size=8, device="cpu")["selected"]
    net = load_model(model_dir, device="cpu")
    cand = np.setdiff1d(store.indices("train"), store.ids_to_indices(first["selected"]))
    scores = []
    for start in range(0, cand.size, 8):
        torch.manual_seed(3 * 1_000_003 + start)
        probs = plain_mc(net, torch.from_numpy(store.images(cand[start:start + 8])), 4)
        scores += reduce_pixels(bald(probs)).tolist()
    scores = np.asarray(scores)
    assert scores.max() > 1e-4                      # a trained model: scores far above float rounding
    fifth = np.sort(scores)[::-1][4]
    by_id = {str(store.slice_ids[i]): v for i, v in zip(cand, scores)}
    # the same picks as the plain loop's top 5, ties at float rounding aside
    assert len(set(picked)) == 5 and all(by_id[s] >= fifth - 1e-7 for s in picked)
    assert sum(by_id[s] > fifth + 1e-7 for s in picked) == int((scores > fifth + 1e-7).sum())
