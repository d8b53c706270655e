"""The one shape of an analysis: dataset examples, attribution, feature visualisation, ...

An analysis is switched on by its :class:`~reportgen.options.BuildOptions` fields
(:meth:`Analysis.wanted`), refuses bad options once the model is loaded and before any heavy
stage (:meth:`Analysis.check`), and after the report's forward pass returns one typed record
per layer (:meth:`Analysis.run`). Its ``name`` is the :class:`~reportgen.report.model.LayerRecord`
field that carries the record, the key of its section in each layer of ``manifest.json``
(written and read by :mod:`reportgen.report.manifest`) and its panel in the channel view.
``build_report`` runs every wanted analysis in :data:`reportgen.build.ANALYSES` order, each
timed as its own ``stage``. A new analysis is one class of this shape, its record type, its
options and its panel: no new glue in the build.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import torch
from torch import nn

from reportgen.options import BuildOptions

if TYPE_CHECKING:
    from reportgen.forward.capture import Capture
    from reportgen.inputs.modelinput import AsGiven
    from reportgen.inputs.preprocess import Preprocessing
    from reportgen.pictures.pngio import PngWriter


@dataclass(frozen=True)
class ModelContext:
    """What is known once the model is loaded: enough to refuse bad options early."""

    module: nn.Module
    chosen: list[str]  # the layers the report hooks, in forward order
    conv_names: frozenset[str]  # every nn.Conv2d of the model
    categories: list[str] | None
    options: BuildOptions

    def conv_captures(self, captures: list[Capture]) -> list[Capture]:
        """Attribution and feature visualisation work on conv outputs: other layers have none."""
        return [capture for capture in captures if capture.module_name in self.conv_names]


@dataclass(frozen=True)
class LayerContext:
    """What an analysis runs on, once the report's forward pass is done."""

    model: ModelContext
    weights: dict[str, Any]  # LoadedModel.weights (its file hash keys caches)
    preprocessing: Preprocessing | AsGiven
    batch: torch.Tensor  # the report's inputs, as the model took them
    captures: list[Capture]  # every captured layer, in forward order
    #: The dataset pass (a reportgen.dataset.report.DatasetRun), with --dataset: it runs
    #: before the report's own pass, as it may give the report its image and ranges. Typed
    #: by the analysis that reads it, as this module sits below the analyses.
    dataset: object | None
    site: Path  # the staged site folder
    writer: PngWriter
    say: Callable[[str], None]
    show_progress: bool

    @property
    def options(self) -> BuildOptions:
        return self.model.options


class Analysis(Protocol):
    """One analysis of a report (see the module docstring)."""

    #: The LayerRecord field and manifest key of its per-layer records.
    name: str
    #: Its stage on the build's clock (``Report.timings``).
    stage: str
    #: True: runs after the PNG writer's queue has drained, with all of torch's threads
    #: (minutes of optimisation); False: runs beside the writer's threads.
    needs_all_threads: bool

    def wanted(self, options: BuildOptions) -> bool:
        """Whether these options ask for it."""

    def check(self, model: ModelContext) -> None:
        """Refuse bad options (a ReportError) before the long stages run."""

    def run(self, context: LayerContext) -> dict[str, Any]:
        """Per layer (recorded name), its typed record; layers it does not cover are absent."""
