"""What excites each channel over a folder of images: the library behind a dataset report.

The steps, each in its own module:

* :func:`list_dataset` (files): which files, in a stable order.
* :func:`mine` (mine, hooks, decode): one streaming pass; per layer a :class:`LayerState`
  with each channel's top-k examples and statistics, resumable via a state file (state).
* :func:`receptive_fields` (receptive): the input box behind any map position.
* :func:`write_crops` (crops): the examples' boxes cut into sprite sheets for the site.
"""
from reportgen.dataset.crops import CroppedExample, CropRef, LayerCrops, write_crops
from reportgen.dataset.decode import Skipped
from reportgen.dataset.files import DatasetFiles, list_dataset
from reportgen.dataset.layer import ChannelSummary, Example, LayerState
from reportgen.dataset.mine import DatasetExample, MineOptions, MineProgress, MineResult, mine
from reportgen.dataset.receptive import Box, ReceptiveField, receptive_fields
from reportgen.dataset.state import state_path

__all__ = [
    "Box", "ChannelSummary", "CropRef", "CroppedExample", "DatasetExample", "DatasetFiles",
    "Example", "LayerCrops", "LayerState", "MineOptions", "MineProgress", "MineResult",
    "ReceptiveField", "Skipped", "list_dataset", "mine", "receptive_fields", "state_path",
    "write_crops",
]
