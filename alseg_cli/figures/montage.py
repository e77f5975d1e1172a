"""A montage of a selection's slices: what the annotator will be asked to label."""
from __future__ import annotations

import math
from typing import Dict, Optional

from ..errors import AlsegError
from ..store import DatasetStore
from .common import grey, pyplot, save_png


def read_selection(selection) -> Dict:
    """A selection manifest from its file; anything else is a one-line error."""
    import json
    from pathlib import Path

    try:
        manifest = json.loads(Path(selection).read_text())
    except (OSError, ValueError) as exc:
        raise AlsegError(f"{selection}: not a readable selection manifest ({exc.__class__.__name__})") from None
    if manifest.get("kind") != "selection":
        raise AlsegError(f"{selection}: a manifest of kind {manifest.get('kind')!r}, not a selection")
    return manifest


def selection_montage(selection, out, dataset=None, round_: Optional[int] = None, columns: int = 8,
                      limit: int = 64, force: bool = False) -> Dict:
    """The slices a selection manifest added (``round_``: that round's of its labelled set;
    default: its ``selected``), titled by slice id, in selection order."""
    manifest = read_selection(selection)
    if round_ is None:
        ids = list(manifest.get("selected", []))
    else:
        ids = [s for s, r in manifest.get("labeled", {}).items() if int(r) == int(round_)]
    if not ids:
        raise AlsegError(f"{selection}: no slices to show" + (f" for round {round_}" if round_ is not None else ""))
    store = DatasetStore(dataset or manifest.get("dataset"))
    shown = ids[:limit]
    images = store.images(store.ids_to_indices(shown))
    cols = max(1, min(columns, len(shown)))
    rows = math.ceil(len(shown) / cols)
    plt = pyplot()
    fig, axes = plt.subplots(rows, cols, figsize=(1.6 * cols, 1.75 * rows), squeeze=False)
    for k, ax in enumerate(axes.flat):
        ax.axis("off")
        if k < len(shown):
            ax.imshow(grey(images[k]), cmap="gray", vmin=0, vmax=1)
            ax.set_title(shown[k], fontsize=6)
    title = f"{len(ids)} slices to annotate ({manifest.get('method')}, round {manifest.get('round')})"
    fig.suptitle(title + (f"; first {limit} shown" if len(ids) > limit else ""), fontsize=9)
    save_png(fig, out, force)
    return {"png": str(out), "slices": shown, "total": len(ids)}
