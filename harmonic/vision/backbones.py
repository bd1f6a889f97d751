"""Vision backbones: a small registry, name -> constructor returning (module, feature_dim).

Every backbone maps images (N, C, H, W) to penultimate features (N, feature_dim); the head (HarmonicHead or the CE
baseline) sits on top, so the same backbone serves every distance.

    linear    flatten only (784-d for MNIST): the single-layer classifier of the MNIST weight study
    mlp       flatten -> 512 -> 256 (ReLU)
    cnn       conv32-pool-conv64-pool-fc128 (3x3 convs, ReLU, 2x2 max-pool)
    resnet50  torchvision ResNet-50 with the CIFAR stem (3x3 stride-1 conv1, no max-pool), 2048-d
    pvt_v2_b0 timm PVT-v2-b0, 256-d; inputs smaller than 32x32 (MNIST) are zero-padded to 32x32 because the
              model's first spatial-reduction conv (8x8) needs at least 8x8 tokens after the stride-4 patch embed
"""

from __future__ import annotations

import torch
from torch import nn


class Flatten(nn.Module):
    def forward(self, x):
        return x.flatten(1)


def linear(in_shape):
    c, h, w = in_shape
    return Flatten(), c * h * w


def mlp(in_shape):
    c, h, w = in_shape
    body = nn.Sequential(Flatten(), nn.Linear(c * h * w, 512), nn.ReLU(), nn.Linear(512, 256), nn.ReLU())
    return body, 256


def cnn(in_shape):
    c, h, w = in_shape
    body = nn.Sequential(
        nn.Conv2d(c, 32, 3, padding=1),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(32, 64, 3, padding=1),
        nn.ReLU(),
        nn.MaxPool2d(2),
        Flatten(),
        nn.Linear(64 * (h // 4) * (w // 4), 128),
        nn.ReLU(),
    )
    return body, 128


def resnet50(in_shape):
    from torchvision.models import resnet50 as tv_resnet50

    net = tv_resnet50(weights=None)
    net.conv1 = nn.Conv2d(in_shape[0], 64, kernel_size=3, stride=1, padding=1, bias=False)
    net.maxpool = nn.Identity()
    net.fc = nn.Identity()
    return net, 2048


class PadTo(nn.Module):
    """Zero-pad images symmetrically up to a minimum size (28x28 MNIST -> 32x32 for PVT)."""

    def __init__(self, size: int):
        super().__init__()
        self.size = size

    def forward(self, x):
        h, w = x.shape[-2:]
        dh, dw = max(0, self.size - h), max(0, self.size - w)
        if dh == 0 and dw == 0:
            return x
        return nn.functional.pad(x, (dw // 2, dw - dw // 2, dh // 2, dh - dh // 2))


def pvt_v2_b0(in_shape):
    import timm

    net = timm.create_model("pvt_v2_b0", pretrained=False, num_classes=0, in_chans=in_shape[0])
    return nn.Sequential(PadTo(32), net), net.num_features


BACKBONES = {"linear": linear, "mlp": mlp, "cnn": cnn, "resnet50": resnet50, "pvt_v2_b0": pvt_v2_b0}
CONV_BACKBONES = {"cnn", "resnet50", "pvt_v2_b0"}  # the ones that profit from channels_last


def backbone_names() -> list[str]:
    return list(BACKBONES)


def build_backbone(name: str, in_shape) -> tuple[nn.Module, int]:
    if name not in BACKBONES:
        raise ValueError(f"unknown vision backbone {name!r}; choose one of {backbone_names()}")
    return BACKBONES[name](tuple(in_shape))


class VisionModel(nn.Module):
    """Backbone + head. forward returns (logits, features); the head always runs in float32 (see train.py)."""

    def __init__(self, backbone: nn.Module, head: nn.Module):
        super().__init__()
        self.backbone = backbone
        self.head = head

    def forward(self, x, autocast_dtype: torch.dtype | None = None):
        if autocast_dtype is not None:
            with torch.autocast(x.device.type, dtype=autocast_dtype):
                features = self.backbone(x)
        else:
            features = self.backbone(x)
        features = features.float()
        with torch.autocast(x.device.type, enabled=False):
            logits = self.head(features)
        return logits, features


def build_model(backbone: str, head_spec: dict, in_shape, num_classes: int) -> VisionModel:
    from harmonic.heads import head_from_spec

    body, feature_dim = build_backbone(backbone, in_shape)
    return VisionModel(body, head_from_spec(head_spec, feature_dim, num_classes))
