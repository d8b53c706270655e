"""Which values become black and white: the display range of each channel's picture.

Min-max stretching lies in two ways (measured on MobileNetV2's 17,056 channels for skimage's
coffee and chelsea): in 57 % of the channels of maps 8x8 or larger, the minimum or maximum
sits on the outermost ring of the map, where zero padding makes the values unlike the rest,
and single extreme pixels squeeze the structure into a few grey levels. So by default a
channel is drawn on the 1st..99th percentile of its map *without that ring* (maps smaller
than 8x8 use all of it), and values outside are clipped to black and white. The tenth
percentile of the tiles' grey-level spread rose from 35 (min-max) to 48 with it (1 %/99 %
of the whole map: 47; 0.5 %/99.5 % of the interior: 44). ``minmax`` keeps the exact
per-channel stretch; ``layer`` takes the same percentiles over the whole layer.

Flat channels (see :func:`reportgen.forward.stats.flat_channels`) are drawn on the layer's
range instead, so they come out as the uniform grey of where they sit in the layer, never as
stretched numerical noise.
"""
from __future__ import annotations

import math

import numpy as np
import torch

PERCENTILES = (1.0, 99.0)
#: Maps at least this large (both sides) leave their outermost ring out of the range.
RING_FROM = 8

DESCRIPTIONS = {
    "channel": ("each channel on its own 1st–99th percentile range (the map's outermost ring "
                "left out of the range); values outside are clipped"),
    "layer": ("one range for the whole layer, its 1st–99th percentile (each map's outermost "
              "ring left out of the range); values outside are clipped"),
    "minmax": "each channel on its own exact minimum–maximum range (nothing clipped)",
    "dataset": ("each channel from 0 to its 99th-percentile peak over the dataset, so "
                "brightness compares this image with the dataset; values outside are clipped"),
}


def describe(mode: str) -> str:
    return DESCRIPTIONS[mode]


def display_range(maps: torch.Tensor, mode: str) -> tuple[torch.Tensor, torch.Tensor]:
    """(low, high), each (C,), for (C, H, W) float maps in any layout, or (N, C, H, W): the
    maps of N images, which then share one range per channel so they can be compared.

    ``channel`` and ``layer`` use the robust percentiles above; ``minmax`` the exact range.
    """
    stack = maps.unsqueeze(0) if maps.dim() == 3 else maps
    channels = stack.shape[1]
    if mode == "minmax":
        return stack.amin(dim=(0, 2, 3)), stack.amax(dim=(0, 2, 3))
    height, width = stack.shape[-2:]
    core = stack[:, :, 1:-1, 1:-1] if min(height, width) >= RING_FROM else stack
    if mode == "layer":
        low, high = _or_exact(*_percentiles(core, per_channel=False), stack, dims=None)
        return low.expand(channels), high.expand(channels)
    return _or_exact(*_percentiles(core, per_channel=True), stack, dims=(0, 2, 3))


def _or_exact(low: torch.Tensor, high: torch.Tensor, stack: torch.Tensor,
              dims: tuple[int, ...] | None) -> tuple[torch.Tensor, torch.Tensor]:
    """Where the percentiles coincide (a map that is one value almost everywhere, its few
    other values on the ring or in a handful of pixels), the exact range of ``stack`` over
    ``dims`` (None: all of it): otherwise the picture would be one flat colour that hides
    exactly those pixels. On the default report MobileNetV2's features.1.conv.0.0:10 (zero
    inside, ±0.015 at the border) came out black. Only then is the exact range computed:
    two more passes over every map otherwise."""
    same = high <= low
    if not bool(same.any()):
        return low, high
    exact_low = stack.amin().reshape(1) if dims is None else stack.amin(dim=dims)
    exact_high = stack.amax().reshape(1) if dims is None else stack.amax(dim=dims)
    return torch.where(same, exact_low, low), torch.where(same, exact_high, high)


def picture_range(maps: torch.Tensor, mode: str, flat: torch.Tensor
                  ) -> tuple[torch.Tensor, torch.Tensor]:
    """:func:`display_range`, with flat channels on the layer's range (by the same rule:
    robust, or exact for ``minmax``), so they show where they sit in the layer."""
    low, high = display_range(maps, mode)
    if mode != "layer" and bool(flat.any()):  # maps: (C, H, W), or (N, C, H, W) for N images
        flat = flat.to(low.device)
        if mode == "minmax":
            layer_low, layer_high = maps.amin(), maps.amax()
        else:
            layer_low, layer_high = (value[0] for value in display_range(maps, "layer"))
        low = torch.where(flat, layer_low.expand_as(low), low)
        high = torch.where(flat, layer_high.expand_as(high), high)
    return low, high


def dataset_range(maps: torch.Tensor, peaks: torch.Tensor, flat: torch.Tensor
                  ) -> tuple[torch.Tensor, torch.Tensor]:
    """0 to each channel's dataset peak (``peaks``, (C,)); a channel the dataset never
    excites above 0 falls back to its own robust range on these maps."""
    own_low, own_high = picture_range(maps, "channel", flat)
    peaks = peaks.to(own_high.device, own_high.dtype)
    usable = peaks > 0
    return (torch.where(usable, torch.zeros_like(own_low), own_low),
            torch.where(usable, peaks, own_high))


def _percentiles(core: torch.Tensor, per_channel: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """Nearest-rank :data:`PERCENTILES` of each channel of (N, C, h, w) maps (of all their
    values when not ``per_channel``): (C,) or (1,) each, exact.

    On the CPU both ranks come from one ``numpy.partition`` of one copy, taken straight from
    the strided interior view: ``kthvalue`` needed a reshaped copy and then copied every row
    again for each of its two selections. On VGG16's 13 maps at 224x224 that took a quarter
    of the time (measured 3.8 s against 1.2 s under a load of 11 on 2 cores, where ~0.5 s of
    the 1.2 is the copy itself). Elsewhere (a GPU, half precision) ``kthvalue`` selects.
    """
    rows = core.shape[1] if per_channel else 1
    count = core.numel() // rows
    low_rank, high_rank = (min(count, max(1, math.ceil(p / 100.0 * count))) for p in PERCENTILES)
    if core.device.type != "cpu" or core.dtype not in (torch.float32, torch.float64):
        rowed = core.transpose(0, 1).reshape(rows, -1)
        return (rowed.kthvalue(low_rank, dim=1).values,
                rowed.kthvalue(high_rank, dim=1).values)
    # A fresh copy, C-ordered as (C, N, h, w) (for the layer, in memory order), that
    # ndarray.partition may reorder in place.
    maps = core.detach().transpose(0, 1).numpy()
    copied = (np.array(maps, order="C") if per_channel else np.array(maps, order="K"))
    values = copied.reshape(rows, count) if per_channel else copied.ravel(order="K")[None]
    values.partition([low_rank - 1, high_rank - 1], axis=1)
    return (torch.from_numpy(values[:, low_rank - 1].copy()),
            torch.from_numpy(values[:, high_rank - 1].copy()))


def grey_levels(maps: torch.Tensor, low: torch.Tensor, high: torch.Tensor) -> torch.Tensor:
    """Map [low, high] (each (C,)) to the whole numbers 0..255, clipping outside; a zero span
    gives 0, never NaN. Still float, in the maps' own layout: :func:`~reportgen.pictures.grids.
    tile` casts while it copies each map into its cell, so no uint8 copy is made on the way."""
    low, high = low.view(-1, 1, 1).to(maps.dtype), high.view(-1, 1, 1).to(maps.dtype)
    span = high - low
    scale = torch.where(span > 0, 255.0 / span.clamp_min(torch.finfo(maps.dtype).tiny),
                        torch.zeros_like(span))
    return (maps - low).mul_(scale).round_().clamp_(0, 255)


def to_uint8(maps: torch.Tensor, low: torch.Tensor, high: torch.Tensor) -> torch.Tensor:
    """:func:`grey_levels` as uint8. Works on (C, H, W) in any memory layout; the result is
    contiguous."""
    return grey_levels(maps, low, high).to(torch.uint8, memory_format=torch.contiguous_format)
