"""`alseg export` on an unlabelled pool prepped from files: the task list locates every slice in
its source file (axis, 0/1-based index, orientation, world position), names files safely, and
writes label templates in each image's geometry."""
from __future__ import annotations

import csv
import json
import os
import subprocess
import sys

import nibabel as nib
import numpy as np
import pytest

from alseg_cli.errors import AlsegError


@pytest.fixture(scope="module")
def pool(tmp_path_factory):
    from alseg_cli.data.phantoms import make_phantoms
    from alseg_cli.prep import run_prep

    d = tmp_path_factory.mktemp("export")
    (d / "raw").mkdir()
    affine = np.array([[-1.5, 0, 0, 10.0], [0, 1.5, 0, -5.0], [0, 0, 10.0, 2.0], [0, 0, 0, 1]])
    for v in list(make_phantoms(patients=3, size=32, slices=6, seed=2)):
        nib.save(nib.Nifti1Image(np.transpose(v.image[:, 0], (1, 2, 0)).astype(np.float32), affine),
                 str(d / "raw" / f"{v.name}.nii.gz"))
    cwd = os.getcwd()
    os.chdir(d)                                     # a relative --images path, as users type it
    try:
        run_prep(None, "pool.zarr", size=32, split="train=1", images="raw", classes="background,RV,MYO,LV")
    finally:
        os.chdir(cwd)
    return d, affine


def test_export_locates_every_slice_in_its_source(pool, tmp_path):
    from alseg_cli.acquisition.select import select
    from alseg_cli.campaign.export import export_selection
    from alseg_cli.store import DatasetStore

    d, affine = pool
    store = DatasetStore(d / "pool.zarr")
    select(method="random", budget="20%", dataset=d / "pool.zarr", seed=0, out=tmp_path / "sel.json", device="cpu")
    m = export_selection(tmp_path / "sel.json", tmp_path / "out")
    rows = list(csv.DictReader(open(tmp_path / "out" / "tasks.csv")))
    assert len(rows) == m["slices"] == len(json.loads((tmp_path / "sel.json").read_text())["selected"])
    for row in rows:
        src = nib.load(row["source"])                 # absolute: found from any folder
        assert os.path.isabs(row["source"]) and row["source_exists"] == "True"
        axis, k = int(row["axis"]), int(row["index0"])
        assert axis == 2 and int(row["index1"]) == k + 1 and row["orientation"] == "LAS"
        # the listed slice of the file is the store's slice (up to the store's normalisation)
        raw = np.take(np.asarray(src.dataobj), k, axis=axis)
        i = store.index_of[row["slice_id"]]
        a, b = raw.ravel(), store.images([i])[0, 0].ravel()
        assert np.corrcoef(a, b)[0, 1] > 0.99
        world = affine @ np.array([15.5, 15.5, k, 1.0])
        assert [float(row[f"world_{c}"]) for c in "xyz"] == pytest.approx(world[:3].tolist(), abs=1e-3)
        assert (tmp_path / "out" / row["png"]).is_file()
        tpl = nib.load(str(tmp_path / "out" / row["label_file"]))
        assert tpl.shape == src.shape and np.allclose(tpl.affine, src.affine) and not np.asarray(tpl.dataobj).any()
    assert (tmp_path / "out" / "montage.png").is_file() and m["classes"]["3"] == "LV"
    # Label Studio: one task per slice whose image URL names its native PNG; the config's brush
    # labels are the declared foreground classes
    import xml.etree.ElementTree as ET
    tasks = json.loads((tmp_path / "out" / "label_studio.json").read_text())
    assert [t["data"]["slice_id"] for t in tasks] == [r["slice_id"] for r in rows]
    for t, row in zip(tasks, rows):
        assert t["data"]["image"] == "/data/local-files/?d=" + row["image_png"]
        assert (tmp_path / "out" / row["image_png"]).is_file()
    config = ET.parse(tmp_path / "out" / "label_studio.xml").getroot()
    assert config.find("Image").get("value") == "$image"
    assert [e.get("value") for e in config.iter("Label")] == ["RV", "MYO", "LV"]
    with pytest.raises(AlsegError, match="already exists"):
        export_selection(tmp_path / "sel.json", tmp_path / "out")


def test_export_names_stay_inside_and_errors_are_one_line(pool, tmp_path):
    from alseg_cli.campaign.export import safe_name

    assert safe_name("../../etc/passwd") == "_.._etc_passwd" and safe_name("/abs/x") == "_abs_x"
    assert safe_name("..") == "volume" and "/" not in safe_name("a/b\\c")
    d, _ = pool
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"kind": "model"}))
    r = subprocess.run([sys.executable, "-m", "alseg_cli", "export", str(bad), "-o", str(tmp_path / "o")],
                       capture_output=True, text=True)
    assert r.returncode != 0 and "not a selection" in r.stderr and r.stderr.strip().count("\n") == 0
    assert not (tmp_path / "o").exists()
