"""What the report's pages and their JavaScript see of the layers.

Two views, computed once at build time so the browser does no guessing:

- :func:`toc`: the layers grouped by module path (``features`` > ``features.1`` > ``conv.0.0``),
  in forward order, for the sidebar that follows the network's structure.
- :func:`layer_data`: one small JSON-able dict per layer page (grid geometry, per-channel
  statistics rounded to 4 significant digits, the manifest's rankings). It is embedded in the
  page rather than fetched, because ``fetch()`` of a local file fails from ``file://``.
"""
from __future__ import annotations

import itertools
import math
from dataclasses import dataclass, field
from typing import Any, Union

from reportgen.recorder import LayerRecord

#: Tiles are shown at an integer zoom that makes them at least this many CSS pixels, so a
#: 7x7 map is not a speck and a 112x112 map is not blown up.
MIN_TILE_DISPLAY = 64
STAT_DIGITS = 4


@dataclass(frozen=True)
class TocEntry:
    layer: LayerRecord
    label: str  # the name relative to the group it sits in

    @property
    def is_group(self) -> bool:
        return False


@dataclass(frozen=True)
class TocGroup:
    name: str  # a module path prefix such as "features" or "layer3.1"
    entries: list[Union["TocGroup", TocEntry]] = field(default_factory=list)

    @property
    def is_group(self) -> bool:
        return True


def display_scale(tile_width: int, tile_height: int) -> int:
    """Integer zoom for a tile on screen (integer, so every map pixel is the same size)."""
    return max(1, math.ceil(MIN_TILE_DISPLAY / max(1, tile_width, tile_height)))


def filter_display_scale(width: int, height: int) -> int:
    """Small filter figures (a few dozen 3x3 kernels) are drawn 2-3x so they can be read."""
    return max(1, min(3, 640 // max(1, width, height)))


def toc(layers: list[LayerRecord]) -> list[TocGroup | TocEntry]:
    """Group consecutive layers by their first, then first two, module path components.

    Consecutive runs only, so the order stays the forward order even when a module is called
    again later. A group holding a single layer is not worth a heading: it is flattened.
    """
    top: list[TocGroup | TocEntry] = []
    for head, run in itertools.groupby(layers, key=lambda layer: _parts(layer)[0]):
        members = list(run)
        blocks: list[TocGroup | TocEntry] = []
        for block, inner in itertools.groupby(members, key=lambda layer: ".".join(_parts(layer)[:2])
                                              if len(_parts(layer)) > 2 else None):
            inner_layers = list(inner)
            if block is not None and len(inner_layers) > 1:
                blocks.append(TocGroup(block, [TocEntry(layer, _relative(layer, block))
                                               for layer in inner_layers]))
            else:
                blocks.extend(TocEntry(layer, _relative(layer, head)) for layer in inner_layers)
        if len(members) == 1:
            top.append(TocEntry(members[0], members[0].name))
        else:
            top.append(TocGroup(head, blocks))
    return top


def _parts(layer: LayerRecord) -> list[str]:
    return layer.module_name.split(".")


def _relative(layer: LayerRecord, prefix: str) -> str:
    name = layer.name
    return name[len(prefix) + 1:] if name.startswith(prefix + ".") else name


def _rounded(values: list[float | None]) -> list[float | None]:
    return [None if v is None or not math.isfinite(v) else float(f"{v:.{STAT_DIGITS}g}")
            for v in values]


def layer_data(layer: LayerRecord, entry: dict[str, Any], options: dict[str, Any],
               input_png: str) -> dict[str, Any]:
    """The page's embedded index: where each channel's tile is, and its numbers.

    ``entry`` is the layer's manifest entry, so the page ranks channels exactly as the
    manifest does.
    """
    layout = layer.layout
    channels = entry["channels"]
    filters: dict[str, Any] | None = None
    if layer.filters_png:
        filters = {"src": layer.filters_png, "width": layer.filters_size[0],
                   "height": layer.filters_size[1], "view": layer.filter_view,
                   "scale": layer.filter_scale, "strongest_input": layer.strongest_input,
                   "inputs": layer.spec.in_channels // max(1, layer.spec.groups),
                   "kernel": list(layer.spec.kernel)}
        if layer.filter_layout is not None:
            filters.update(cols=layer.filter_layout.cols, gap=layer.filter_layout.gap,
                           tile_width=layer.filter_layout.tile_width,
                           tile_height=layer.filter_layout.tile_height)
    return {
        "name": layer.name,
        "page": layer.page,
        "channels": layout.channels,
        "grid": {"src": layer.activation_png, "width": layout.width, "height": layout.height,
                 "cols": layout.cols, "gap": layout.gap, "tile_width": layout.tile_width,
                 "tile_height": layout.tile_height},
        "map": list(layer.map_size),
        "scale": display_scale(layout.tile_width, layout.tile_height),
        "grey": options.get("cmap") in ("gray", "grey"),
        "input": input_png,
        "filters": filters,
        "mean": _rounded(channels["channel_mean"]),
        "max": _rounded(channels["channel_max"]),
        "positive": _rounded(channels["channel_fraction_positive"]),
        "ranking": entry["ranking"],
    }
