"""What happens to each conv output the moment it is computed.

Inside the forward hook we compute the statistics, shrink, normalise and tile the maps, and
hand the picture to the PNG pool. Nothing of the full-size activation is kept, so peak memory
does not grow with the number of layers, and an in-place ReLU that runs after the hook cannot
alter what the report shows. Other layers chosen with ``--layers`` go the same way once
:mod:`reportgen.forward.features` has read their output as maps; those it cannot read are
listed in ``skipped``.
"""
from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from torch import nn

from reportgen.forward.capture import ActivationPicture, Capture, ImageActivation
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
from reportgen.pictures.ranges import dataset_range, grey_levels, picture_range
from reportgen.sitelayout import IMAGE_DIR, activation_png, new_slugs, slugify


class ActivationRecorder:
    """The forward-hook callback: one PNG and one :class:`Capture` per conv call."""

    def __init__(self, site: Path, writer: PngWriter, options: BuildOptions,
                 on_layer: Callable[[], object] | None = None,
                 dataset_peaks: dict[str, torch.Tensor] | None = None,
                 input_hw: tuple[int, int] | None = None, batch_size: int = 1) -> None:
        self.site = site
        self.writer = writer
        self.normalize = options.normalize
        self.lut: np.ndarray | None = colormap_lut(options.cmap)
        self.rectify = options.rectify
        self.tile_cap = options.tile_cap
        self.captures: list[Capture] = []
        self.skipped: list[tuple[str, str]] = []  # (layer, why its output cannot be shown)
        self.input_hw = input_hw  # tells channels-last maps from channels-first ones
        self.batch_size = batch_size  # images in the forward pass: an output's first dim
        self.on_layer = on_layer
        #: Per layer (recorded name), each channel's dataset peak, for --normalize dataset.
        self.dataset_peaks = dataset_peaks or {}
        self.seconds = 0.0
        self._slugs = new_slugs()
        (site / IMAGE_DIR).mkdir(exist_ok=True)

    def __call__(self, name: str, call: int, module: nn.Module, output: torch.Tensor) -> None:
        started = time.perf_counter()
        full_name = record_name(name, call)
        spec: ConvSpec | FeatureSpec
        if isinstance(module, nn.Conv2d):
            spec, raw = ConvSpec.of(name, module), output
        else:
            view = read_feature_map(output, self.input_hw, self.batch_size)
            if not isinstance(view, FeatureView):
                self.skipped.append((full_name, view))
                self.seconds += time.perf_counter() - started
                return
            spec, raw = feature_spec(name, module, view), view.batch
        # One map stack per image, in the layout the model produced (channels-last for
        # torchvision's models); derived tensors only, never aliases kept past this call.
        batch = raw.detach().float()
        if self.rectify:
            batch = batch.clamp_min(0)
        stats = [activation_stats(maps) for maps in batch]
        shown = shrink_to_cap(batch, self.tile_cap)
        # Several images share one range per channel, so their pictures can be compared; a
        # channel is drawn flat only when it is flat on every image.
        flat = torch.tensor([all(s.channel_flat[k] for s in stats)
                             for k in range(batch.shape[1])])
        maps_shown = shown if len(stats) > 1 else shown[0]
        if self.normalize == "dataset":
            low, high = dataset_range(maps_shown, self.dataset_peaks[full_name], flat)
        else:
            low, high = picture_range(maps_shown, self.normalize, flat)
        slug = slugify(full_name, self._slugs)
        layout = GridLayout.for_channels(shown.shape[1], shown.shape[2], shown.shape[3])
        views = []
        for number, (maps, numbers) in enumerate(zip(shown, stats, strict=True)):
            grid = tile(grey_levels(maps, low, high), layout)
            if self.lut is not None:
                grid = colorize(grid, self.lut, gap_mask(layout))
            png = activation_png(slug, number)
            self.writer.submit(grid, self.site / png)
            views.append(ImageActivation(png, numbers))
        map_size = (int(batch.shape[2]), int(batch.shape[3]))
        picture = ActivationPicture(views[0].png, layout, map_size,
                                    shrunk=tuple(shown.shape[2:]) != map_size,
                                    low=rounded(low), high=rounded(high))
        self.captures.append(Capture(len(self.captures), full_name, name, call, slug,
                                     spec, stats[0], picture, views))
        self.seconds += time.perf_counter() - started
        if self.on_layer is not None:
            self.on_layer()
