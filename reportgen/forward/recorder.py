"""What happens to each conv output the moment it is computed.

Inside the forward hook we compute the statistics, shrink, normalise and tile the maps, and
hand the picture to the PNG pool. Nothing of the full-size activation is kept, so peak memory
does not grow with the number of layers, and an in-place ReLU that runs after the hook cannot
alter what the report shows. Other layers chosen with ``--layers`` go the same way once
:mod:`reportgen.forward.features` has read their output as maps; those it cannot read are
listed in ``skipped``.
"""
from __future__ import annotations

import re
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from torch import nn

from reportgen.forward.features import FeatureSpec, FeatureView, feature_spec, read_feature_map
from reportgen.forward.hooks import ConvSpec, record_name
from reportgen.forward.stats import activation_stats, rounded
from reportgen.options import BuildOptions
from reportgen.pictures.colormaps import colormap_lut
from reportgen.pictures.grids import (
    GridLayout,
    colorize,
    gap_mask,
    shrink_to_cap,
    tile,
)
from reportgen.pictures.pngio import PngWriter
from reportgen.pictures.ranges import picture_range, to_uint8
from reportgen.report.model import IMAGE_DIR, ActivationPicture, Capture


def slugify(name: str, taken: set[str]) -> str:
    """A file-name-safe, unique id: never a path separator, never '..'."""
    slug = re.sub(r"[^A-Za-z0-9_.-]+", "_", name).strip("._") or "layer"
    slug = slug.replace("..", "_")
    candidate, n = slug, 2
    while candidate.lower() in taken:
        candidate, n = f"{slug}-{n}", n + 1
    taken.add(candidate.lower())
    return candidate


class ActivationRecorder:
    """The forward-hook callback: one PNG and one :class:`Capture` per conv call."""

    def __init__(self, site: Path, writer: PngWriter, options: BuildOptions,
                 on_layer: Callable[[], object] | None = None,
                 input_hw: tuple[int, int] | None = None) -> None:
        self.site = site
        self.writer = writer
        self.normalize = options.normalize
        self.lut: np.ndarray | None = colormap_lut(options.cmap)
        self.rectify = options.rectify
        self.tile_cap = options.tile_cap
        self.captures: list[Capture] = []
        self.skipped: list[tuple[str, str]] = []  # (layer, why its output cannot be shown)
        self.input_hw = input_hw  # tells channels-last maps from channels-first ones
        self.on_layer = on_layer
        self.seconds = 0.0
        self._slugs: set[str] = {"index", "input"}
        (site / IMAGE_DIR).mkdir(exist_ok=True)

    def __call__(self, name: str, call: int, module: nn.Module, output: torch.Tensor) -> None:
        started = time.perf_counter()
        full_name = record_name(name, call)
        spec: ConvSpec | FeatureSpec
        if isinstance(module, nn.Conv2d):
            spec, raw = ConvSpec.of(name, module), output
        else:
            view = read_feature_map(output, self.input_hw)
            if not isinstance(view, FeatureView):
                self.skipped.append((full_name, view))
                self.seconds += time.perf_counter() - started
                return
            spec, raw = feature_spec(name, module, view), view.batch
        # Batch of one, in the layout the model produced (channels-last for torchvision's
        # models); derived tensors only, never aliases kept past this call.
        batch = raw[:1].detach().float()
        if self.rectify:
            batch = batch.clamp_min(0)
        maps = batch[0]
        stats = activation_stats(maps)
        shown = shrink_to_cap(batch, self.tile_cap)[0]
        low, high = picture_range(shown, self.normalize, torch.tensor(stats.channel_flat))
        pixels = to_uint8(shown, low, high).cpu()
        layout = GridLayout.for_channels(pixels.shape[0], pixels.shape[1], pixels.shape[2])
        grid = tile(pixels, layout)
        if self.lut is not None:
            grid = colorize(grid, self.lut, gap_mask(layout))
        slug = slugify(full_name, self._slugs)
        png = f"{IMAGE_DIR}/{slug}-act.png"
        self.writer.submit(grid, self.site / png)
        picture = ActivationPicture(png, layout, (int(maps.shape[1]), int(maps.shape[2])),
                                    shrunk=tuple(shown.shape[1:]) != tuple(maps.shape[1:]),
                                    low=rounded(low), high=rounded(high))
        self.captures.append(Capture(len(self.captures), full_name, name, call, slug,
                                     spec, stats, picture))
        self.seconds += time.perf_counter() - started
        if self.on_layer is not None:
            self.on_layer()
