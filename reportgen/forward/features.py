"""Layers that are not convolutions, shown like one: C channels of H×W.

A transformer block, a residual block, a norm or a pooling layer selected with ``--layers``
is shown when its output is a feature map, (N, C, H, W) or Swin's channels-last (N, H, W, C),
or a token sequence (N, T + H·W, C) on a square grid, whose T leading tokens (the class
token, distillation and register tokens) are dropped, and the page says so. Which of the two
4-D layouts an output has is read off its shape: the one whose map has the input's aspect
ratio (for a square input: the square map), NCHW when both do.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

NCHW, NHWC, TOKENS = "N, C, H, W", "N, H, W, C", "tokens"
#: Leading tokens a sequence may carry before its grid (class + distillation + registers).
MAX_PREFIX_TOKENS = 8


@dataclass(frozen=True)
class FeatureSpec:
    """A layer that is not a convolution, and how its output became C maps of H×W."""

    name: str
    class_name: str
    parameters: int
    read_as: str  # NCHW, NHWC or TOKENS
    dropped_tokens: int  # leading tokens left out of the grid
    output_shape: tuple[int, ...]  # as the module returned it
    out_channels: int
    from_tuple: bool = False  # the module returned a tuple; its first element is shown

    @property
    def map_size(self) -> tuple[int, int]:
        """(height, width) of each map."""
        if self.read_as == TOKENS:
            side = math.isqrt(self.output_shape[1] - self.dropped_tokens)
            return side, side
        if self.read_as == NHWC:
            return self.output_shape[1], self.output_shape[2]
        return self.output_shape[2], self.output_shape[3]

    @property
    def how(self) -> str:
        """How the output was read, in words, for the pages."""
        shape = "×".join(str(v) for v in self.output_shape)
        first = "the first element of its output tuple, " if self.from_tuple else ""
        if self.read_as == TOKENS:
            side = self.map_size[0]
            dropped = ("" if not self.dropped_tokens else "; the class token dropped"
                       if self.dropped_tokens == 1 else
                       f"; the {self.dropped_tokens} leading tokens (class, distillation or "
                       "register tokens) dropped")
            return (f"{first}a token sequence ({shape}) read as a {side}×{side} grid of "
                    f"{self.out_channels} channels{dropped}")
        if self.read_as == NHWC:
            return f"{first}a channels-last map ({shape}, read as N, H, W, C)"
        return f"{first}a feature map ({shape})"


@dataclass(frozen=True)
class FeatureView:
    """An output as an (N, C, H, W) batch (a view where possible), and how it was read."""

    batch: torch.Tensor
    read_as: str
    dropped_tokens: int
    output_shape: tuple[int, ...]
    from_tuple: bool


def read_feature_map(output: object, input_hw: tuple[int, int] | None,
                     batch_size: int = 1) -> FeatureView | str:
    """The output as maps, or why it cannot be shown (a short phrase for the report's note).

    ``batch_size`` is the number of images in the forward pass: the output's first dimension
    must be it (a sequence-first (L, N, C) output is not read)."""
    tensor, from_tuple = output, False
    if isinstance(output, (tuple, list)) and output and isinstance(output[0], torch.Tensor):
        tensor, from_tuple = output[0], True
    if not isinstance(tensor, torch.Tensor):
        return f"its output is a {type(output).__name__}, not a tensor"
    shape = tuple(int(v) for v in tensor.shape)
    if not tensor.is_floating_point():
        return f"its output {shape} is not floating point"
    if len(shape) not in (3, 4) or shape[0] != batch_size:
        return (f"its output {shape} is neither a feature map (N, C, H, W or N, H, W, C) nor a "
                "token sequence (N, tokens, C)")
    if len(shape) == 4:
        if _aspect_error(shape[1], shape[2], input_hw) < _aspect_error(shape[2], shape[3],
                                                                        input_hw):
            return FeatureView(tensor.permute(0, 3, 1, 2), NHWC, 0, shape, from_tuple)
        return FeatureView(tensor, NCHW, 0, shape, from_tuple)
    tokens, channels = shape[1], shape[2]
    for dropped in range(min(MAX_PREFIX_TOKENS, tokens - 1) + 1):
        side = math.isqrt(tokens - dropped)
        if side >= 2 and side * side == tokens - dropped:
            grid = tensor[:, dropped:, :].transpose(1, 2).reshape(batch_size, channels, side,
                                                                  side)
            return FeatureView(grid, TOKENS, dropped, shape, from_tuple)
    return (f"its {tokens} tokens do not make a square grid (with up to {MAX_PREFIX_TOKENS} "
            "leading tokens dropped)")


def _aspect_error(height: int, width: int, input_hw: tuple[int, int] | None) -> float:
    """How far a height x width map is from the input's aspect ratio (0: the same)."""
    wanted = input_hw[0] / input_hw[1] if input_hw else 1.0
    return abs(math.log(max(height, 1) / max(width, 1) / wanted))


def feature_spec(name: str, module: nn.Module, view: FeatureView) -> FeatureSpec:
    return FeatureSpec(name, type(module).__name__,
                       sum(p.numel() for p in module.parameters()), view.read_as,
                       view.dropped_tokens, view.output_shape, int(view.batch.shape[1]),
                       view.from_tuple)
