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
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from reportgen.forward.hooks import ConvSpec
from reportgen.options import BuildOptions
from reportgen.pictures.colormaps import is_grey
from reportgen.report.model import ImageActivation, InputRecord, LayerRecord

if TYPE_CHECKING:  # the dataset package builds on the report model; only its types are needed
    from reportgen.dataset.crops import CroppedExample

#: Tiles are shown at an integer zoom that makes them at least this many CSS pixels, so a
#: 7x7 map is not a speck and a 112x112 map is not blown up.
MIN_TILE_DISPLAY = 64
STAT_DIGITS = 4
#: The value scale's ends are shown to 3 significant digits (report.js ``fmt``): no more sent.
SCALE_DIGITS = 3


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
    entries: list[TocGroup | TocEntry] = field(default_factory=list)

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


def _rounded(values: Sequence[float | None], digits: int = STAT_DIGITS) -> list[float | None]:
    return [None if v is None or not math.isfinite(v) else float(f"{v:.{digits}g}")
            for v in values]


#: The fields of one dataset example, in the order of its row in the page's data: the image
#: and the sprite sheet are indices into the layer's lists, the crop is in the sheet.
EXAMPLE_FIELDS = ("image", "score", "y", "x", "sheet", "crop_x", "crop_y", "crop_width",
                  "crop_height")
#: The fields of one channel's feature visualisation: its crop of a sheet, and the objective.
FEATURE_VIS_FIELDS = ("sheet", "crop_x", "crop_y", "crop_width", "crop_height", "objective")


def _dataset_view(layer: LayerRecord) -> dict[str, Any] | None:
    """Each channel's top and most inhibiting examples as rows of ``EXAMPLE_FIELDS``, named
    once in ``fields`` (rows of numbers rather than objects keep a 1,280-channel layer with
    k = 9 a few hundred KB in its page; the names keep the page's script from reading them by
    position), and per channel the notes on what their order cannot claim."""
    if layer.dataset is None:
        return None
    images: dict[str, int] = {}
    sheets: dict[str, int] = {}

    def rows(examples: list[CroppedExample]) -> list[list[Any]]:
        found = []
        for example in examples:
            crop = example.crop
            image = images.setdefault(example.image, len(images))
            sheet = sheets.setdefault(crop.src, len(sheets))
            found.append([image, float(f"{example.score:.4g}"), example.y, example.x, sheet,
                          crop.x, crop.y, crop.width, crop.height])
        return found

    channels = [rows(examples) for examples in layer.dataset.examples]
    inhibiting = [rows(examples) for examples in layer.dataset.inhibiting]
    summaries = layer.dataset.summaries
    return {"images": list(images), "fields": list(EXAMPLE_FIELDS), "examples": channels,
            "inhibiting": inhibiting, "notes": [list(notes) for notes in layer.dataset.notes],
            "sheets": [{"src": src, "width": layer.dataset.sheets[src][0],
                        "height": layer.dataset.sheets[src][1]} for src in sheets],
            "p50": _rounded([s.p50 for s in summaries]),
            "p99": _rounded([s.p99 for s in summaries]),
            "max": _rounded([s.max for s in summaries]),
            "percentile": _rounded(layer.dataset.percentile)}  # NaN would break the JSON


def _feature_vis_view(layer: LayerRecord) -> dict[str, Any] | None:
    """Sheets as a list (paths stay JSON values, which the single-file writer rewrites) and
    per channel a row of ``FEATURE_VIS_FIELDS``, named once in ``fields``."""
    if layer.feature_vis is None:
        return None
    sources = list(layer.feature_vis.sheets)
    return {"sheets": [{"src": src, "width": layer.feature_vis.sheets[src][0],
                        "height": layer.feature_vis.sheets[src][1]} for src in sources],
            "fields": list(FEATURE_VIS_FIELDS),
            "channels": {channel: [sources.index(item["crop"]["src"]), item["crop"]["x"],
                                   item["crop"]["y"], item["crop"]["width"],
                                   item["crop"]["height"], float(f"{item['objective']:.4g}")]
                         for channel, item in layer.feature_vis.channels.items()}}


def _image_view(view: InputRecord, image: ImageActivation) -> dict[str, Any]:
    """One input image as a layer page shows it: its input and top predictions (for the
    sidebar), its grid picture, its per-channel numbers and the manifest's rankings of them."""
    stats = image.stats
    return {"name": str(view.image.get("source", "")), "input": view.png, "grid": image.png,
            "predictions": [{"label": p.label, "probability": round(p.probability, 4)}
                            for p in view.predictions],
            "mean": _rounded(stats.channel_mean), "max": _rounded(stats.channel_max),
            "positive": _rounded(stats.channel_fraction_positive),
            "flat": [int(flat) for flat in stats.channel_flat], "ranking": image.ranking}


def layer_data(layer: LayerRecord, options: BuildOptions,
               inputs: Sequence[InputRecord]) -> dict[str, Any]:
    """The page's embedded index: where each channel's tile is, and each image's numbers.

    Every image (one for most reports) is in ``images`` once, the first included; the
    rankings are the records' own, which the manifest writes too, so the page ranks channels
    exactly as the manifest does, ties included. ``low`` and ``high`` are the values each
    channel's picture draws at the colormap's two ends (shared by all the images), as shown.
    """
    layout = layer.activation.layout
    pictures = layer.filters
    filters: dict[str, Any] | None = None
    if pictures is not None and pictures.png and isinstance(layer.spec, ConvSpec):
        filters = {"src": pictures.png, "width": pictures.size[0],
                   "height": pictures.size[1], "view": pictures.view,
                   "scale": pictures.scale, "strongest_input": pictures.strongest_input,
                   "inputs": layer.spec.in_channels // max(1, layer.spec.groups),
                   "kernel": list(layer.spec.kernel)}
        if pictures.layout is not None:
            filters.update(cols=pictures.layout.cols, gap=pictures.layout.gap,
                           tile_width=pictures.layout.tile_width,
                           tile_height=pictures.layout.tile_height)
    why = layer.attribution
    return {
        "name": layer.name,
        "page": layer.page,
        "channels": layout.channels,
        "grid": {"width": layout.width, "height": layout.height,
                 "cols": layout.cols, "gap": layout.gap, "tile_width": layout.tile_width,
                 "tile_height": layout.tile_height},
        "map": list(layer.map_size),
        "scale": display_scale(layout.tile_width, layout.tile_height),
        "grey": is_grey(options.cmap),
        "low": _rounded(layer.activation.low, SCALE_DIGITS),
        "high": _rounded(layer.activation.high, SCALE_DIGITS),
        "filters": filters,
        "images": [_image_view(view, image)
                   for view, image in zip(inputs, layer.images, strict=True)],
        "dataset": _dataset_view(layer),
        "feature_vis": _feature_vis_view(layer),
        "contribution": None if why is None else {
            "values": _rounded(why.contribution), "ranking": layer.ranking["contribution"]},
    }
