"""Everything one conv layer accumulates over a dataset, in O(channels x (k + sample)) memory.

:class:`LayerState` is updated batch by batch during a run and merged with :meth:`merge`
when partial runs over disjoint image sets (resumed runs, separate workers) are combined;
both give the same top-k and the same sample as one uninterrupted run.

Each ranking keeps one image more than it shows (``k + 1``): whether the k-th shown image
ties with an image that is not shown is then known exactly, so a page can say so rather than
present an order that is only the files' order. Beside the top-k of the spatial maxima runs a
bottom-k of the spatial minima of the conv output (the most *inhibiting* images, Lucid's
negative view): a :class:`TopK` of the negated minima, so it merges and resumes the same way.
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from reportgen.dataset.stats import ChannelStats, QuantileSample, picked
from reportgen.dataset.topk import Locate, TopK, key_images, key_scores

QUANTILES = (0.5, 0.9, 0.99)


@dataclass(frozen=True)
class Example:
    """One of a channel's top images: its index, the score and where in the map it peaked."""

    image: int
    score: float
    y: int
    x: int


@dataclass(frozen=True)
class Ranking:
    """A channel's shown examples and which of them tie (so their order says nothing).

    ``examples`` is empty for a channel whose peaks are all equal over the dataset
    (``constant``: a dead channel's zeros, say); ``ties`` lists runs ``(first, last)`` of
    shown ranks with exactly equal scores, ``beyond`` whether the last shown one ties with an
    image that is not shown.
    """

    examples: list[Example]
    ties: list[tuple[int, int]]
    beyond: bool
    constant: bool = False


@dataclass(frozen=True)
class ChannelSummary:
    """What the dataset as a whole does to one channel (statistics of the spatial maxima)."""

    count: int
    mean: float
    min: float
    max: float
    p50: float
    p90: float
    p99: float


@dataclass
class LayerState:
    """The running top-k and bottom-k, statistics and quantile sample of one conv call.

    ``name`` is the recorded name (``layer`` or ``layer@2`` for a module's second call),
    ``module`` its module path, ``map_size`` the (height, width) of its output map. ``top``
    holds the k + 1 highest spatial maxima, ``bottom`` the k + 1 lowest spatial minima (as
    keys of the negated minima).
    """

    name: str
    module: str
    channels: int
    map_size: tuple[int, int]
    top: TopK
    bottom: TopK
    stats: ChannelStats
    sample: QuantileSample

    @classmethod
    def new(cls, name: str, module: str, channels: int, map_size: tuple[int, int], *, k: int,
            sample_size: int, device: torch.device | str = "cpu") -> LayerState:
        return cls(name, module, channels, map_size, TopK.empty(channels, k + 1, device),
                   TopK.empty(channels, k + 1, device), ChannelStats.empty(channels, device),
                   QuantileSample.empty(channels, sample_size, device))

    @property
    def k(self) -> int:
        """How many examples a channel shows (one fewer than a ranking keeps)."""
        return self.top.k - 1

    def update(self, scores: torch.Tensor, images: torch.Tensor, priorities: np.ndarray,
               locate: Locate, troughs: torch.Tensor, locate_trough: Locate,
               keys: tuple[torch.Tensor, torch.Tensor] | None = None) -> None:
        """Add one batch: (B, C) spatial maxima and minima of the images with global indices
        ``images``; ``locate`` and ``locate_trough`` find where they are. ``keys``: the top-k
        keys of the maxima and of the negated minima, when the caller has made them already
        (the miner's hooks do, to pick the maps worth locating)."""
        images_here = images.to(scores.device)
        top_keys, bottom_keys = keys if keys is not None else (None, None)
        self.top = self.top.update(scores, images_here, locate, top_keys)
        self.bottom = self.bottom.update(-troughs, images_here, locate_trough, bottom_keys)
        self.stats.update(scores)
        self.sample.update(priorities, images.cpu().numpy(), scores)

    def to(self, device: torch.device | str) -> LayerState:
        """The same state on ``device``. A run on a GPU hands its result to the CPU once
        here; reading 17,056 channels' examples one by one from the GPU would be two small
        copies, each a synchronisation, per channel."""
        top, bottom, stats, sample = self.top, self.bottom, self.stats, self.sample
        return LayerState(
            self.name, self.module, self.channels, self.map_size,
            TopK(top.keys.to(device), top.positions.to(device)),
            TopK(bottom.keys.to(device), bottom.positions.to(device)),
            ChannelStats(stats.count, stats.sums.to(device), stats.mins.to(device),
                         stats.maxs.to(device)),
            QuantileSample(sample.capacity, sample.size, sample.priorities, sample.images,
                           sample.scores.to(device)))

    def merge(self, other: LayerState) -> LayerState:
        """The state of both image sets together (they must not share images)."""
        if (self.name, self.channels, self.map_size) != (other.name, other.channels,
                                                         other.map_size):
            raise ValueError(f"cannot merge layer {other.name} {other.map_size} into "
                             f"{self.name} {self.map_size}")
        return LayerState(self.name, self.module, self.channels, self.map_size,
                          self.top.merge(other.top), self.bottom.merge(other.bottom),
                          self.stats.merge(other.stats), self.sample.merge(other.sample))

    def part(self, name: str, module: str, start: int, stop: int,
             map_size: tuple[int, int]) -> LayerState:
        """Channels [start, stop) as a layer of their own (views, not copies).

        A run keeps all layers in one combined state, so that each batch costs one topk and
        one sample update rather than one per layer; this cuts a layer back out of it.
        """
        top = TopK(self.top.keys[start:stop], self.top.positions[start:stop])
        bottom = TopK(self.bottom.keys[start:stop], self.bottom.positions[start:stop])
        stats = ChannelStats(self.stats.count, self.stats.sums[start:stop],
                             self.stats.mins[start:stop], self.stats.maxs[start:stop])
        sample = QuantileSample(self.sample.capacity, self.sample.size, self.sample.priorities,
                                self.sample.images, self.sample.scores[:, start:stop])
        return LayerState(name, module, stop - start, map_size, top, bottom, stats, sample)

    @classmethod
    def combine(cls, layers: Sequence[LayerState],
                device: torch.device | str = "cpu") -> LayerState:
        """The layers' channels side by side; they must come from one run (same images)."""
        first = layers[0]
        for layer in layers[1:]:
            if (layer.stats.count != first.stats.count or layer.sample.size != first.sample.size
                    or not np.array_equal(layer.sample.images[:layer.sample.size],
                                          first.sample.images[:first.sample.size])):
                raise ValueError(f"layer {layer.name} is not from the same run as {first.name}")
        size = first.sample.size
        sample = QuantileSample.empty(sum(layer.channels for layer in layers),
                                      first.sample.capacity, device)
        sample.priorities[:size] = first.sample.priorities[:size]
        sample.images[:size] = first.sample.images[:size]
        sample.scores[:size] = torch.cat([layer.sample.scores[:size].to(device)
                                          for layer in layers], dim=1)
        sample.size = size
        top, bottom = (TopK(torch.cat([getattr(layer, side).keys.to(device) for layer in layers]),
                            torch.cat([getattr(layer, side).positions.to(device)
                                       for layer in layers]))
                       for side in ("top", "bottom"))
        stats = ChannelStats(first.stats.count,
                             torch.cat([layer.stats.sums.to(device) for layer in layers]),
                             torch.cat([layer.stats.mins.to(device) for layer in layers]),
                             torch.cat([layer.stats.maxs.to(device) for layer in layers]))
        return cls("*", "*", sample.scores.shape[1], (0, 0), top, bottom, stats, sample)

    def examples(self, channel: int) -> list[Example]:
        """The channel's top images, best first (fewer than k when the dataset is small);
        none when every image peaks at the same value (:meth:`constant`)."""
        return self.ranking(channel).examples

    def constant(self, channel: int) -> bool:
        """Whether all of the dataset's images (two or more) peak at exactly the same value:
        then no image excites the channel more than another, and nothing is ranked."""
        return (self.stats.count > 1 and
                bool(self.stats.mins[channel] == self.stats.maxs[channel]))

    def ranking(self, channel: int) -> Ranking:
        """The top images with their ties (see :class:`Ranking`)."""
        if self.constant(channel):
            return Ranking([], [], False, constant=True)
        kept = self._kept(self.top, channel, 1.0)
        return _ranked(kept, self.k)

    def inhibiting(self, channel: int) -> Ranking:
        """The images whose map goes lowest below zero, lowest first (their ``score`` is the
        spatial minimum of the conv output, where it is); none where no map goes below 0."""
        kept = [example for example in self._kept(self.bottom, channel, -1.0)
                if example.score < 0]
        return _ranked(kept, self.k)

    def _kept(self, ranking: TopK, channel: int, sign: float) -> list[Example]:
        keys = ranking.keys[channel].cpu()
        positions = ranking.positions[channel].cpu().tolist()
        width = self.map_size[1]
        found = []
        for image, score, position in zip(key_images(keys).tolist(),
                                          key_scores(keys).tolist(), positions, strict=False):
            if image >= 0:
                found.append(Example(image, sign * score + 0.0, position // width,
                                     position % width))
        return found

    def quantiles(self, levels: Sequence[float] = QUANTILES) -> torch.Tensor:
        """(len(levels), C) float64: see :mod:`reportgen.dataset.stats` for the error bound."""
        return self.sample.quantiles(levels)

    def summaries(self) -> list[ChannelSummary]:
        """One :class:`ChannelSummary` per channel, computed in one sort."""
        q = self.quantiles(QUANTILES).tolist()
        mean = self.stats.mean.tolist()
        low, high = self.stats.mins.tolist(), self.stats.maxs.tolist()
        return [ChannelSummary(self.stats.count, mean[c], low[c], high[c], q[0][c], q[1][c],
                               q[2][c]) for c in range(self.channels)]

    def percentile(self, channel: int, value: float) -> float:
        """The percentage of the dataset's images whose score in ``channel`` is below ``value``.

        Exact when ``value`` beats the k-th best score (the top-k holds every image above
        it) or when the sample holds every image; otherwise from the sample, within the
        rank error of :func:`reportgen.dataset.stats.rank_error`.
        """
        return self.percentiles([value], range(channel, channel + 1))[0]

    def percentiles(self, values: Sequence[float],
                    channels: Sequence[int] | None = None) -> list[float]:
        """:meth:`percentile` of each channel (or of ``channels``) at its value, in one go."""
        count = self.stats.count
        if not count:
            return [math.nan] * len(values)
        rows = picked(channels)
        keys = self.top.keys.cpu()[rows]
        scores, known = key_scores(keys), key_images(keys) >= 0
        # As a Python number is compared with a float32 tensor: in float32 (the k-th best
        # score below is compared in float64, as a Python float).
        above = ((scores >= torch.tensor(values, dtype=scores.dtype)[:, None]) & known).sum(
            dim=1).tolist()
        found, last = known.sum(dim=1).tolist(), scores[:, -1].tolist()
        sampled = self.sample.shares_below(values, channels)
        # Every image ties (a dead channel): there is no rank to place the image at.
        tied = ((self.stats.mins.cpu()[rows] == self.stats.maxs.cpu()[rows])
                & (count > 1)).tolist()
        return [math.nan if constant else 100.0 * (count - hits) / count
                if many == count or (many == self.top.k and value > kth)
                else min(100.0, 100.0 * share)
                for value, many, hits, kth, share, constant in zip(
                    values, found, above, last, sampled, tied, strict=True)]

    def to_state(self) -> dict[str, Any]:
        """Plain tensors and numbers, for ``torch.save`` / ``torch.load(weights_only=True)``."""
        sample, size = self.sample, self.sample.size
        # Copies: a layer may be a view into a run's combined state (see part()), and
        # torch.save would otherwise write the whole underlying storage.
        return {"name": self.name, "module": self.module, "channels": self.channels,
                "map_size": list(self.map_size), "keys": self.top.keys.cpu().clone(),
                "positions": self.top.positions.cpu().clone(),
                "bottom_keys": self.bottom.keys.cpu().clone(),
                "bottom_positions": self.bottom.positions.cpu().clone(), "count": self.stats.count,
                "sums": self.stats.sums.cpu().clone(), "mins": self.stats.mins.cpu().clone(),
                "maxs": self.stats.maxs.cpu().clone(), "capacity": sample.capacity,
                "priorities": torch.from_numpy(sample.priorities[:size].copy()),
                "images": torch.from_numpy(sample.images[:size].copy()),
                "scores": sample.scores[:size].cpu().clone()}

    @classmethod
    def from_state(cls, data: dict[str, Any],
                   device: torch.device | str = "cpu") -> LayerState:
        channels = int(data["channels"])
        sample = QuantileSample.empty(channels, int(data["capacity"]), device)
        size = int(data["priorities"].shape[0])
        sample.priorities[:size] = data["priorities"].numpy()
        sample.images[:size] = data["images"].numpy()
        sample.scores[:size] = data["scores"].to(device)
        sample.size = size
        height, width = data["map_size"]
        return cls(str(data["name"]), str(data["module"]), channels, (int(height), int(width)),
                   TopK(data["keys"].to(device), data["positions"].to(device)),
                   TopK(data["bottom_keys"].to(device), data["bottom_positions"].to(device)),
                   ChannelStats(int(data["count"]), data["sums"].to(device),
                                data["mins"].to(device), data["maxs"].to(device)), sample)


def _ranked(kept: list[Example], shown: int) -> Ranking:
    """The first ``shown`` of ``kept`` (a ranking of ``shown + 1``), with their ties."""
    examples = kept[:shown]
    ties: list[tuple[int, int]] = []
    first = 0
    for rank in range(1, len(examples) + 1):
        if rank == len(examples) or examples[rank].score != examples[first].score:
            if rank - 1 > first:
                ties.append((first, rank - 1))
            first = rank
    beyond = 0 < shown < len(kept) and kept[shown].score == kept[shown - 1].score
    return Ranking(examples, ties, beyond)
