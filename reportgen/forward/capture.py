"""What the forward pass captures of each layer: its grid picture and its numbers.

The recorder fills a :class:`Capture` inside the forward hook; the report builds its
:class:`~reportgen.report.model.LayerRecord` from it (which re-exports these types, so the
report model stays one place to read). They live here, below the report, so that the forward
pass does not import the layer that reads it.
"""
from __future__ import annotations

from dataclasses import dataclass

from reportgen.forward.features import FeatureSpec
from reportgen.forward.hooks import ConvSpec
from reportgen.forward.stats import ActivationStats, rank_channels
from reportgen.pictures.grids import GridLayout


@dataclass(frozen=True)
class ActivationPicture:
    """A layer's maps tiled into one PNG (the grid the tiles are CSS crops of)."""

    png: str  # site-relative path
    layout: GridLayout
    map_size: tuple[int, int]  # (height, width) of the real activation map
    shrunk: bool  # area-averaged down to the tile cap
    low: list[float]  # per channel: the value drawn black (or the colormap's low end)
    high: list[float]  # ... and white; values outside were clipped

    @property
    def size(self) -> tuple[int, int]:
        """(width, height) of the PNG."""
        return self.layout.width, self.layout.height


@dataclass(frozen=True)
class ImageActivation:
    """One input image's view of a layer: its grid picture and its numbers."""

    png: str  # site-relative path
    stats: ActivationStats

    @property
    def ranking(self) -> dict[str, list[int]]:
        """This image's channels, most active first, by mean and by max (ties in index order):
        the page sorts by these when the image is shown, as the manifest records them."""
        return {"mean": rank_channels(self.stats.channel_mean),
                "max": rank_channels(self.stats.channel_max)}


@dataclass(frozen=True)
class Capture:
    """One conv call as the forward hook saw it (a :class:`LayerRecord` without filters)."""

    index: int
    name: str  # module path, with @N for the N-th call of a module used more than once
    module_name: str
    call: int
    slug: str  # file-name-safe, unique
    spec: ConvSpec | FeatureSpec  # a FeatureSpec for a layer that is not a convolution
    stats: ActivationStats  # of the first image
    activation: ActivationPicture  # of the first image; the range is shared by all images
    images: list[ImageActivation]  # one per input image, the first one included
