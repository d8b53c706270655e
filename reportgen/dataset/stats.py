"""Per-channel statistics of the images' spatial maxima, in memory that does not grow.

Count, mean (float64 sums), min and max are exact. Quantiles and "what share of the dataset
does this score beat" come from a *priority sample*: the ``capacity`` images whose relative
path hashes lowest (blake2b), the same images for every channel of a layer. Hash order is a
uniform random order fixed by the file names, so the sample is a simple random sample without
replacement, it does not depend on batching or on the order images arrive in, and two partial
samples merge exactly (keep the lowest hashes of the union). Order statistics of the sample
are exact; with ``N`` images and ``m`` = capacity:

* ``N <= m``: the sample is the whole dataset and every quantile is exact (numpy's "linear").
* ``N > m``: the sample quantile at level ``q`` is the population quantile at a level ``q'``
  with ``|q' - q|`` of standard deviation ``sqrt(q (1 - q) / m * (1 - m / N))``: for
  m = 1024, about 1.6 percentage points at p50, 0.94 at p90 and 0.31 at p99 (three standard
  deviations: 4.7, 2.8, 0.93). Uniformly over all levels at once, the DKW inequality bounds
  the rank error by ``sqrt(ln(2 / delta) / (2 m))`` with probability ``1 - delta``: 5.1
  points at delta = 0.01 for m = 1024. :func:`rank_error` gives this bound.

The sample costs ``4 * m * C`` bytes per layer (MobileNetV2's 17,056 channels: 70 MB).
"""
from __future__ import annotations

import hashlib
import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

DEFAULT_SAMPLE_SIZE = 1024


def priority(path: str) -> int:
    """A 63-bit hash of the relative path: the image's place in the sampling order."""
    digest = hashlib.blake2b(path.encode("utf-8", "surrogateescape"), digest_size=8).digest()
    return int.from_bytes(digest, "big") >> 1


def rank_error(sample_size: int, images: int, delta: float = 0.01) -> float:
    """A bound, holding with probability ``1 - delta``, on |q' - q| for all levels at once."""
    if images <= sample_size:
        return 0.0
    return math.sqrt(math.log(2 / delta) / (2 * sample_size))




def picked(channels: Sequence[int] | None) -> slice | list[int]:
    """Rows of a (C, ...) tensor: all (None) or a run (``range``) as a slice, which is a view
    and costs no copy; any other choice of channels as a list, which indexing copies."""
    if channels is None:
        return slice(None)
    if isinstance(channels, range) and channels.step == 1:
        return slice(channels.start, channels.stop)
    return list(channels)


@dataclass
class ChannelStats:
    """Exact count, float64 sum, min and max of the spatial maxima, per channel."""

    count: int
    sums: torch.Tensor  # (C,) float64
    mins: torch.Tensor  # (C,) float32, +inf when count is 0
    maxs: torch.Tensor  # (C,) float32, -inf when count is 0

    @classmethod
    def empty(cls, channels: int, device: torch.device | str = "cpu") -> ChannelStats:
        return cls(0, torch.zeros(channels, dtype=torch.float64, device=device),
                   torch.full((channels,), float("inf"), device=device),
                   torch.full((channels,), float("-inf"), device=device))

    def update(self, scores: torch.Tensor) -> None:
        """Add a batch of (B, C) maxima, in place."""
        if not scores.shape[0]:
            return
        self.count += int(scores.shape[0])
        self.sums += scores.double().sum(dim=0)
        self.mins = torch.minimum(self.mins, scores.amin(dim=0))
        self.maxs = torch.maximum(self.maxs, scores.amax(dim=0))

    def merge(self, other: ChannelStats) -> ChannelStats:
        device = self.sums.device
        return ChannelStats(self.count + other.count, self.sums + other.sums.to(device),
                            torch.minimum(self.mins, other.mins.to(device)),
                            torch.maximum(self.maxs, other.maxs.to(device)))

    @property
    def mean(self) -> torch.Tensor:
        return self.sums / self.count if self.count else torch.full_like(self.sums, math.nan)


@dataclass
class QuantileSample:
    """The spatial maxima of the ``capacity`` lowest-priority images, for every channel.

    ``scores`` is a preallocated (capacity, C) buffer of which the first ``size`` rows are
    used; the rows are in no particular order (order statistics sort them).
    """

    capacity: int
    size: int
    priorities: np.ndarray  # (capacity,) int64, first `size` used
    images: np.ndarray  # (capacity,) int64
    scores: torch.Tensor  # (capacity, C) float32 on the model's device

    @classmethod
    def empty(cls, channels: int, capacity: int = DEFAULT_SAMPLE_SIZE,
              device: torch.device | str = "cpu") -> QuantileSample:
        if capacity < 1:
            raise ValueError(f"sample capacity must be at least 1, not {capacity}")
        return cls(capacity, 0, np.zeros(capacity, np.int64), np.zeros(capacity, np.int64),
                   torch.zeros(capacity, channels, device=device))

    def update(self, priorities: np.ndarray, images: np.ndarray, scores: torch.Tensor) -> None:
        """Offer a batch (B priorities and images, (B, C) scores), in place.

        Only rows that enter the sample are copied; once the sample is full most batches
        change nothing (after n images, a new one enters with probability m / n).
        """
        used = self.size
        if used == self.capacity and (not len(priorities) or
                                      priorities.min() > self.priorities[:used].max()):
            return
        keep = self._keep(np.concatenate([self.priorities[:used], priorities]),
                          np.concatenate([self.images[:used], images]))
        evicted = np.flatnonzero(~keep[:used])
        incoming = np.flatnonzero(keep[used:])
        slots = np.concatenate([evicted, np.arange(used, self.capacity)])[:len(incoming)]
        if len(incoming):
            rows = torch.from_numpy(incoming).to(scores.device)
            self.scores[torch.from_numpy(slots).to(self.scores.device)] = scores[rows]
            self.priorities[slots] = priorities[incoming]
            self.images[slots] = images[incoming]
        self.size = int(keep.sum())

    def _keep(self, priorities: np.ndarray, images: np.ndarray) -> np.ndarray:
        """Which of these rows are among the ``capacity`` lowest (priority, image index)."""
        keep = np.zeros(len(priorities), dtype=bool)
        keep[np.lexsort((images, priorities))[:self.capacity]] = True
        return keep

    def merge(self, other: QuantileSample) -> QuantileSample:
        """The sample of the union of two disjoint image sets: exactly what one run keeps."""
        capacity = min(self.capacity, other.capacity)
        device = self.scores.device
        priorities = np.concatenate([self.priorities[:self.size], other.priorities[:other.size]])
        images = np.concatenate([self.images[:self.size], other.images[:other.size]])
        scores = torch.cat([self.scores[:self.size], other.scores[:other.size].to(device)])
        order = np.lexsort((images, priorities))[:capacity]
        merged = QuantileSample.empty(int(scores.shape[1]), capacity, device)
        count = len(order)
        merged.priorities[:count], merged.images[:count] = priorities[order], images[order]
        merged.scores[:count] = scores[torch.from_numpy(order).to(device)]
        merged.size = count
        return merged

    def quantiles(self, levels: Sequence[float]) -> torch.Tensor:
        """(len(levels), C) float64 order statistics, interpolated like numpy's "linear"."""
        channels = int(self.scores.shape[1])
        if not self.size:
            return torch.full((len(levels), channels), math.nan, dtype=torch.float64)
        ordered = self.scores[:self.size].double().sort(dim=0).values.cpu()
        rows = []
        for level in levels:
            place = level * (self.size - 1)
            low = int(math.floor(place))
            high = min(low + 1, self.size - 1)
            fraction = place - low
            rows.append(ordered[low] + (ordered[high] - ordered[low]) * fraction)
        return torch.stack(rows)

    def share_below(self, channel: int, value: float) -> float:
        """The fraction of sampled images whose score in ``channel`` is below ``value``."""
        return self.shares_below([value], range(channel, channel + 1))[0]

    def shares_below(self, values: Sequence[float],
                     channels: Sequence[int] | None = None) -> list[float]:
        """:meth:`share_below` of every channel (or of ``channels``) at its own value, in one
        comparison (the values in the scores' dtype, as a Python number is compared)."""
        if not self.size:
            return [math.nan] * len(values)
        columns = self.scores[:self.size, picked(channels)]
        limits = torch.tensor(values, dtype=columns.dtype)
        below = (columns.cpu() < limits).sum(dim=0).tolist()
        return [float(count) / self.size for count in below]
