"""The seed blog post's recipe, kept as the reference the benchmark compares against.

Same work as the post (/work/shared/reference/seed-post.md), with its bugs fixed so it runs:
``net_layers.items()`` (not ``.item()``), one ``get_activation`` name, the unterminated
``'off`` string, and a ``clone()`` in the hook so the in-place ReLU after each conv cannot
overwrite the stored output. Per conv layer of ``features``: register a hook, run a whole
forward pass, remove the hook, tile the channels with ``make_grid(normalize=True)``, draw the
grid into a 32 x 16 inch figure and ``savefig`` it. Then the first layer's filters as 8 x 8
subplots. Saving to PNG replaces the notebook's ``plt.show()``.
"""
from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # no display; the notebook's inline backend renders the same way

import matplotlib.pyplot as plt
import numpy as np
import torch
import torchvision
from torch import nn


def optimal_grid(n: int) -> tuple[int, int]:
    """Compute optimal grid size for N images (the post's helper, unchanged)."""
    n_cols = int(np.ceil(np.sqrt(n)))
    n_rows = int(np.ceil(n / n_cols))
    return n_cols, n_rows


def seed_transform(size: int) -> torchvision.transforms.Compose:
    return torchvision.transforms.Compose([
        torchvision.transforms.ToPILImage(),
        torchvision.transforms.Resize((size, size)),
        torchvision.transforms.ToTensor(),
        torchvision.transforms.Normalize(mean=[0.485, 0.456, 0.406], std=[0.229, 0.224, 0.225]),
    ])


def seed_report(net: nn.Module, image: np.ndarray, out: Path, size: int = 224) -> int:
    """Write every activation grid of ``net.features`` plus the first filters; return #files."""
    out.mkdir(parents=True, exist_ok=True)
    net_layers = {key: layer for key, layer in enumerate(net.features)
                  if isinstance(layer, nn.Conv2d)}
    image_tensor = seed_transform(size)(image.astype(np.float32) / 255.0)
    activations: dict[str, torch.Tensor] = {}

    def get_activation(name: str):
        def hook(module: nn.Module, x: tuple, y: torch.Tensor) -> None:
            activations[name] = y.detach().clone()  # the post's bug: no clone
        return hook

    written = 0
    net.eval()
    for key, layer in net_layers.items():
        handle = layer.register_forward_hook(get_activation(f"conv{key}"))
        with torch.no_grad():
            _ = net(image_tensor.unsqueeze(0))
        handle.remove()

        activation = activations.pop(f"conv{key}")[0, :, :, :]
        opt_rows, opt_cols = optimal_grid(activation.shape[0])
        channels = torch.split(activation, 1, dim=0)
        grid = torchvision.utils.make_grid(list(channels), nrow=opt_rows, padding=1,
                                           pad_value=1.0, normalize=True)
        plt.figure(figsize=(32, 16))
        plt.imshow(grid.permute(1, 2, 0))
        plt.axis("off")
        plt.savefig(out / f"conv{key}.png")
        plt.close()
        written += 1

    for layer in net.features:  # filters: only the first Conv2d, as in the post
        if isinstance(layer, nn.Conv2d):
            weights = layer.weight.data.numpy()
            fig, axes = plt.subplots(8, 8, figsize=(12, 6))
            for i, ax in enumerate(axes.flat):
                if i < weights.shape[0]:
                    ax.imshow(weights[i, 0, :, :], cmap="gray")
                    ax.axis("off")
            fig.savefig(out / "filters.png")
            plt.close(fig)
            written += 1
            break
    return written
