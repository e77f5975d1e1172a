"""MC-dropout passes, faster on CPU, with exactly the dropout masks of a plain loop.

The plain loop is ``[net(x).softmax(1) for _ in range(S)]`` with the ``nn.Dropout``
modules in train mode. Each ``F.dropout`` call there draws ``empty_like(input).bernoulli_(1 - p)``
and divides by ``1 - p``, layer after layer, pass after pass. ``mc_passes`` draws the same
noise tensors in the same order up front, then runs every pass with the dropout modules in
eval mode and a hook that multiplies by its noise. That frees the passes from the memory
layout dropout draws in (so activations can be channels-last, 20-30 % faster on CPU) and
lets the deterministic prefix before the first dropout (a network's ``mc_split``) run once
per slice instead of once per pass. Outputs equal the plain loop's to float rounding
(tested against it on CPU). On CUDA, ATen's plain loop uses the fused dropout kernel, whose
random stream differs; there the masks are ``bernoulli_`` draws too: reproducible per seed,
not the fused kernel's.
"""
from __future__ import annotations

import copy
from typing import Callable, List, Tuple

import torch
import torch.nn as nn

from ..device import like_weights


def inference_copy(net: nn.Module, channels_last: bool = True) -> nn.Module:
    """An eval-mode copy with every conv-BN pair folded into one conv (running stats), channels-last.

    Equal to ``net`` in eval mode to float rounding; about 10 % less work on CPU.
    """
    from torch.nn.utils.fusion import fuse_conv_bn_eval

    net = copy.deepcopy(net).eval()
    for module in list(net.modules()):
        if isinstance(module, nn.Sequential):
            layers = list(module)
            for i in range(len(layers) - 1):
                if isinstance(layers[i], nn.Conv2d) and isinstance(layers[i + 1], nn.BatchNorm2d):
                    module[i] = fuse_conv_bn_eval(layers[i], layers[i + 1])
                    module[i + 1] = nn.Identity()
    return net.to(memory_format=torch.channels_last) if channels_last else net


def mc_split(net: nn.Module) -> Tuple[Callable, Callable]:
    """(deterministic prefix, stochastic rest) of the network; identity prefix by default."""
    split = getattr(net, "mc_split", None)
    return split() if split is not None else ((lambda x: x), net)


def _first_slice(head):
    """The prefix output for the first slice only (tensors sliced, sizes and the like kept)."""
    if isinstance(head, torch.Tensor):
        return head[:1]
    if isinstance(head, (list, tuple)):
        return type(head)(_first_slice(h) for h in head)
    return head


def _dropout_calls(rest: Callable, head, drops: List[nn.Module]) -> List[Tuple[float, torch.Size]]:
    """(p, per-slice input shape) of every dropout call of one pass, in call order."""
    calls: List[Tuple[float, torch.Size]] = []
    hooks = [d.register_forward_pre_hook(lambda m, a: calls.append((m.p, a[0].shape[1:]))) for d in drops]
    try:
        rest(head)
    finally:
        for h in hooks:
            h.remove()
    return calls


def _draw_noise(calls, b: int, samples: int, device) -> List[List[torch.Tensor]]:
    """noise[s][j] for pass s, dropout call j, exactly as ATen's dropout draws it."""
    out = []
    for _ in range(samples):
        row = []
        for p, shape in calls:
            if p == 0:
                row.append(None)          # dropout with p = 0 draws nothing
            elif p == 1:
                row.append(torch.zeros((b,) + tuple(shape), device=device))
            else:
                row.append(torch.empty((b,) + tuple(shape), device=device).bernoulli_(1 - p).div_(1 - p))
        out.append(row)
    return out


def mc_passes(net: nn.Module, x: torch.Tensor, samples: int) -> torch.Tensor:
    """(S, b, K, H, W) softmax probabilities of ``samples`` MC-dropout passes over ``x``.

    ``net``: best an ``inference_copy`` (channels-last input follows its weights' layout).
    Draws from torch's global generator exactly as the plain loop does: seed it first.
    Batch-norm stays in eval mode; ``net`` is left in eval mode with dropout off.
    """
    drops = [m for m in net.modules() if isinstance(m, nn.Dropout)]
    net.eval()
    prefix, rest = mc_split(net)
    with torch.inference_mode():
        head = prefix(like_weights(net, x))
        one = _first_slice(head)
        calls = _dropout_calls(rest, one, drops)
        noise = _draw_noise(calls, x.shape[0], int(samples), x.device)
        pending: List[torch.Tensor] = []

        def apply(module, args, output):
            n = pending.pop(0)
            return output if n is None else args[0] * n

        hooks = [d.register_forward_hook(apply) for d in drops]
        try:
            probs = []
            for row in noise:
                pending[:] = row
                probs.append(rest(head).float().softmax(1).contiguous())
        finally:
            for h in hooks:
                h.remove()
    return torch.stack(probs)
