"""`alseg embed`: one vector per slice from an encoder SPEC, or imported from a file.

SPEC kinds (a registry, so each is listed in --help and tested):
  alseg        an ENCODER_DIR written by `alseg pretrain` (512-d pooled feature, before the head)
  torchvision  resnet18:PATH.pth or resnet50:PATH.pth, a local state dict (never downloaded)
  torchscript  a TorchScript file (torch.jit.save); it must return (N, D) (--flatten: any shape)
  export       a torch.export program (.pt2, torch.export.save; batch dimension dynamic), (N, D)
  pixels       the image area-downsampled to --pixels-size^2 (x C), flattened: plain Coreset
  external     --from FILE: vectors computed elsewhere (see external.py)
"""
from __future__ import annotations

import json
import time
import warnings
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Callable, Optional, Tuple

import numpy as np
import torch
import torch.nn.functional as F

from ..device import like_weights, resolve_device
from ..errors import AlsegError
from ..manifest import make_manifest
from ..progress import as_reporter
from ..registry import Registry
from ..store import DatasetStore, write_embeddings
from .models import ARCHS, GCLEncoder, inference_trunk, load_torchvision

SPEC_KINDS = Registry("encoder kind")
# A loader returns (model or None, input size or None, encoder description dict).
Loader = Callable[..., Tuple[Optional[torch.nn.Module], Optional[int], dict]]


@SPEC_KINDS.register("alseg", "an ENCODER_DIR from `alseg pretrain` (512-d features before the head)")
def load_alseg(spec: str, channels: int, **_):
    path = Path(spec)
    cfg_path, weights = path / "config.json", path / "encoder.pt"
    if not weights.exists() or not cfg_path.exists():
        hint = " (training is unfinished: rerun `alseg pretrain ... --resume`)" if (path / "checkpoint.pt").exists() else ""
        raise AlsegError(f"{path}: not a finished alseg encoder directory (needs encoder.pt and config.json){hint}")
    cfg = json.loads(cfg_path.read_text())
    if int(cfg.get("in_channels", 1)) != channels:
        raise AlsegError(f"{path}: encoder takes {cfg['in_channels']} channel(s) but the dataset has {channels}")
    model = GCLEncoder(cfg.get("arch", "resnet18"), int(cfg.get("in_channels", 1)), int(cfg.get("proj_dim", 64)))
    model.load_state_dict(torch.load(weights, map_location="cpu", weights_only=True))
    loss = cfg.get("loss", "gcl")
    info = {"spec": str(path.resolve()), "kind": "alseg", "loss": loss,
            "gcl": loss == "gcl" and bool(cfg.get("groups")),
            "groups": list(cfg.get("groups", [])), "weights": cfg.get("weights"), "tau": cfg.get("tau")}
    if loss == "sp-supcon":
        info.update(meta=cfg.get("meta"), lambdas=cfg.get("lambdas"))
    return inference_trunk(_Trunk(model)), int(cfg["size"]), info


@SPEC_KINDS.register("torchvision", "resnet18:PATH.pth / resnet50:PATH.pth: a local torchvision state dict")
def load_tv(spec: str, channels: int, **_):
    arch, _, path = spec.partition(":")
    model = inference_trunk(load_torchvision(arch, path, channels))
    return model, None, {"spec": spec, "kind": "torchvision", "gcl": False, "groups": [], "arch": arch,
                         "weights_file": str(Path(path).resolve())}


@SPEC_KINDS.register("torchscript", "a TorchScript file (torch.jit.save) returning (N, D) vectors")
def load_script(spec: str, channels: int, **_):
    try:
        with warnings.catch_warnings():      # torch >= 2.14 deprecates TorchScript; .pt2 is the successor
            warnings.simplefilter("ignore", FutureWarning)
            model = torch.jit.load(spec, map_location="cpu")
    except Exception as exc:
        raise AlsegError(f"{spec}: not a TorchScript file ({exc.__class__.__name__}); save one with "
                         f"torch.jit.save(torch.jit.script(model), PATH), or a torch.export program as "
                         f".pt2") from None
    return model, None, {"spec": str(Path(spec).resolve()), "kind": "torchscript", "gcl": False, "groups": []}


@SPEC_KINDS.register("export", "a torch.export program (.pt2, torch.export.save) returning (N, D) vectors")
def load_export(spec: str, channels: int, **_):
    try:
        model = torch.export.load(spec).module()
    except Exception as exc:
        raise AlsegError(f"{spec}: not a torch.export program ({exc.__class__.__name__}); save one with "
                         f"torch.export.save(torch.export.export(model, (x,), dynamic_shapes=...), PATH)") from None
    return model, None, {"spec": str(Path(spec).resolve()), "kind": "export", "gcl": False, "groups": []}


@SPEC_KINDS.register("pixels", "the image area-downsampled to --pixels-size (default 32x32), flattened")
def load_pixels(spec: str, channels: int, pixels_size: int = 32, **_):
    if pixels_size < 1:
        raise AlsegError(f"--pixels-size must be >= 1, got {pixels_size}")
    return _Pixels(pixels_size), None, {"spec": "pixels", "kind": "pixels", "gcl": False, "groups": [],
                                        "pixels_size": int(pixels_size)}


@SPEC_KINDS.register("external", "--from FILE: .npy (+ --ids), .npz, CSV, Lightly CSV or zarr vectors, matched by slice_id")
def load_from_file(spec: str, channels: int, **_):
    raise AlsegError("external vectors are imported with --from FILE, not --encoder")


class _Trunk(torch.nn.Module):
    def __init__(self, model: GCLEncoder):
        super().__init__()
        self.model = model

    def forward(self, x):
        return self.model.embed(x)


class _Pixels(torch.nn.Module):
    def __init__(self, size: int):
        super().__init__()
        self.size = size

    def forward(self, x):
        return F.adaptive_avg_pool2d(x, self.size).flatten(1)   # area average = exact "area" resize


def spec_kind(spec: str) -> str:
    """Which registry entry a SPEC names."""
    if spec == "pixels":
        return "pixels"
    head = spec.split(":", 1)[0]
    if head in ARCHS:
        return "torchvision"
    path = Path(spec)
    if path.is_dir():
        return "alseg"
    if path.is_file():
        return "export" if path.suffix == ".pt2" else "torchscript"
    raise AlsegError(f"--encoder {spec!r}: not an encoder directory, a TorchScript file, 'pixels' or "
                     f"ARCH:PATH.pth with ARCH in {sorted(ARCHS)}")


@torch.no_grad()
def run_encoder(model, images_fn, n: int, size: Optional[int], dev, batch_size: int,
                progress=True, flatten: bool = False) -> np.ndarray:
    """Batched inference in eval mode; ``images_fn(start, stop)`` gives (B, C, H, W) float32.

    The model must return (B, D) (or a tuple whose first item is); ``flatten`` accepts any
    (B, ...) output and flattens it per slice.
    """
    if isinstance(model, torch.nn.Module) and not isinstance(model, torch.fx.GraphModule):
        model.eval()
    model.to(dev)
    amp = dev.type == "cuda"
    chunks = []
    reporter = as_reporter(progress)
    reporter.start("embed", n)
    starts = list(range(0, n, batch_size))
    # the next batch is read (zarr decoding) on a second thread while this one runs the model
    reader = ThreadPoolExecutor(max_workers=1)
    ahead = reader.submit(images_fn, 0, min(n, batch_size)) if starts else None
    try:
        for i, start in enumerate(starts):
            batch = ahead.result()
            if i + 1 < len(starts):
                ahead = reader.submit(images_fn, starts[i + 1], min(n, starts[i + 1] + batch_size))
            x = torch.from_numpy(batch).to(dev)
            if size and x.shape[-1] != size:
                x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False,
                                  antialias=size < x.shape[-1])
            x = like_weights(model, x)
            with torch.autocast(dev.type, dtype=torch.float16, enabled=amp):
                y = model(x)
            if isinstance(y, (tuple, list)):
                y = y[0]
            if not isinstance(y, torch.Tensor) or y.shape[0] != x.shape[0] or (y.ndim != 2 and not flatten):
                shape = tuple(y.shape) if isinstance(y, torch.Tensor) else type(y).__name__
                raise AlsegError(f"the encoder returned {shape} for a batch of {x.shape[0]} slices; it must "
                                 f"return (N, D) vectors (pass --flatten to flatten other shapes per slice)")
            chunks.append(y.float().reshape(y.shape[0], -1).cpu().numpy())
            reporter.update("embed", start + x.shape[0], "slices")
    finally:
        reader.shutdown(wait=True, cancel_futures=True)
        reporter.finish("embed")
    return np.concatenate(chunks) if chunks else np.zeros((0, 0), np.float32)


def embed(dataset, out, encoder: Optional[str] = None, from_file=None, ids_file=None,
          assume_order: bool = False, split: Optional[str] = None, half: bool = False,
          batch_size: int = 64, workers: int = 0, device: str = "auto", pixels_size: int = 32,
          size: Optional[int] = None, flatten: bool = False, force: bool = False, progress=True) -> dict:
    """Embed the dataset's slices (all, or one split) and write an embeddings store."""
    if (encoder is None) == (from_file is None):
        raise AlsegError("pass exactly one of --encoder SPEC or --from FILE")
    if out is None:
        raise AlsegError("-o/--output EMB.zarr is required")
    if batch_size < 1:
        raise AlsegError(f"--batch-size must be >= 1, got {batch_size}")
    store = DatasetStore(dataset)
    idx = store.indices(None if split in (None, "all") else split)
    ids = store.slice_ids[idx]
    dev = resolve_device(device)
    if workers and dev.type == "cpu":
        torch.set_num_threads(int(workers))
    t0 = time.perf_counter()
    inputs = {"dataset": store.path}
    load_seconds = None
    if from_file is not None:
        from .external import load_external
        vectors, info = load_external(from_file, list(store.slice_ids), list(ids), ids_file=ids_file,
                                      assume_order=assume_order)
        inputs["vectors"] = from_file
    else:
        kind = spec_kind(encoder)
        model, enc_size, info = SPEC_KINDS.get(kind)(encoder, store.channels, pixels_size=pixels_size)
        if kind in ("alseg",) and enc_size:
            size = size or enc_size
        if kind in ("torchvision", "torchscript", "export"):
            inputs["encoder"] = info["weights_file"] if kind == "torchvision" else info["spec"]
        elif kind == "alseg":
            inputs["encoder"] = Path(encoder) / "encoder.pt"
        order = np.asarray(idx)
        load_seconds = time.perf_counter() - t0
        t0 = time.perf_counter()  # slices_per_s: the inference loop alone, without loading the model

        def images_fn(a, b):
            return np.asarray(store.images(order[a:b]), dtype=np.float32)
        try:
            vectors = run_encoder(model, images_fn, len(idx), size, dev, batch_size, progress, flatten)
        except AlsegError:
            raise
        except RuntimeError as exc:
            raise AlsegError(f"--encoder {encoder}: the model failed on {store.channels}-channel "
                             f"{store.size}px slices ({str(exc).splitlines()[0][:160]})") from None
    elapsed = time.perf_counter() - t0
    vectors = vectors.astype(np.float16 if half else np.float32)
    if half and not np.isfinite(vectors).all():
        raise AlsegError("--half: some values overflow float16; drop --half")
    attrs = {"dataset": str(store.path.resolve()), "encoder": info, "split": split or "all"}
    write_embeddings(out, vectors, list(ids), attrs, force=force)
    return make_manifest(
        "embeddings", args={"encoder": encoder, "from": None if from_file is None else str(from_file),
                            "split": split, "half": half, "batch_size": batch_size, "size": size,
                            "pixels_size": pixels_size, "device": device, "workers": workers,
                            "flatten": flatten},
        inputs=inputs, outputs={"embeddings": out}, device=str(dev), encoder=info,
        num=int(vectors.shape[0]), dim=int(vectors.shape[1]), dtype=str(vectors.dtype),
        slices_per_s=(len(idx) / elapsed) if from_file is None and elapsed > 0 else None,
        load_seconds=None if load_seconds is None else round(load_seconds, 3))
