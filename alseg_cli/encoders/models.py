"""Encoders: the GCL ResNet-18 (trunk + projection head) and torchvision trunks from local
weights. Nothing is ever downloaded: torchvision builders are called with weights=None.
"""
from __future__ import annotations

from pathlib import Path

import torch
import torch.nn as nn

from ..errors import AlsegError

ARCHS = {"resnet18": 512, "resnet50": 2048}


def resnet_trunk(arch: str = "resnet18", in_channels: int = 1) -> nn.Module:
    """A torchvision ResNet with a C-channel conv1 and no fc: outputs the pooled feature."""
    import torchvision

    if arch not in ARCHS:
        raise AlsegError(f"unknown architecture {arch!r}; choose one of {sorted(ARCHS)}")
    net = getattr(torchvision.models, arch)(weights=None)
    if in_channels != 3:
        net.conv1 = nn.Conv2d(in_channels, 64, kernel_size=7, stride=2, padding=3, bias=False)
    net.fc = nn.Identity()
    return net


def inference_trunk(net: nn.Module) -> nn.Module:
    """An eval-mode copy for embedding: batch-norm folded into the convolutions (running
    stats), channels-last weights. On one CPU thread, ResNet-18 at 64 px embeds 1.3-1.5x
    faster than the plain eval trunk (bench_pretrain.py); outputs equal to float rounding
    (~1e-5). Pass inputs through ``device.like_weights``."""
    from torch.fx.experimental.optimization import fuse

    return fuse(net.eval()).to(memory_format=torch.channels_last)


class GCLEncoder(nn.Module):
    """ResNet trunk (512-d pooled feature, the embedding) + projection head for the loss
    only: Linear(512, 512) -> ReLU -> Linear(512, 64) (method.md section 2)."""

    def __init__(self, arch: str = "resnet18", in_channels: int = 1, proj_dim: int = 64):
        super().__init__()
        self.trunk = resnet_trunk(arch, in_channels)
        d = ARCHS[arch]
        self.head = nn.Sequential(nn.Linear(d, d), nn.ReLU(inplace=True), nn.Linear(d, proj_dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.trunk(x))

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        return self.trunk(x)


def adapt_conv1(weight: torch.Tensor, in_channels: int) -> torch.Tensor:
    """RGB conv1 weights (64, 3, k, k) -> ``in_channels``: summed for 1 channel (a grey
    image replicated to RGB gives exactly the same response), kept for 3."""
    if weight.shape[1] == in_channels:
        return weight
    if in_channels == 1:
        return weight.sum(dim=1, keepdim=True)
    raise AlsegError(f"cannot adapt a {weight.shape[1]}-channel first convolution to {in_channels} channels")


def read_resnet_state_dict(path: Path, label: str, what: str) -> dict:
    """A local torchvision-style ResNet state dict, unwrapped (``state_dict``, ``module.``,
    ``backbone.`` prefixes) and without the classifier; ``label`` names the input in errors."""
    if not path.is_file():
        raise AlsegError(f"{label}: weights file not found (expected a local {what} state dict)")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise AlsegError(f"{label}: not a torch state dict ({exc.__class__.__name__})") from None
    if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        state = state["state_dict"]
    if not isinstance(state, dict) or not any(k.endswith("conv1.weight") for k in state):
        raise AlsegError(f"{label}: not a {what} state dict (no conv1.weight)")
    return {k.removeprefix("module.").removeprefix("backbone."): v for k, v in state.items()
            if not k.startswith("fc.")}


def load_torchvision(arch: str, weights_path, in_channels: int) -> nn.Module:
    """A torchvision trunk with a local state dict (fc dropped, conv1 adapted)."""
    if arch not in ARCHS:
        raise AlsegError(f"unknown torchvision architecture {arch!r}; use resnet18:PATH.pth or resnet50:PATH.pth")
    if not weights_path:
        raise AlsegError(f"'{arch}' needs a local weights file: pass --encoder {arch}:PATH.pth "
                         f"(a torchvision state dict, e.g. saved with torch.save(model.state_dict(), PATH)); "
                         f"alseg never downloads weights")
    path = Path(weights_path)
    state = read_resnet_state_dict(path, f"{path}", f"torchvision {arch}")
    state["conv1.weight"] = adapt_conv1(state["conv1.weight"], in_channels)
    net = resnet_trunk(arch, in_channels)
    try:
        net.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        first = str(exc).splitlines()[0]
        raise AlsegError(f"{path}: weights do not fit torchvision {arch} ({first})") from None
    return net
