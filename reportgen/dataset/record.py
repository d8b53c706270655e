"""What a dataset adds to a report: per layer its examples and statistics, and a summary.

:mod:`reportgen.dataset.report` fills these; :mod:`reportgen.report.model` re-exports them as
part of the typed report model, which sits above the analyses that feed it.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from reportgen.dataset.crops import CroppedExample
from reportgen.dataset.layer import ChannelSummary
from reportgen.dataset.receptive import ReceptiveField


@dataclass(frozen=True)
class LayerDataset:
    """What a dataset says about one layer: each channel's top and most inhibiting examples,
    what their order may claim, and statistics."""

    examples_json: str  # site-relative JSON file: per channel, {top, inhibiting, notes}
    examples: list[list[CroppedExample]]  # per channel, best first
    summaries: list[ChannelSummary]  # per channel: statistics of the spatial maxima
    percentile: list[float]  # per channel: % of the dataset the report's image beats (NaN:
    # no rank, every image ties)
    receptive_field: ReceptiveField
    sheets: dict[str, tuple[int, int]]  # each sprite sheet: src -> (width, height)
    inhibiting: list[list[CroppedExample]] = field(default_factory=list)  # lowest minimum first
    # per channel, what the top and the inhibiting order cannot claim (reportgen.dataset.claims)
    notes: list[tuple[str | None, str | None]] = field(default_factory=list)


@dataclass(frozen=True)
class DatasetSummary:
    """The dataset behind a report: where, how many images, which files were skipped."""

    root: str  # the folder's (or list file's) name, never a full path
    files: int
    images: int  # decoded and used
    skipped: list[tuple[str, str]]  # (dataset-relative path, reason)
    top_k: int
    sample_size: int  # images in the quantile sample
    resumed_from: int  # files a saved state had done when this run started

    @property
    def score(self) -> str:
        return "spatial max of the shown map"
