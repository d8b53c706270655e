"""A running top-k per channel whose result does not depend on how the images were batched.

Each candidate is one int64 *key*: the float32 score mapped to an order-preserving int32 in
the high half, and ``2**32 - 1 - image index`` in the low half. Keys of different images
never tie, so one ``torch.topk`` over (current best ++ new batch) picks exactly the k best,
ranked by score and, among equal scores, by lower image index first. Because a key ranks the
same wherever it comes from, merging batch by batch, resuming, or merging two workers' partial
results (:meth:`TopK.merge`) all give the same k images, bit for bit.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

#: The key of an empty slot; below every real key (a real key's high half is > -2**31).
EMPTY = torch.iinfo(torch.int64).min
#: Image indices live in the low 32 bits of a key.
MAX_DATASET_IMAGES = 2 ** 32 - 1
_LOW = 0xFFFFFFFF
_FLIP = 0x7FFFFFFF

#: Given batch rows and channels (two equal-length int64 tensors), the flat (y * W + x)
#: position of each one's maximum; called only for candidates that enter the top-k.
Locate = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def sort_keys(scores: torch.Tensor, images: torch.Tensor) -> torch.Tensor:
    """int64 keys for float scores and image indices (broadcast); NaN ranks as -inf."""
    # + 0.0 turns -0.0 into +0.0: equal scores must give equal high halves.
    scores = torch.nan_to_num(scores.float() + 0.0, nan=float("-inf"), posinf=float("inf"),
                              neginf=float("-inf"))
    bits = scores.view(torch.int32)
    ordered = (bits ^ ((bits >> 31) & _FLIP)).to(torch.int64)  # negatives: flip all but sign
    return (ordered << 32) | (_LOW - images.to(torch.int64))


def key_scores(keys: torch.Tensor) -> torch.Tensor:
    """The float32 scores back from keys (NaN for empty slots)."""
    ordered = keys >> 32
    bits = torch.where(ordered < 0, ordered ^ _FLIP, ordered).to(torch.int32)
    return bits.view(torch.float32)


def key_images(keys: torch.Tensor) -> torch.Tensor:
    """The image indices back from keys (-1 for empty slots)."""
    images = _LOW - (keys & _LOW)
    return torch.where(keys == EMPTY, -1, images)


@dataclass
class TopK:
    """The k best (image, position) per channel, best first; empty slots have key EMPTY."""

    keys: torch.Tensor  # (C, k) int64, descending along k
    positions: torch.Tensor  # (C, k) int64, flat y * W + x in the layer's map, -1 when empty

    @classmethod
    def empty(cls, channels: int, k: int, device: torch.device | str = "cpu") -> TopK:
        return cls(torch.full((channels, k), EMPTY, dtype=torch.int64, device=device),
                   torch.full((channels, k), -1, dtype=torch.int64, device=device))

    @property
    def k(self) -> int:
        return int(self.keys.shape[1])

    def update(self, scores: torch.Tensor, images: torch.Tensor, locate: Locate,
               keys: torch.Tensor | None = None) -> TopK:
        """Merge a batch: ``scores`` (B, C) spatial maxima of images ``images`` (B,), whose
        ``sort_keys`` a caller that made them already passes as ``keys`` (B, C).

        Positions are looked up only for the (few) candidates that make it into the top-k,
        so the per-batch cost is one (C, k + B) topk, not an argmax over every map.
        """
        k = self.k
        batch = (sort_keys(scores, images[:, None]) if keys is None else keys).T  # (C, B)
        if not bool((batch > self.keys[:, -1:]).any()):
            return self  # nothing beats any channel's k-th best: the common case in long runs
        candidates = torch.cat([self.keys, batch], dim=1)
        keys, chosen = candidates.topk(k, dim=1)
        positions = self.positions.gather(1, chosen.clamp(max=k - 1))
        channel, slot = (chosen >= k).nonzero(as_tuple=True)
        if channel.numel():
            positions[channel, slot] = locate(chosen[channel, slot] - k, channel)
        return TopK(keys, positions)

    def merge(self, other: TopK) -> TopK:
        """The top-k of the union of two disjoint sets of images (order does not matter)."""
        candidates = torch.cat([self.keys, other.keys.to(self.keys.device)], dim=1)
        positions = torch.cat([self.positions, other.positions.to(self.keys.device)], dim=1)
        keys, chosen = candidates.topk(self.k, dim=1)
        return TopK(keys, positions.gather(1, chosen))
