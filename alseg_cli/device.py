"""Device choice, input memory layout and seeded generators (never global random state)."""
from __future__ import annotations

import numpy as np

from .errors import AlsegError


def like_weights(net, x):
    """x channels-last when the network's first conv is (else every layer converts it)."""
    import torch

    conv = next((m for m in net.modules() if isinstance(m, torch.nn.Conv2d)), None)
    if conv is not None and x.dim() == 4 and not conv.weight.is_contiguous() \
            and conv.weight.is_contiguous(memory_format=torch.channels_last):
        return x.contiguous(memory_format=torch.channels_last)
    return x


def resolve_device(device: str = "auto"):
    """'auto' -> CUDA when present, else CPU; 'cuda' without a GPU is an error."""
    import torch

    if device in (None, "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dev = torch.device(device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise AlsegError("--device cuda was asked for but no CUDA GPU is available; use --device cpu")
    return dev


def rng(seed: int) -> np.random.Generator:
    return np.random.default_rng(seed)


def torch_generator(seed: int, device="cpu"):
    import torch

    g = torch.Generator(device=device)
    g.manual_seed(int(seed))
    return g


def seed_everything(seed: int) -> None:
    """For torch layers whose init uses the global generator (nn.Module constructors)."""
    import torch

    torch.manual_seed(int(seed))


def load_checkpoint(path, map_location="cpu"):
    """torch.load with weights_only: tensors and plain values only. A checkpoint that needs
    more (pickled objects, which can run code when loaded) is refused in one line, so a
    model directory from elsewhere is data, never code."""
    import pickle

    import torch

    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError:
        raise AlsegError(f"{path}: holds objects beyond tensors and plain values; alseg loads checkpoints "
                         f"as data only (weights_only) and refuses this one") from None
    except (RuntimeError, EOFError, OSError) as exc:
        raise AlsegError(f"{path}: unreadable checkpoint ({exc.__class__.__name__})") from None
