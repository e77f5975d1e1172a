"""The 3D U-Net of figure 2: anisotropic pooling, any depth, whole-volume training on a
volume selection, prediction and native evaluation through the same API as the 2D nets."""
import json

import numpy as np
import pytest
import torch

from alseg_cli.api import evaluate, select, train_seg
from alseg_cli.errors import AlsegError
from alseg_cli.segmentation.losses import soft_dice_loss
from alseg_cli.segmentation.nets import UNet3D, inplane_levels
from alseg_cli.segmentation.predict import iter_predictions
from alseg_cli.store import DatasetStore


def test_pooling_plan_and_any_depth():
    assert inplane_levels(10.0, 1.5) == 2 and inplane_levels(1.0, 1.0) == 0 and inplane_levels(40.0, 0.5) == 4
    net = UNet3D(1, 3, base_channels=2, inplane_levels=2).eval()
    for depth in (1, 5, 8):
        assert net(torch.zeros(1, 1, depth, 20, 18)).shape == (1, 3, depth, 20, 18)


def test_soft_dice_is_the_same_for_a_volume_and_its_slices_stacked():
    torch.manual_seed(0)
    probs = torch.rand(2, 3, 4, 5, 6).softmax(1)
    target = torch.randint(0, 3, (2, 4, 5, 6))
    flat = soft_dice_loss(probs.permute(0, 2, 1, 3, 4).reshape(8, 3, 5, 6), target.reshape(8, 5, 6))
    assert float(soft_dice_loss(probs, target)) == pytest.approx(float(flat), rel=1e-6)


def test_unet3d_trains_on_whole_volumes_and_evaluates_natively(phantom_store, tmp_path):
    sel = tmp_path / "vol.json"
    select(method="random", budget="30%", unit="volume", dataset=phantom_store, seed=0, out=sel)
    m = train_seg(phantom_store, str(sel), tmp_path / "m3", model="unet3d", iterations=4, val_every=2,
                  base_channels=2, progress=False)
    assert m["model"] == "unet3d" and m["members"][0]["volumes_per_batch"] >= 1
    store = DatasetStore(phantom_store)
    vi = store.volume_info[0]           # phantoms: thick slices, so in-plane pooling comes first
    want = inplane_levels(vi["spacing"][0], vi["spacing"][1] * vi["shape"][1] / store.size)
    assert want > 0
    assert json.loads((tmp_path / "m3" / "config.json").read_text())["network_options"] == {"inplane_levels": want}
    vol = store.volumes[store.indices("test")][0]
    order = store.volume_slices(vol)
    # a slice's prediction comes from its whole volume: asked alone or with the others, the same
    whole = np.concatenate([p[0].numpy() for _, p in iter_predictions([tmp_path / "m3"], store, order, device="cpu")])
    one = next(iter_predictions([tmp_path / "m3"], store, order[2:3], device="cpu"))[1][0].numpy()
    np.testing.assert_allclose(one[0], whole[2], atol=1e-6)
    res = evaluate(phantom_store, tmp_path / "m3", split="test", progress=False, hd95=False)
    assert len(res["per_volume"]) == len(set(store.volumes[store.indices("test")].tolist()))
    ids = json.loads(sel.read_text())["selected"][:1]
    with pytest.raises(AlsegError, match="only partly there.*--unit volume"):
        train_seg(phantom_store, ids, tmp_path / "bad", model="unet3d", iterations=1, progress=False)
    with pytest.raises(AlsegError, match="trains on full masks"):
        train_seg(phantom_store, str(sel), tmp_path / "bad2", model="unet3d", supervision="scribble", iterations=1,
                  progress=False)
    with pytest.raises(AlsegError, match="MC dropout"):
        list(iter_predictions([tmp_path / "m3"], store, order, mode="mc", samples=2, device="cpu"))
    # a warm start from a 3D model: its pooling plan and weights carry over
    warm = train_seg(phantom_store, str(sel), tmp_path / "warm", model="unet3d", iterations=1, base_channels=2,
                     init=tmp_path / "m3", progress=False)
    assert warm["args"]["init"] == str(tmp_path / "m3")
    assert json.loads((tmp_path / "warm" / "config.json").read_text())["network_options"] == {"inplane_levels": want}


def test_a_killed_3d_member_resumes_where_it_stopped(phantom_store, tmp_path):
    from alseg_cli.progress import as_reporter
    from alseg_cli.segmentation.train import _volume
    from alseg_cli.segmentation.train3d import train_member_3d

    store = DatasetStore(phantom_store)
    vols = [_volume(store, v) for v in sorted(set(store.volumes[store.indices("train")].tolist()))[:3]]
    val = [_volume(store, v) for v in sorted(set(store.volumes[store.indices("val")].tolist()))]
    config = {"model": "unet3d", "in_channels": 1, "num_classes": store.num_classes, "base_channels": 2,
              "network_options": {"inplane_levels": 1}}
    recipe = {"optimizer": "adam", "class_weights": "none", "warmup": 0, "clip_grad": 0.0}

    class Killed(Exception):
        pass

    class KillAtFirstValidation:            # a reporter that dies right after the first last.pt
        def __init__(self):
            self.quiet = as_reporter(False)

        def __getattr__(self, name):
            return getattr(self.quiet, name)

        def note(self, text):
            raise Killed(text)

    def run(mdir, reporter):
        return train_member_3d(mdir, config, recipe, vols, None, val, 0, 7, 4, 6, 1e-3, 2,
                               torch.device("cpu"), None, reporter, "m")
    straight = run(tmp_path / "straight", as_reporter(False))
    with pytest.raises(Killed):
        run(tmp_path / "killed", KillAtFirstValidation())
    assert torch.load(tmp_path / "killed" / "last.pt", weights_only=False)["iteration"] == 2
    resumed = run(tmp_path / "killed", as_reporter(False))
    assert resumed["best_val_dice"] == pytest.approx(straight["best_val_dice"])
    a = torch.load(tmp_path / "straight" / "last.pt", weights_only=False)["state_dict"]
    b = torch.load(tmp_path / "killed" / "last.pt", weights_only=False)["state_dict"]
    for k in a:
        torch.testing.assert_close(a[k], b[k])


def test_cpu_3x3x3_convolution_equals_conv3d_with_its_gradients():
    """Conv3x3x3's 2D form against F.conv3d with the same weights: outputs and the gradients of
    input, weight and bias, at depths 1-5 and sizes that are not square."""
    import torch
    import torch.nn.functional as F

    from alseg_cli.segmentation.nets import Conv3x3x3

    torch.manual_seed(0)
    for d, h, w in [(1, 6, 5), (2, 8, 8), (5, 7, 9)]:
        conv = Conv3x3x3(3, 4)
        x = torch.randn(2, 3, d, h, w, requires_grad=True)
        g = torch.randn(2, 4, d, h, w)
        got = conv(x)
        gx, gw, gb = torch.autograd.grad(got, (x, conv.weight, conv.bias), g)
        want = F.conv3d(x, conv.weight, conv.bias, padding=1)
        wx, ww, wb = torch.autograd.grad(want, (x, conv.weight, conv.bias), g)
        for a, b in [(got, want), (gx, wx), (gw, ww), (gb, wb)]:
            torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-4)   # sums of ~10^3 products
    assert set(conv.state_dict()) == {"weight", "bias"}      # checkpoints of nn.Conv3d load as before
