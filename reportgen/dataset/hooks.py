"""The forward-hook side of a dataset run: as little work per conv output as possible.

Inside the hook, per layer: two reductions over the activation (column maxima and minima, read
in place, never copied), the spatial maxima and minima from those, and the peak (trough)
positions of only those maps whose image can still enter the channel's top-k (bottom-k).
Everything else (keys, the topk merges, statistics, the quantile sample) runs once per batch
on all layers' channels side by side, so its cost does not grow with the number of layers
(MobileNetV2: 52 convs, 17,056 channels, two topks).
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from reportgen.dataset.decode import Batch
from reportgen.dataset.files import DatasetFiles
from reportgen.dataset.layer import LayerState
from reportgen.dataset.stats import priority
from reportgen.dataset.topk import sort_keys
from reportgen.errors import ReportError
from reportgen.forward.device import laid_out
from reportgen.forward.hooks import record_name


@dataclass(frozen=True)
class _Slot:
    """Where a layer's channels sit in the combined state."""

    module: str
    start: int
    stop: int
    map_size: tuple[int, int]


@dataclass(frozen=True)
class _Found:
    """Flat positions of some maps' extreme values."""

    images: torch.Tensor  # (n,) batch rows whose position was found
    channels: torch.Tensor  # (n,) layer channels
    positions: torch.Tensor  # (n,) flat positions


@dataclass(frozen=True)
class _Seen:
    """One layer's contribution to the current batch."""

    name: str
    module: str
    map_size: tuple[int, int]
    scores: torch.Tensor  # (B, C) float32
    peaks: _Found  # where the maxima are, for the maps that may enter the top-k
    troughs: torch.Tensor  # (B, C) float32 spatial minima of the conv output
    lows: _Found  # where the minima are, for the maps that may enter the bottom-k
    keys: torch.Tensor  # (B, C) int64 top-k keys of the scores (made once per batch)
    low_keys: torch.Tensor  # (B, C) the same of the negated minima


class Miner:
    """The hook callback of a dataset run, and the per-batch merge after each forward pass.

    :func:`reportgen.dataset.mine.mine` drives it; it is public for callers that bring
    their own batches (a benchmark over decoded images, a distributed worker): inside
    ``ConvHooks(model, miner, names)``, call :meth:`run` per :class:`Batch`, then read
    :meth:`states`.
    """

    def __init__(self, layers: dict[str, LayerState], *, k: int, rectify: bool,
                 sample_size: int, device: torch.device) -> None:
        self.k = k
        self.rectify = rectify
        self.sample_size = sample_size
        self.device = device
        self.slots: dict[str, _Slot] = {}
        self.combined: LayerState | None = None
        if layers:
            start = 0
            for name, layer in layers.items():
                self.slots[name] = _Slot(layer.module, start, start + layer.channels,
                                         layer.map_size)
                start += layer.channels
            self.combined = LayerState.combine(list(layers.values()), device)
        self._calls: dict[str, int] = {}
        self._seen: list[_Seen] = []
        self._images = torch.empty(0, dtype=torch.int64)
        self._indices = self._images
        self._threshold = torch.empty(0, dtype=torch.int64)
        self._low_threshold = self._threshold

    def states(self) -> dict[str, LayerState]:
        """Each layer's state, in forward order (views into the combined state)."""
        if self.combined is None:
            return {}
        return {name: self.combined.part(name, slot.module, slot.start, slot.stop,
                                         slot.map_size) for name, slot in self.slots.items()}

    def run(self, model: nn.Module, batch: Batch, files: DatasetFiles) -> None:
        """One forward pass over the batch's decoded images, then one merge for all layers."""
        self.run_prioritised(model, batch, np.array(
            [priority(files.paths[i]) for i in batch.indices.tolist()], dtype=np.int64))

    def run_prioritised(self, model: nn.Module, batch: Batch, priorities: np.ndarray) -> None:
        """:meth:`run` with the images' sampling priorities given (a distributed worker
        computes them where the paths are, and need not hold the whole file list)."""
        if not batch.images.shape[0]:
            return
        self._calls, self._seen = {}, []
        self._indices = batch.indices  # on the CPU, for the quantile sample
        self._images = batch.indices.to(self.device)
        if self.combined is not None:  # the last kept key of every channel, before this batch
            self._threshold = self.combined.top.keys[:, -1]
            self._low_threshold = self.combined.bottom.keys[:, -1]
        with torch.no_grad():
            model(laid_out(batch.images.to(self.device), model))
        self._merge(priorities)

    def __call__(self, name: str, call: int, module: nn.Module, output: torch.Tensor) -> None:
        # ConvHooks counts calls over the whole run; a module's n-th call *in this batch*
        # is what names it (``layer@2``), as in the single-image report.
        nth = self._calls[name] = self._calls.get(name, 0) + 1
        recorded = record_name(name, nth)
        output = output.detach()
        columns = column_maxima(output)  # (B, C, W)
        peaks = columns.amax(dim=2)  # (B, C), in the output's dtype
        raw = peaks.float()
        scores = raw.clamp_min(0) if self.rectify else raw
        # The most inhibiting images: lowest minimum of the conv output, rectified or not.
        low_columns = column_minima(output)
        lows = low_columns.amin(dim=2)
        troughs = lows.float()
        slot = self.slots.get(recorded)
        # The keys, made once: they pick the maps worth locating and the merge reuses them.
        keys = sort_keys(scores, self._images[:, None])
        low_keys = sort_keys(-troughs, self._images[:, None])
        rows, channels = self._candidates(keys, self._threshold, slot)
        positions = first_peaks(output, columns, peaks, rows, channels)
        if self.rectify:  # a rectified map whose maximum is <= 0 shows zeros: first is (0, 0)
            positions = torch.where(raw[rows, channels] > 0, positions, 0)
        low_rows, low_channels = self._candidates(low_keys, self._low_threshold, slot)
        low_positions = first_peaks(output, low_columns, lows, low_rows, low_channels)
        self._seen.append(_Seen(recorded, name, (int(output.shape[2]), int(output.shape[3])),
                                scores, _Found(rows, channels, positions), troughs,
                                _Found(low_rows, low_channels, low_positions), keys, low_keys))

    def _candidates(self, keys: torch.Tensor, threshold: torch.Tensor,
                    slot: _Slot | None) -> tuple[torch.Tensor, torch.Tensor]:
        """(rows, channels) of the maps that can enter a ranking and so need a position.

        On the first batch all of them, later those whose key beats the channel's last kept
        one so far (keys, not scores, so that a dead channel's equal maxima do not all qualify
        again and again). Also keeping only the batch's own k best per channel cost more
        than it saved.
        """
        if slot is None or self.combined is None:
            wanted = torch.ones_like(keys, dtype=torch.bool)
        else:
            wanted = keys > threshold[slot.start:slot.stop]
        rows, channels = wanted.nonzero(as_tuple=True)
        return rows, channels

    def _merge(self, priorities: np.ndarray) -> None:
        if self.combined is None:
            start = 0
            for seen in self._seen:
                channels = int(seen.scores.shape[1])
                self.slots[seen.name] = _Slot(seen.module, start, start + channels,
                                              seen.map_size)
                start += channels
            self.combined = LayerState.new("*", "*", start, (0, 0), k=self.k,
                                           sample_size=self.sample_size, device=self.device)
        if [seen.name for seen in self._seen] != list(self.slots):
            raise ReportError("The model ran different conv layers on this batch than on the "
                              "first one; a dataset run needs the same layers every time.")
        scores = torch.cat([seen.scores for seen in self._seen], dim=1)
        troughs = torch.cat([seen.troughs for seen in self._seen], dim=1)
        positions = self._dense([(seen.name, seen.peaks) for seen in self._seen], scores.shape)
        low_positions = self._dense([(seen.name, seen.lows) for seen in self._seen],
                                    scores.shape)
        self.combined.update(scores, self._indices, priorities,
                             lambda rows, channels: positions[rows, channels], troughs,
                             lambda rows, channels: low_positions[rows, channels],
                             keys=(torch.cat([seen.keys for seen in self._seen], dim=1),
                                   torch.cat([seen.low_keys for seen in self._seen], dim=1)))
        self._seen = []

    def _dense(self, found: list[tuple[str, _Found]], shape: torch.Size) -> torch.Tensor:
        """The layers' found positions in one (B, all channels) tensor (zeros elsewhere)."""
        positions = torch.zeros(shape, dtype=torch.int64, device=self.device)
        positions[torch.cat([item.images for _, item in found]),
                  torch.cat([item.channels + self.slots[name].start
                             for name, item in found])] = torch.cat(
            [item.positions for _, item in found])
        return positions


def column_maxima(output: torch.Tensor) -> torch.Tensor:
    """(B, C, W): each map column's maximum, in one pass over the activation, read in place.

    Reduced in memory order: on a channels-last (B, H, W, C) activation, the maximum over H
    of the (B, H, W*C) view is a plain vertical max over contiguous rows, the cheapest
    reduction there is (MobileNetV2's widest conv, batch 16, one thread: 10 ms, against 12
    for the maximum over H*W and 70-110 for ``amax(dim=3)`` or ``argmax``, which stride
    through memory). The map's maximum follows from the W column maxima, and so does the
    column its first occurrence is in.
    """
    return _columns(output, torch.amax)


def column_minima(output: torch.Tensor) -> torch.Tensor:
    """(B, C, W): each map column's minimum, as :func:`column_maxima` reads the maxima."""
    return _columns(output, torch.amin)


def _columns(output: torch.Tensor, reduce: Callable[..., torch.Tensor]) -> torch.Tensor:
    batch, count, height, width = output.shape
    if output.is_contiguous(memory_format=torch.channels_last) and not output.is_contiguous():
        columns = reduce(output.permute(0, 2, 3, 1).reshape(batch, height, width * count), dim=1)
        return columns.view(batch, width, count).permute(0, 2, 1)
    return reduce(output, dim=2)


def first_peaks(output: torch.Tensor, columns_max: torch.Tensor, peaks: torch.Tensor,
                images: torch.Tensor, channels: torch.Tensor) -> torch.Tensor:
    """Flat (y * W + x) position of the first maximum, in row-major order, of some maps
    (or of the first minimum, given column minima and the maps' minima as ``peaks``).

    When one column holds the maximum, the first row of that column holding it is the
    answer: H + W values read per map. Maps whose maximum sits in several columns (ties,
    e.g. a constant map) are searched whole, in row-major order.
    """
    if not images.numel():
        return images
    width = int(output.shape[3])
    target = peaks[images, channels]
    candidates = columns_max[images, channels] == target[:, None]  # (n, W)
    x = candidates.to(torch.uint8).argmax(dim=1)
    column = output[images, channels, :, x]  # (n, H)
    y = (column == target[:, None]).to(torch.uint8).argmax(dim=1)
    found = y * width + x
    tied = (candidates.sum(dim=1) > 1).nonzero().flatten()
    if tied.numel():
        maps = output[images[tied], channels[tied]].flatten(1)
        found[tied] = (maps == target[tied, None]).to(torch.uint8).argmax(dim=1)
    return found
