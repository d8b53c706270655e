"""Many small pictures in a few PNG files, and where each one sits.

A layer can have hundreds of visualised channels; one file each would mean hundreds of
requests for the report page. Pictures go into sheets of up to ``per_sheet`` in a grid, and
each channel gets the crop that the page shows it with (a CSS background position), in the
manifest shape ``layers[i].feature_vis``.
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from reportgen.explain.featurevis import Visualisation
from reportgen.pictures.pngio import encode_png
from reportgen.sitelayout import FEATURE_VIS_DIR, feature_vis_sheet

#: Between pictures, so a browser scaling a crop never blends in a neighbour's edge.
DEFAULT_GAP = 2
GAP_VALUE = 255


def write_sprites(visualisations: Sequence[Visualisation], site: str | Path, slug: str, *,
                  per_sheet: int = 64, columns: int = 8,
                  gap: int = DEFAULT_GAP) -> dict[str, dict[str, Any]]:
    """Write a layer's sheets into ``site`` (where sitelayout puts feature visualisations);
    ``{"<channel>": {"crop": ..., "objective": ...}}``.

    ``crop`` is ``{"src", "x", "y", "width", "height"}`` in sheet pixels, ``src`` the sheet's
    path relative to the site. Pictures keep the order given, row by row; all must have the
    same size.
    """
    if per_sheet < 1 or columns < 1 or gap < 0:
        raise ValueError("per_sheet and columns must be at least 1 and gap at least 0")
    if not visualisations:
        return {}
    shapes = {v.picture.shape for v in visualisations}
    if len(shapes) != 1:
        raise ValueError(f"all pictures must have one size to share sheets, got {sorted(shapes)}")
    height, width = visualisations[0].picture.shape[:2]
    site = Path(site)
    (site / FEATURE_VIS_DIR).mkdir(parents=True, exist_ok=True)
    entries: dict[str, dict[str, Any]] = {}
    for sheet, start in enumerate(range(0, len(visualisations), per_sheet)):
        chunk = visualisations[start:start + per_sheet]
        cols = min(columns, len(chunk))
        rows = math.ceil(len(chunk) / cols)
        pixels = np.full((rows * height + (rows - 1) * gap, cols * width + (cols - 1) * gap, 3),
                         GAP_VALUE, dtype=np.uint8)
        name = feature_vis_sheet(slug, sheet)
        for position, visualisation in enumerate(chunk):
            x = (position % cols) * (width + gap)
            y = (position // cols) * (height + gap)
            pixels[y:y + height, x:x + width] = visualisation.picture
            entries[str(visualisation.channel)] = {
                "crop": {"src": name, "x": x, "y": y,
                         "width": int(width), "height": int(height)},
                "objective": round(float(visualisation.objective), 6)}
        (site / name).write_bytes(encode_png(pixels))
    return entries


def feature_vis_entry(steps: int, size: int,
                      channels: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """The manifest's ``layers[i].feature_vis`` value."""
    return {"steps": int(steps), "size": int(size), "channels": channels}
