"""Lucent's ``standard_transforms`` as one resampling per step.

Each step the model sees the image padded, jittered, scaled, rotated and jittered again, so
the optimiser cannot rely on an exact pixel grid and must find patterns that survive small
shifts and zooms. Lucent runs five separate resamplings; all five are affine, so we compose
them into one matrix per image and sample once (``affine_grid`` + ``grid_sample``) straight
at the model's input size, which also replaces the final resize. Differences from Lucent: the
scale zooms about the centre inside a fixed frame (in Lucent a scale above 1 is undone by
the final resize to 224) and every image in the batch draws its own transform.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

#: Part of the feature-vis cache key: bump when anything that decides the pixels changes
#: (these transforms, the image parameterisation, the optimisation loop).
TRANSFORMS_VERSION = 1


@dataclass(frozen=True)
class TransformSpec:
    """Lucent's standard_transforms: pad 12 (grey), jitter 8, scale 0.9-1.1, rotate ±10°,
    jitter 4."""

    pad: int = 12
    pad_value: float = 0.5
    jitter: int = 8
    scales: tuple[float, ...] = tuple(1 + (i - 5) / 50 for i in range(11))
    angles: tuple[float, ...] = tuple(float(a) for a in range(-10, 11)) + (0.0,) * 5
    late_jitter: int = 4


def draw_matrices(generator: torch.Generator, steps: int, frame: int,
                  spec: TransformSpec = TransformSpec()) -> torch.Tensor:
    """(steps, 2, 3) ``affine_grid`` matrices for one image: output coords -> padded-input coords.

    In pixels, with p the padded source and q the frame the model sees (both ``frame`` wide,
    centred): q = R(a) s (p + t1) + t2, so p = R(-a) (q - t2) / s - t1. Normalised
    coordinates span 2 per frame, so a shift of t pixels is 2 t / frame.
    """
    t1 = torch.randint(0, spec.jitter, (steps, 2), generator=generator).float()
    scale = torch.tensor(spec.scales)[torch.randint(0, len(spec.scales), (steps,),
                                                    generator=generator)]
    angle = torch.tensor(spec.angles)[torch.randint(0, len(spec.angles), (steps,),
                                                    generator=generator)] * (math.pi / 180)
    t2 = torch.randint(0, spec.late_jitter, (steps, 2), generator=generator).float()
    cos, sin = torch.cos(angle) / scale, torch.sin(angle) / scale
    linear = torch.stack([torch.stack([cos, sin], -1), torch.stack([-sin, cos], -1)], -2)
    shift = -(linear @ (2 * t2 / frame)[..., None])[..., 0] - 2 * t1 / frame
    return torch.cat([linear, shift[..., None]], dim=-1)


def apply(images: torch.Tensor, matrices: torch.Tensor, out_size: int,
          spec: TransformSpec = TransformSpec()) -> torch.Tensor:
    """Pad with grey, then one bilinear resampling to ``out_size``; outside the pad is black."""
    padded = F.pad(images, [spec.pad] * 4, value=spec.pad_value)
    grid = F.affine_grid(matrices, [images.shape[0], 3, out_size, out_size], align_corners=False)
    return F.grid_sample(padded, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
