"""`alseg export`: hand a selection's slices to an annotator, in files that map back without guessing.

OUT/tasks.csv and OUT/tasks.json name, for every picked slice: its id, volume and patient, the
source file (absolute), the array axis of the slice in that file and its index there (0-based
as numpy and nibabel count, and 1-based as ITK-SNAP and 3D Slicer's slice sliders show), the
anatomical orientation of the file's axes (from the affine), the world position of the
slice's centre (mm), the round and the method. Beside it: one PNG per slice
(``slices/<volume>_axis<k>-<index>.png``, the working-size image the model sees, titled), the
slice itself at native size as an 8-bit PNG for 2D tools such as CVAT or Label Studio
(``images/``; a label PNG of the same name in ``labels_png/``, class index per pixel or the
colours of ``labelmap.txt``, comes back through import-labels), a montage of the round
(``montage.png``), and a template label volume per volume in its image's geometry
(``labels/<volume>.nii.gz``: zeros with the source's affine), to be painted on the listed
slices and saved under the same name. For Label Studio: ``label_studio.json`` (one task per
slice, ``data.image`` the URL of its ``images/`` PNG) and ``label_studio.xml`` (a BrushLabels
labelling config with the declared classes in labelmap.txt's colours).
"""
from __future__ import annotations

import csv
import json
import re
from html import escape
from pathlib import Path
from typing import Dict, List, Optional

import numpy as np

from ..atomic import atomic_path, check_writable
from ..errors import AlsegError
from ..figures.common import LABEL_PALETTE as PALETTE
from ..manifest import make_manifest, save_manifest
from ..store import DatasetStore

COLUMNS = ("slice_id", "volume", "patient", "source", "source_exists", "axis", "index0", "index1",
           "axis_direction", "orientation", "world_x", "world_y", "world_z", "round", "method", "png",
           "image_png", "label_png", "label_file")


def slice_png_name(volume: str, axis: int, index: int) -> str:
    """The file name of one slice's PNG, the same for the image given and the label returned."""
    return f"{safe_name(volume)}_axis{axis}-{index:03d}.png"


def parse_slice_png(name: str):
    """(volume file name, axis, index) from a slice PNG's name, or None."""
    m = re.match(r"^(.*)_axis(\d)-(\d+)\.png$", name)
    return (m.group(1), int(m.group(2)), int(m.group(3))) if m else None


def safe_name(text: str) -> str:
    """A file name from a volume name: path separators and other odd characters become '_', and
    it never starts with a dot, so no name can point outside the export folder."""
    name = re.sub(r"[^A-Za-z0-9._-]", "_", str(text)).lstrip(".")
    return name or "volume"


# Label Studio serves local files under this URL, relative to LOCAL_FILES_DOCUMENT_ROOT
LABEL_STUDIO_URL = "/data/local-files/?d=images/"


def export_selection(selection, out, dataset=None, all_labelled: bool = False, force: bool = False,
                     label_studio_url: Optional[str] = None) -> Dict:
    """Write the annotation tasks of a selection's new slices (``all_labelled``: of every slice in
    its labelled set) into OUT; returns the export manifest (OUT/manifest.json).
    ``label_studio_url``: the prefix of each task's image URL (None: LABEL_STUDIO_URL, which
    serves OUT as Label Studio's LOCAL_FILES_DOCUMENT_ROOT)."""
    import nibabel as nib

    from ..figures.common import grey, pyplot, save_png
    from ..figures.montage import read_selection, selection_montage

    manifest = read_selection(selection)
    ids: List[str] = list(manifest.get("labeled", {})) if all_labelled else list(manifest.get("selected", []))
    if not ids:
        raise AlsegError(f"{selection}: selects no slices; nothing to export")
    store = DatasetStore(dataset or manifest.get("dataset"))
    check_writable(out, force)
    info = {v["name"]: v for v in store.volume_info}
    idx = store.ids_to_indices(ids)
    images = store.images(idx)
    rounds = manifest.get("labeled", {})
    rows = []
    with atomic_path(out, force=force) as tmp:
        for folder in ("slices", "labels", "images", "labels_png"):
            (tmp / folder).mkdir(parents=True)
        sources: Dict[str, np.ndarray] = {}
        plt = pyplot()
        for k, (sid, i) in enumerate(zip(ids, idx)):
            vi = info[str(store.volumes[i])]
            axis = int(vi.get("slice_axis", 2))
            index = int(store.z[i])
            affine = np.asarray(vi["affine"], dtype=np.float64) if vi.get("affine") else np.eye(4)
            shape = [int(s) for s in (vi.get("source_shape") or _source_shape(vi, axis))]
            centre = np.array([(s - 1) / 2 for s in shape] + [1.0])
            centre[axis] = index
            world = affine @ centre
            codes = nib.aff2axcodes(affine)
            vname = safe_name(vi["name"])
            png = f"slices/{vname}_axis{axis}-{index:03d}.png"
            fig, ax = plt.subplots(figsize=(3, 3))
            ax.imshow(grey(images[k]), cmap="gray", vmin=0, vmax=1)
            ax.set_title(f"{sid}  (axis {axis}, index {index} / {index + 1})", fontsize=7)
            ax.axis("off")
            save_png(fig, tmp / png, True)
            source = str(vi.get("source", ""))
            image_png = f"images/{slice_png_name(vi['name'], axis, index)}"
            if _write_native_png(source, axis, index, tmp / image_png, sources) is None:
                image_png = ""
            rows.append({"slice_id": sid, "volume": vi["name"], "patient": vi.get("patient"), "source": source,
                         "source_exists": Path(source).exists() or Path(source.rsplit(":", 1)[0]).exists(),
                         "axis": axis, "index0": index, "index1": index + 1,
                         "axis_direction": codes[axis], "orientation": "".join(codes),
                         "world_x": round(float(world[0]), 3), "world_y": round(float(world[1]), 3),
                         "world_z": round(float(world[2]), 3), "round": rounds.get(sid, manifest.get("round")),
                         "method": manifest.get("method"), "png": png, "image_png": image_png,
                         "label_png": f"labels_png/{slice_png_name(vi['name'], axis, index)}" if image_png else "",
                         "label_file": f"labels/{vname}.nii.gz"})
        for vname, vi in {safe_name(r["volume"]): info[r["volume"]] for r in rows}.items():
            axis = int(vi.get("slice_axis", 2))
            shape = [int(s) for s in (vi.get("source_shape") or _source_shape(vi, axis))]
            affine = np.asarray(vi["affine"], dtype=np.float64) if vi.get("affine") else np.eye(4)
            nib.save(nib.Nifti1Image(np.zeros(shape, np.uint8), affine), str(tmp / "labels" / f"{vname}.nii.gz"))
        if not all_labelled:
            selection_montage(selection, tmp / "montage.png", dataset=store.path, force=True)
        names = store.attrs.get("classes") or {}
        labels = {c: names.get(str(c), f"class{c}") for c in range(store.num_classes)}
        (tmp / "labelmap.txt").write_text("# label:color_rgb:parts:actions\n" + "".join(
            f"{name}:{','.join(map(str, PALETTE[c % len(PALETTE)]))}::\n" for c, name in labels.items()),
            encoding="utf-8")
        _write_label_studio(tmp, rows, labels, LABEL_STUDIO_URL if label_studio_url is None else label_studio_url)
        with open(tmp / "tasks.csv", "w", newline="", encoding="utf-8") as f:
            writer = csv.DictWriter(f, fieldnames=COLUMNS)
            writer.writeheader()
            writer.writerows(rows)
        (tmp / "tasks.json").write_text(json.dumps(rows, indent=1))
        result = make_manifest("export", {"all_labelled": all_labelled},
                               inputs={"selection": selection, "dataset": store.path}, outputs={"export": out},
                               slices=len(rows), volumes=len({r["volume"] for r in rows}),
                               classes=store.attrs.get("classes"), tasks=rows)
        save_manifest(tmp / "manifest.json", result)
    return result


def _write_label_studio(tmp: Path, rows: List[Dict], labels: Dict[int, str], url: str) -> None:
    """Label Studio's tasks JSON (one task per slice that has a native PNG; ``data`` carries the
    slice id and the label PNG name it returns under) and a brush-labelling config."""
    tasks = [{"id": k + 1, "data": {"image": url + Path(r["image_png"]).name, "slice_id": r["slice_id"],
                                    "volume": r["volume"], "index0": r["index0"], "label_png": r["label_png"]}}
             for k, r in enumerate(r for r in rows if r["image_png"])]
    (tmp / "label_studio.json").write_text(json.dumps(tasks, indent=1))
    entries = "".join(f'    <Label value="{escape(name, quote=True)}" '
                      f'background="#{"%02x%02x%02x" % PALETTE[c % len(PALETTE)]}"/>\n'
                      for c, name in labels.items() if c > 0)
    (tmp / "label_studio.xml").write_text(
        '<View>\n  <Image name="image" value="$image" zoom="true"/>\n'
        f'  <BrushLabels name="label" toName="image">\n{entries}  </BrushLabels>\n</View>\n', encoding="utf-8")


def _write_native_png(source: str, axis: int, index: int, path: Path, cache: Dict):
    """The slice at native size, 1st-99th percentile of its volume scaled to 0..255 (8-bit grey);
    None when the source file is not readable from here (the task list still names it)."""
    from PIL import Image

    from ..io.readers import Ref, read, reader_for

    if source not in cache:
        file = Path(source)
        if not file.is_file() or reader_for(file) is None:
            cache[source] = None
        else:
            raw = read(Ref(reader_for(file), str(file))).data.astype(np.float32)
            raw = raw[..., 0] if raw.ndim == 4 else raw
            lo, hi = np.percentile(raw, [1, 99])
            cache[source] = np.clip((raw - lo) / max(hi - lo, 1e-6) * 255, 0, 255).astype(np.uint8)
    volume = cache[source]
    if volume is None:
        return None
    Image.fromarray(np.ascontiguousarray(np.take(volume, index, axis=axis))).save(path)
    return path


def _source_shape(vi: Dict, axis: int) -> List[int]:
    """The source array's shape from the store's (Z, H, W) native shape and the slice axis."""
    z, h, w = vi["shape"]
    rest = [h, w]
    return [z if a == axis else rest.pop(0) for a in range(3)]
