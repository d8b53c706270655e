"""Colormaps by name, for the report's grids and for figures alike.

matplotlib is imported only when a colour map is really used (its import costs 0.2-0.3 s),
so a grey report never pays for it. An unknown name fails before any work, with close matches.
"""
from __future__ import annotations

import difflib
from functools import lru_cache
from typing import Any

import numpy as np

from reportgen.errors import ReportError

GREY_NAMES = ("gray", "grey")


def is_grey(name: str) -> bool:
    return name in GREY_NAMES


def colormap(name: str) -> Any:
    """The matplotlib colormap called ``name``, or a ReportError that suggests close names."""
    import matplotlib

    try:
        return matplotlib.colormaps[name]
    except KeyError:
        close = difflib.get_close_matches(name, sorted(matplotlib.colormaps), n=3)
        hint = (f"did you mean {', '.join(close)}?" if close
                else "e.g. gray, viridis, magma, inferno.")
        raise ReportError(f"Unknown colormap '{name}'; {hint}") from None


@lru_cache(maxsize=16)
def colormap_lut(name: str) -> np.ndarray | None:
    """A 256x3 uint8 lookup table for a matplotlib colormap; None means plain grey."""
    if is_grey(name):
        return None
    table: np.ndarray = colormap(name)(np.linspace(0.0, 1.0, 256), bytes=True)[:, :3].copy()
    return table


def colorbar(name: str, steps: int = 256) -> np.ndarray:
    """The colormap from its low to its high end as a 1 x ``steps`` picture (grey, or RGB
    through :func:`colormap_lut`): the same colours the grids are drawn in."""
    ramp = np.round(np.linspace(0.0, 255.0, steps)).astype(np.uint8)[None, :]
    lut = colormap_lut(name)
    return ramp if lut is None else lut[ramp]
