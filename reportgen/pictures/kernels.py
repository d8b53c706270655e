"""A picture of each conv layer's weights that means something for its shape.

- 3 inputs per group: each filter as a small RGB image (the seed post showed input 0 in grey).
- 1 input per group (depthwise): each filter as a grey kernel.
- 1x1 with many inputs: one out x in heatmap, which is what a 1x1 conv is.
- kxk with many inputs: one tile per output filter showing its strongest input slice (largest
  L2 norm); which input that is is recorded per filter.

Kernels are centred on zero: mid-grey (or white in the heatmap) is 0, so a sign is visible.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from functools import lru_cache

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from reportgen.pictures.grids import GAP_VALUE, GridLayout

HEATMAP_CMAP = "RdBu_r"
#: ColorBrewer RdBu (11 classes, as in matplotlib's ``_cm._RdBu_data``), blue end first.
_RDBU_R_ANCHORS = ((5, 48, 97), (33, 102, 172), (67, 147, 195), (146, 197, 222),
                   (209, 229, 240), (247, 247, 247), (253, 219, 199), (244, 165, 130),
                   (214, 96, 77), (178, 24, 43), (103, 0, 31))
MIN_TILE_PIXELS = 24  # kernels are upscaled (nearest) to at least this many pixels
MAX_HEATMAP_SIDE = 1024


@dataclass
class FilterFigure:
    """The picture (HxW or HxWx3 uint8) and what the report says about it."""

    pixels: np.ndarray
    view: str  # "rgb", "grey", "heatmap", "strongest-input"
    description: str
    layout: GridLayout | None
    scale: int
    strongest_input: list[int] | None = None
    stats: dict[str, float] = field(default_factory=dict)


def weight_stats(weight: torch.Tensor) -> dict[str, float]:
    flat = weight.detach().float().reshape(-1)
    return {
        "count": int(flat.numel()),
        "mean": float(flat.mean()),
        "std": float(flat.std()) if flat.numel() > 1 else 0.0,
        "min": float(flat.min()),
        "max": float(flat.max()),
        "abs_mean": float(flat.abs().mean()),
        "l2_norm": float(flat.norm()),
    }


def filter_figure(conv: nn.Conv2d) -> FilterFigure:
    weight = conv.weight.detach().float().cpu()
    out_channels, inputs, kernel_h, kernel_w = weight.shape
    stats = weight_stats(weight)
    if inputs == 3:
        return _tiles(weight, "rgb", stats,
                      "Each filter as an RGB image of its 3 input kernels, "
                      "scaled symmetrically around 0 per filter (mid-grey = 0).")
    if inputs == 1:
        kind = "depthwise" if conv.groups > 1 else "single-input"
        return _tiles(weight, "grey", stats,
                      f"Each {kind} kernel in grey, scaled symmetrically around 0 per filter "
                      "(mid-grey = 0, white positive, black negative).")
    if kernel_h == 1 and kernel_w == 1:
        return _heatmap(weight[:, :, 0, 0], stats, conv.groups)
    norms = weight.pow(2).sum(dim=(2, 3))  # (out, in)
    strongest = norms.argmax(dim=1)
    slices = weight[torch.arange(out_channels), strongest].unsqueeze(1)
    figure = _tiles(slices, "grey", stats,
                    f"Each of the {out_channels} filters has {inputs} input kernels; shown is "
                    "its strongest input slice (largest L2 norm), scaled symmetrically around 0 "
                    "(mid-grey = 0). The input channel of each tile is listed per filter.")
    figure.view = "strongest-input"
    figure.strongest_input = [int(v) for v in strongest.tolist()]
    return figure


def _tiles(weight: torch.Tensor, view: str, stats: dict[str, float],
           description: str) -> FilterFigure:
    out_channels, inputs, kernel_h, kernel_w = weight.shape
    peak = weight.abs().reshape(out_channels, -1).amax(dim=1).clamp_min(1e-12).view(-1, 1, 1, 1)
    unit = (weight / peak * 0.5 + 0.5).clamp(0, 1)  # 0 -> mid-grey, per filter
    scale = max(1, math.ceil(MIN_TILE_PIXELS / max(kernel_h, kernel_w)))
    if scale > 1:
        unit = F.interpolate(unit, scale_factor=scale, mode="nearest")
    pixels = (unit * 255).round().to(torch.uint8)
    layout = GridLayout.for_channels(out_channels, pixels.shape[2], pixels.shape[3])
    planes = [_tile_planes(pixels[:, plane], layout) for plane in range(inputs)]
    picture = np.stack(planes, axis=-1) if inputs == 3 else planes[0]
    return FilterFigure(picture, view, description, layout, scale, stats=stats)


def _tile_planes(planes: torch.Tensor, layout: GridLayout) -> np.ndarray:
    from reportgen.pictures.grids import tile

    return tile(planes, layout, GAP_VALUE)


@lru_cache(maxsize=1)
def heatmap_lut() -> np.ndarray:
    """matplotlib's ``RdBu_r`` as a 256x3 uint8 table, byte for byte, without matplotlib.

    Importing matplotlib for this one table cost 0.2-0.3 s of a ~1.5 s MobileNetV2 report
    (its 1x1 convs are heatmaps). This is matplotlib's ``LinearSegmentedColormap`` lookup
    (``_create_lookup_table`` on the reversed segments, x' = 1 - x, then ``bytes=True``);
    tests/test_perf_behaviour.py checks it equals ``matplotlib.colormaps["RdBu_r"]``.
    """
    colors = np.array(_RDBU_R_ANCHORS, dtype=np.float64) / 255.0
    x = (1.0 - np.linspace(0.0, 1.0, len(colors))[::-1]) * 255
    xind = 255 * np.linspace(0.0, 1.0, 256)
    ind = np.searchsorted(x, xind)[1:-1]
    distance = ((xind[1:-1] - x[ind - 1]) / (x[ind] - x[ind - 1]))[:, None]
    lut = np.concatenate([colors[:1], distance * (colors[ind] - colors[ind - 1]) + colors[ind - 1],
                          colors[-1:]])
    table: np.ndarray = (np.clip(lut, 0.0, 1.0) * 255).astype(np.uint8)
    return table


def _heatmap(matrix: torch.Tensor, stats: dict[str, float], groups: int) -> FilterFigure:
    rows, cols = matrix.shape
    peak = float(matrix.abs().max()) or 1.0
    index = ((matrix / peak * 0.5 + 0.5).clamp(0, 1) * 255).round().to(torch.uint8).numpy()
    scale = max(1, min(MAX_HEATMAP_SIDE // max(rows, cols), math.ceil(64 / min(rows, cols))))
    if scale > 1:
        index = np.kron(index, np.ones((scale, scale), dtype=np.uint8))
    lut = heatmap_lut()
    grouped = f" ({groups} groups: columns are the inputs within each group)" if groups > 1 else ""
    return FilterFigure(
        lut[index], "heatmap",
        f"1x1 convolution as a {rows} x {cols} weight matrix: row = output channel, column = "
        f"input channel{grouped}. Blue negative, white 0, red positive, "
        f"symmetric over the layer (|w| max {peak:.3g}).", None, scale, stats=stats)
