"""Segmentation networks: UNet (full masks), DMPLS UNet (two decoders), UNet with a ResNet-50 encoder.

The UNet follows the WSL4MIS reference used by the paper: encoder channels
base x (1, 2, 4, 8, 16) = 16/32/64/128/256 with dropout 0.05/0.1/0.2/0.3/0.5 in the
encoder blocks, bilinear-upsampling decoder without dropout. Dropout layers are
``nn.Dropout`` modules so MC-dropout can switch exactly them on.
"""
from __future__ import annotations

from typing import List

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..errors import AlsegError
from ..registry import Registry

NETWORKS = Registry("segmentation network")
DROPOUTS = (0.05, 0.1, 0.2, 0.3, 0.5)


class ConvBlock(nn.Module):
    """conv3x3-BN-LeakyReLU, dropout, conv3x3-BN-LeakyReLU."""

    def __init__(self, cin: int, cout: int, p: float):
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(cin, cout, 3, padding=1), nn.BatchNorm2d(cout), nn.LeakyReLU(),
            nn.Dropout(p),
            nn.Conv2d(cout, cout, 3, padding=1), nn.BatchNorm2d(cout), nn.LeakyReLU())

    def forward(self, x):
        return self.body(x)


class Encoder(nn.Module):
    def __init__(self, in_channels: int, base: int):
        super().__init__()
        ch = [base * m for m in (1, 2, 4, 8, 16)]
        self.channels = ch
        self.blocks = nn.ModuleList([ConvBlock(in_channels, ch[0], DROPOUTS[0])] +
                                    [ConvBlock(ch[i - 1], ch[i], DROPOUTS[i]) for i in range(1, 5)])

    def forward(self, x) -> List[torch.Tensor]:
        feats = []
        for i, block in enumerate(self.blocks):
            x = block(x if i == 0 else F.max_pool2d(x, 2))
            feats.append(x)
        return feats

    def stem(self, x):
        """The layers before the first dropout (conv-BN-LeakyReLU of the first block)."""
        return self.blocks[0].body[:3](x)

    def from_stem(self, h) -> List[torch.Tensor]:
        """``forward`` from the stem's output on: forward(x) == from_stem(stem(x))."""
        x = self.blocks[0].body[3:](h)
        feats = [x]
        for block in self.blocks[1:]:
            x = block(F.max_pool2d(x, 2))
            feats.append(x)
        return feats


class UpBlock(nn.Module):
    def __init__(self, cdeep: int, cskip: int, cout: int):
        super().__init__()
        self.reduce = nn.Conv2d(cdeep, cskip, 1)
        self.conv = ConvBlock(2 * cskip, cout, 0.0)

    def forward(self, deep, skip):
        deep = F.interpolate(self.reduce(deep), size=skip.shape[-2:], mode="bilinear", align_corners=False)
        return self.conv(torch.cat([skip, deep], dim=1))


class Decoder(nn.Module):
    def __init__(self, ch: List[int], num_classes: int):
        super().__init__()
        self.ups = nn.ModuleList([UpBlock(ch[i + 1], ch[i], ch[i])
                                  for i in reversed(range(len(ch) - 1))])
        self.head = nn.Conv2d(ch[0], num_classes, 3, padding=1)

    def forward(self, feats):
        return self.head(self.features(feats))

    def features(self, feats):
        """The last decoder feature map (full resolution, before the classifier)."""
        x = feats[-1]
        for up, skip in zip(self.ups, reversed(feats[:-1])):
            x = up(x, skip)
        return x


class UNet(nn.Module):
    prefers_channels_last = True     # inference 20-30 % faster on CPU (measured; ResNet-50 is slower)

    def __init__(self, in_channels: int, num_classes: int, base_channels: int = 16):
        super().__init__()
        self.encoder = Encoder(in_channels, base_channels)
        self.decoder = Decoder(self.encoder.channels, num_classes)

    def forward(self, x):
        return self.decoder(self.encoder(x))

    def forward_features(self, x):
        """(logits, last decoder features): what ARCO's pixel contrast needs besides the logits."""
        h = self.decoder.features(self.encoder(x))
        return self.decoder.head(h), h

    def mc_split(self):
        """(deterministic prefix, rest) for MC dropout: the stem runs once per slice."""
        return self.encoder.stem, lambda h: self.decoder(self.encoder.from_stem(h))


class DMPLSUNet(UNet):
    """Shared encoder, main decoder, auxiliary decoder fed feature dropout (p 0.5).

    ``forward`` returns the main decoder's logits (prediction, evaluation);
    ``forward_both`` returns (main, auxiliary) for the DMPLS loss.
    """

    def __init__(self, in_channels: int, num_classes: int, base_channels: int = 16, feature_dropout: float = 0.5):
        super().__init__(in_channels, num_classes, base_channels)
        self.aux_decoder = Decoder(self.encoder.channels, num_classes)
        self.feature_dropout = nn.Dropout(feature_dropout)

    def forward_both(self, x):
        feats = self.encoder(x)
        return self.decoder(feats), self.aux_decoder([self.feature_dropout(f) for f in feats])


class ResNet50UNet(nn.Module):
    """torchvision ResNet-50 encoder (1-channel stem when needed) with a UNet decoder."""

    def __init__(self, in_channels: int, num_classes: int, base_channels: int = 16, backbone_weights=None):
        super().__init__()
        import torchvision

        net = torchvision.models.resnet50(weights=None)
        if in_channels != 3:
            net.conv1 = nn.Conv2d(in_channels, 64, 7, stride=2, padding=3, bias=False)
        if backbone_weights:
            load_backbone(net, backbone_weights, in_channels)
        self.stem = nn.Sequential(net.conv1, net.bn1, net.relu)
        self.pool = net.maxpool
        self.layers = nn.ModuleList([net.layer1, net.layer2, net.layer3, net.layer4])
        self.bottleneck_dropout = nn.Dropout(0.5)  # keeps MC-dropout meaningful
        ch = [64, 256, 512, 1024, 2048]
        self.decoder = Decoder(ch, num_classes)

    def forward(self, x):
        return self.decode(self.encode(x), x.shape[-2:])

    def encode(self, x) -> List[torch.Tensor]:
        f0 = self.stem(x)
        feats = [f0]
        y = self.pool(f0)
        for layer in self.layers:
            y = layer(y)
            feats.append(y)
        return feats

    def decode(self, feats, size):
        feats = feats[:-1] + [self.bottleneck_dropout(feats[-1])]
        out = self.decoder(feats)
        return F.interpolate(out, size=size, mode="bilinear", align_corners=False)

    def mc_split(self):
        """(deterministic prefix, rest) for MC dropout: the whole encoder runs once per slice."""
        return (lambda x: (self.encode(x), tuple(x.shape[-2:]))), (lambda head: self.decode(*head))


def load_backbone(net: nn.Module, path, in_channels: int) -> None:
    """Load a torchvision-style ResNet-50 state dict from a local file (no download ever)."""
    from pathlib import Path

    from ..encoders.models import adapt_conv1, read_resnet_state_dict

    path = Path(path)
    state = read_resnet_state_dict(path, f"--backbone-weights {path}", "ResNet-50")
    state["conv1.weight"] = adapt_conv1(state["conv1.weight"], in_channels)
    missing, unexpected = net.load_state_dict(state, strict=False)
    missing = [k for k in missing if not k.startswith("fc.")]
    if missing or unexpected:
        raise AlsegError(f"--backbone-weights {path}: not a ResNet-50 state dict "
                         f"({len(missing)} missing, {len(unexpected)} unexpected keys)")


@NETWORKS.register("unet", "UNet, 0.5*(CE+Dice) on full masks", supervision="full")
def build_unet(in_channels, num_classes, base_channels=16, **_):
    return UNet(in_channels, num_classes, base_channels)


@NETWORKS.register("dmpls", "UNet with auxiliary decoder; pCE on scribbles + mixed pseudo-labels",
                   supervision="scribble")
def build_dmpls(in_channels, num_classes, base_channels=16, **_):
    return DMPLSUNet(in_channels, num_classes, base_channels)


@NETWORKS.register("unet-resnet50", "UNet decoder on a ResNet-50 encoder (--backbone-weights FILE)",
                   supervision="full", needs_backbone=True,
                   # the reference's optimiser for the pretrained network (paper table 3)
                   recipe={"optimizer": "adam", "lr": 1e-4, "clip_grad": 1.0})
def build_unet_resnet50(in_channels, num_classes, base_channels=16, backbone_weights=None, **_):
    return ResNet50UNet(in_channels, num_classes, base_channels, backbone_weights)


class Conv3x3x3(nn.Conv3d):
    """A 3x3x3 convolution (padding 1, the parameters and state dict of ``nn.Conv3d``) that on
    CPU runs as one 2D convolution over the B x D slices, each slice's channels stacked with
    those of the slices below and above it. The same function to float rounding, and 1.5-4x
    faster with its backward on one thread: ATen sends a batch of one thick-slice volume
    (N x C x D x H <= 20480, a heuristic for tiny inputs) to its slow native 3D kernel, while
    the 2D form runs oneDNN's convolution."""

    def __init__(self, cin: int, cout: int):
        super().__init__(cin, cout, 3, padding=1)

    def forward(self, x):
        if x.device.type != "cpu":
            return super().forward(x)
        b, c, d, h, w = x.shape
        padded = F.pad(x, (0, 0, 0, 0, 1, 1))
        stacked = torch.cat([padded[:, :, k:k + d] for k in range(3)], dim=1)     # channel k*C + c
        slices = stacked.transpose(1, 2).reshape(b * d, 3 * c, h, w)
        weight = self.weight.transpose(1, 2).reshape(self.out_channels, 3 * c, 3, 3)
        y = F.conv2d(slices, weight, self.bias, padding=1)
        return y.reshape(b, d, self.out_channels, h, w).transpose(1, 2)


class ConvBlock3d(nn.Module):
    """conv3x3x3-InstanceNorm-LeakyReLU twice (nnU-Net's block; instance norm suits batches of
    one or two volumes)."""

    def __init__(self, cin: int, cout: int):
        super().__init__()
        self.body = nn.Sequential(
            Conv3x3x3(cin, cout), nn.InstanceNorm3d(cout, affine=True), nn.LeakyReLU(),
            Conv3x3x3(cout, cout), nn.InstanceNorm3d(cout, affine=True), nn.LeakyReLU())

    def forward(self, x):
        return self.body(x)


class UNet3D(nn.Module):
    """A 3D U-Net trained from scratch on whole volumes (the paper's figure 2 baseline).

    Channels base x (1, 2, 4, 8, 16) as the 2D UNet. Anisotropic pooling as nnU-Net does for
    thick-slice MRI: the first ``inplane_levels`` poolings are in-plane only (1, 2, 2), the
    others (2, 2, 2) while the depth allows; ceil-mode pooling and upsampling to each skip's
    size take any depth and size, so volumes need no padding. Input (B, C, D, H, W).
    """
    volumetric = True

    def __init__(self, in_channels: int, num_classes: int, base_channels: int = 16, inplane_levels: int = 0):
        super().__init__()
        ch = [base_channels * m for m in (1, 2, 4, 8, 16)]
        self.inplane_levels = int(inplane_levels)
        self.blocks = nn.ModuleList([ConvBlock3d(in_channels, ch[0])] +
                                    [ConvBlock3d(ch[i - 1], ch[i]) for i in range(1, 5)])
        self.reduce = nn.ModuleList([nn.Conv3d(ch[i + 1], ch[i], 1) for i in reversed(range(4))])
        self.ups = nn.ModuleList([ConvBlock3d(2 * ch[i], ch[i]) for i in reversed(range(4))])
        self.head = nn.Conv3d(ch[0], num_classes, 1)

    def forward(self, x):
        feats = []
        for i, block in enumerate(self.blocks):
            if i:
                pz = 2 if i > self.inplane_levels and x.shape[2] >= 2 else 1
                x = F.max_pool3d(x, (pz, 2, 2), ceil_mode=True)
            x = block(x)
            feats.append(x)
        x = feats[-1]
        for reduce, up, skip in zip(self.reduce, self.ups, reversed(feats[:-1])):
            x = F.interpolate(reduce(x), size=skip.shape[-3:], mode="trilinear", align_corners=False)
            x = up(torch.cat([skip, x], dim=1))
        return self.head(x)


@NETWORKS.register("unet3d", "3D U-Net on whole volumes (figure 2's baseline; select --unit volume)",
                   supervision="full", volumetric=True)
def build_unet3d(in_channels, num_classes, base_channels=16, inplane_levels=0, **_):
    return UNet3D(in_channels, num_classes, base_channels, inplane_levels)


def inplane_levels(z_spacing: float, xy_spacing: float, levels: int = 4) -> int:
    """How many first poolings stay in-plane: until the in-plane spacing reaches half the
    slice spacing (nnU-Net's rule of thumb), at most ``levels``."""
    if not (z_spacing > 0 and xy_spacing > 0):
        return 0
    n = 0
    while n < levels and 2 * xy_spacing * 2 ** n < z_spacing:
        n += 1
    return n


def check_network(model: str, supervision: str, backbone_weights=None,
                  weights_flag: str = "--backbone-weights PATH") -> dict:
    """Can ``model`` train with this supervision and backbone file? One line if not, before any
    work (train-seg and the loop share it; ``weights_flag`` says how the caller passes the
    file). Returns the network's registry info."""
    from pathlib import Path

    NETWORKS.get(model)                              # unknown -> one line naming the known ones
    info = NETWORKS.info(model)
    if info.get("volumetric") and supervision != "full":
        raise AlsegError(f"--model {model} trains on full masks; pass --supervision full")
    if model == "dmpls" and supervision != "scribble":
        raise AlsegError("--model dmpls trains on scribbles; pass --supervision scribble or --model unet")
    if info.get("needs_backbone") and not backbone_weights:
        raise AlsegError(f"--model {model} needs {weights_flag}, a local ResNet-50 state dict")
    if backbone_weights and not info.get("needs_backbone"):
        takers = ", ".join(n for n in NETWORKS.names() if NETWORKS.info(n).get("needs_backbone"))
        raise AlsegError(f"--backbone-weights: --model {model} has no pretrained backbone to load them into "
                         f"(models that take one: {takers})")
    if backbone_weights and not Path(backbone_weights).is_file():
        raise AlsegError(f"--backbone-weights {backbone_weights}: file not found")
    return info


def build_network(name: str, in_channels: int, num_classes: int, base_channels: int = 16,
                  backbone_weights=None, **options) -> nn.Module:
    """``options``: a network's own settings (unet3d: inplane_levels), from the model config."""
    return NETWORKS.get(name)(in_channels=in_channels, num_classes=num_classes,
                              base_channels=base_channels, backbone_weights=backbone_weights, **options)
