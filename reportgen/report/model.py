"""The typed report model: what a report says, for the pages, the manifest and the caller.

Every record is filled in one step, when everything it holds is known: a
:class:`LayerRecord` once the forward pass has captured the layer and its filter picture is
drawn, a :class:`ReportRecord` once the predictions are in. Templates read these dataclasses;
:mod:`reportgen.report.manifest` turns them into ``manifest.json`` and back.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

# The parts that the forward pass and the analyses fill live beside the code that fills them
# (below this layer); they are re-exported here, so the report model reads in one place.
from reportgen.dataset.record import DatasetSummary as DatasetSummary
from reportgen.dataset.record import LayerDataset as LayerDataset
from reportgen.explain.record import AttributionRecord as AttributionRecord
from reportgen.explain.record import FeatureVisRecord as FeatureVisRecord
from reportgen.forward.capture import ActivationPicture as ActivationPicture
from reportgen.forward.capture import Capture as Capture
from reportgen.forward.capture import ImageActivation as ImageActivation
from reportgen.forward.features import FeatureSpec
from reportgen.forward.hooks import ConvSpec
from reportgen.forward.stats import FLAT_FRACTION, ActivationStats, rank_channels
from reportgen.inputs.modelspec import IN_MEMORY_WEIGHTS as IN_MEMORY_WEIGHTS
from reportgen.options import BuildOptions
from reportgen.pictures import ranges
from reportgen.pictures.grids import GridLayout
from reportgen.sitelayout import layer_page

#: A channel's address, LAYER:INDEX (``features.18.0:447``), as a regular expression: the
#: pages carry it (``<html data-channel-address>``) for report.js and the single file's script.
CHANNEL_ADDRESS = r"^(.+):([0-9]+)$"
#: At most this many images side by side in one report.
MAX_IMAGES = 16


@dataclass(frozen=True)
class FilterPicture:
    """A conv's weights as one picture; shared by every call of a module used twice."""

    png: str  # site-relative path
    size: tuple[int, int]  # (width, height) of the PNG
    view: str  # "rgb", "grey", "heatmap" or "strongest-input"
    description: str
    layout: GridLayout | None  # None for the heatmap, which is not tiled
    scale: int  # kernel pixels per weight
    strongest_input: list[int] | None  # per filter, for the strongest-input view
    weight_stats: dict[str, float]


@dataclass(frozen=True)
class LayerRecord:
    """One conv call (or call of another layer chosen with --layers) as the report shows it."""

    index: int
    name: str
    module_name: str
    call: int
    slug: str
    spec: ConvSpec | FeatureSpec
    stats: ActivationStats
    activation: ActivationPicture
    images: list[ImageActivation]  # one per input image (a single one for most reports)
    filters: FilterPicture | None  # None: not a convolution, so no filters
    dataset: LayerDataset | None = None  # with --dataset
    feature_vis: FeatureVisRecord | None = None  # with --feature-vis
    attribution: AttributionRecord | None = None  # with --explain

    @classmethod
    def of(cls, capture: Capture, filters: FilterPicture | None,
           dataset: LayerDataset | None = None, feature_vis: FeatureVisRecord | None = None,
           attribution: AttributionRecord | None = None) -> LayerRecord:
        return cls(capture.index, capture.name, capture.module_name, capture.call, capture.slug,
                   capture.spec, capture.stats, capture.activation, capture.images, filters,
                   dataset, feature_vis, attribution)

    @property
    def page(self) -> str:
        return layer_page(self.slug)

    @property
    def is_conv(self) -> bool:
        return isinstance(self.spec, ConvSpec)

    @property
    def map_size(self) -> tuple[int, int]:
        return self.activation.map_size

    @property
    def flat_count(self) -> int:
        return sum(self.stats.channel_flat)

    @property
    def ranking(self) -> dict[str, list[int]]:
        """Channel indices, most active first, by mean and by max (ties in index order)."""
        ranking = {"mean": rank_channels(self.stats.channel_mean),
                   "max": rank_channels(self.stats.channel_max)}
        if self.attribution is not None:
            ranking["contribution"] = rank_channels(self.attribution.contribution)
        return ranking


@dataclass(frozen=True)
class Prediction:
    label: str
    index: int
    probability: float


@dataclass(frozen=True)
class InputRecord:
    """One input image: where it came from, the picture the model saw, what it predicted."""

    image: dict[str, Any]
    png: str  # the input as the model saw it, site-relative
    predictions: list[Prediction]


@dataclass(frozen=True)
class ModelInfo:
    name: str  # the --model spec as recorded, or the class name of the caller's module
    class_name: str
    parameters: int
    conv_layers: int
    kind: str = "torchvision"  # torchvision, timm, module, file or object (see modelspec)
    source_sha256: str | None = None  # of the .py file a file:factory spec names


@dataclass(frozen=True)
class ReportRecord:
    """Everything a report says; ``manifest.json`` is this, as JSON.

    ``weights``, ``image`` and ``preprocessing`` stay the small JSON-ready dicts that their
    loaders describe themselves with: their keys differ by kind (a checkpoint has a file and
    a hash, random weights a seed), and the manifest's contract is those keys.
    """

    created: str
    versions: dict[str, str]
    command: str | None
    model: ModelInfo
    weights: dict[str, Any]
    preprocessing: dict[str, Any]
    options: BuildOptions
    notes: list[str]
    inputs: list[InputRecord]  # one per image; a report of several images shows them side by side
    layers: list[LayerRecord]
    dataset: DatasetSummary | None = None

    @property
    def image(self) -> dict[str, Any]:
        """The first (usually the only) image."""
        return self.inputs[0].image

    @property
    def predictions(self) -> list[Prediction]:
        return self.inputs[0].predictions

    @property
    def shown(self) -> str:
        """What the activation pictures show, in words."""
        return ("max(0, conv output) (--rectify)" if self.options.rectify
                else "conv output before any activation function")

    @property
    def picture_range(self) -> str:
        """Which values the activation pictures map to black and white, in words."""
        return ranges.describe(self.options.normalize)

    @property
    def flat_fraction_percent(self) -> str:
        return f"{FLAT_FRACTION * 100:g} %"

    @property
    def random_weights(self) -> bool:
        return self.weights.get("name") == "none"

    @property
    def in_memory_model(self) -> bool:
        return self.weights.get("name") == IN_MEMORY_WEIGHTS

    @property
    def all_conv(self) -> bool:
        return all(layer.is_conv for layer in self.layers)


def count_layers(layers: list[LayerRecord] | list[Capture]) -> str:
    """"5 conv layers", "1 conv layer", "12 layers" or "13 layers (1 conv)", for messages."""
    total = len(layers)
    convs = sum(isinstance(layer.spec, ConvSpec) for layer in layers)
    plural = "s" if total != 1 else ""
    if convs == total:
        return f"{total} conv layer{plural}"
    return f"{total} layer{plural}" + (f" ({convs} conv)" if convs else "")
