"""`alseg plot`: overlays (figure 3), t-SNE maps (figure 4), montages; the colour rule checked
pixel by pixel, the CLI through real files, bad inputs as one line with nothing written."""
import json

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from alseg_cli.api import select, train_seg
from alseg_cli.cli.main import app
from alseg_cli.figures.common import DISAGREE, class_colour
from alseg_cli.figures.overlay import agreement_rgb
from alseg_cli.store import DatasetStore, write_embeddings

runner = CliRunner()


def test_agreement_colours_pixel_by_pixel():
    image = np.zeros((1, 2, 3), np.float32)
    image[0, 0, 0] = 1.0                                    # the grey range: 0..1
    truth = np.array([[1, 1, 0], [2, 0, 0]])
    pred = np.array([[1, 0, 1], [2, 2, 0]])
    rgb = agreement_rgb(image, pred, truth, [1, 2], alpha=1.0)
    assert tuple(rgb[0, 0]) == pytest.approx(class_colour(1))      # agree on class 1
    assert tuple(rgb[1, 0]) == pytest.approx(class_colour(2))      # agree on class 2
    for r, c in ((0, 1), (0, 2), (1, 1)):                          # missed, false, false
        assert tuple(rgb[r, c]) == pytest.approx(DISAGREE)
    assert tuple(rgb[1, 2]) == pytest.approx((0.0, 0.0, 0.0))       # background, agreed: the image


@pytest.fixture(scope="module")
def trained(phantom_store, tmp_path_factory):
    root = tmp_path_factory.mktemp("fig")
    sel = root / "sel.json"
    select(method="random", budget="10%", dataset=phantom_store, seed=0, out=sel)
    for name in ("a", "b"):
        train_seg(phantom_store, str(sel), root / name, iterations=3, val_every=3, base_channels=4,
                  progress=False, seed=0 if name == "a" else 1)
    ds = DatasetStore(phantom_store)
    for k in (1, 2):
        write_embeddings(root / f"emb{k}.zarr", ds.images().reshape(len(ds), -1)[:, ::16 * k],
                         ds.slice_ids.tolist(), {"dataset": str(phantom_store), "encoder": {"kind": "pixels"}})
    return root


def _png(path):
    with Image.open(path) as im:
        return im.size


def test_overlay_map_and_montage_write_pngs(phantom_store, trained, tmp_path):
    res = runner.invoke(app, ["plot", "overlay", str(phantom_store), "--model", str(trained / "a"),
                              "--model", str(trained / "b"), "--n", "3", "-o", str(tmp_path / "o.png")])
    assert res.exit_code == 0, res.output
    m = json.loads(res.stdout.strip().splitlines()[-1])
    assert m["figure"] == "overlay" and len(m["slices"]) == 3 and min(_png(tmp_path / "o.png")) > 100
    ds = DatasetStore(phantom_store)
    assert {ds.split[ds.index_of[s]] for s in m["slices"]} == {"test"}
    assert len({s.split(":")[0] for s in m["slices"]}) == 3            # one per volume
    res = runner.invoke(app, ["plot", "map", str(trained / "emb1.zarr"), str(trained / "emb2.zarr"),
                              "--selection", str(trained / "sel.json"), "--clusters", "4", "-o", str(tmp_path / "m.png")])
    assert res.exit_code == 0, res.output
    maps = json.loads(res.stdout.strip().splitlines()[-1])["maps"]
    labelled = len(json.loads((trained / "sel.json").read_text())["labeled"])
    assert [x["selected"] for x in maps] == [labelled, labelled] and _png(tmp_path / "m.png")[0] > 400
    res = runner.invoke(app, ["plot", "montage", str(trained / "sel.json"), "-o", str(tmp_path / "s.png"),
                              "--limit", "5"])
    assert res.exit_code == 0, res.output
    mon = json.loads(res.stdout.strip().splitlines()[-1])
    assert mon["slices"] == json.loads((trained / "sel.json").read_text())["selected"][:5]


def test_bad_figure_inputs_are_one_line_and_write_nothing(phantom_store, trained, tmp_path):
    out = tmp_path / "x.png"
    for args, msg in (
            (["overlay", str(phantom_store), "--run", str(trained), "-o", str(out)], "--run needs --methods"),
            (["overlay", str(phantom_store), "-o", str(out)], "no models to draw"),
            (["map", str(trained / "emb1.zarr"), "--colour", "hue", "-o", str(out)], "--colour 'hue'"),
            (["montage", str(trained / "a" / "manifest.json"), "-o", str(out)], "not a selection"),
            (["overlay", str(phantom_store), "--run", str(trained), "--methods", "random", "--budgets", "5",
              "-o", str(out)], "no finished model")):
        res = runner.invoke(app, ["plot", *args])
        assert res.exit_code != 0 and msg in res.output, (args, res.output)
        assert not out.exists()
    (tmp_path / "y.png").write_bytes(b"old")
    res = runner.invoke(app, ["plot", "montage", str(trained / "sel.json"), "-o", str(tmp_path / "y.png")])
    assert res.exit_code != 0 and "exists" in res.output and (tmp_path / "y.png").read_bytes() == b"old"
