"""What attribution and feature visualisation add to a report's layer.

:mod:`reportgen.explain.report` fills these; :mod:`reportgen.report.model` re-exports them as
part of the typed report model, which sits above the analyses that feed it.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class FeatureVisRecord:
    """A layer's feature visualisations: per channel (as a string key) its sprite crop."""

    steps: int
    size: int
    channels: dict[str, dict[str, Any]]  # "<index>": {"crop": {src, x, y, width, height},
    #                                                  "objective": float}
    sheets: dict[str, tuple[int, int]]  # each sprite sheet's (width, height)


@dataclass(frozen=True)
class AttributionRecord:
    """Why the model decided, at one layer: Grad-CAM and each channel's contribution."""

    class_index: int
    label: str
    cam_png: str  # 16-bit grey PNG at the layer's map size: CAM / its max
    map_size: tuple[int, int]
    contribution: list[float]  # per channel: sum over the map of activation x gradient
