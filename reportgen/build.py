"""``build_report``: model + weights + image -> a static site. The CLI is a thin layer on this.

The pipeline, stage by stage (each stage a subpackage): inputs (image, model, weights,
preprocessing) -> forward pass (hooks, recorder) -> pictures (grids, filters, PNGs) -> report
(typed records, manifest, pages) -> publishing (staged folder, single file). One
:class:`~reportgen.options.BuildOptions` travels through all of them.
"""
from __future__ import annotations

import logging
import os
from collections.abc import Callable
from contextlib import ExitStack, nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from reportgen.analysis import Analysis, LayerContext, ModelContext
from reportgen.clock import Clock
from reportgen.dataset.files import DatasetFiles
from reportgen.dataset.remote import load_location
from reportgen.dataset.report import DatasetExamples, DatasetRun, dataset_files, mine_for_report
from reportgen.errors import ReportError
from reportgen.explain.report import Attribution, FeatureVisualisation
from reportgen.forward.device import core_left_for_png, parse_device, placed
from reportgen.forward.hooks import conv_layers
from reportgen.forward.run import ForwardPass, run_forward
from reportgen.forward.selection import choose_layers
from reportgen.inputs.images import SourceImage
from reportgen.inputs.modelinput import (
    AsGiven,
    RawInput,
    input_preprocessing,
    model_batch,
    read_input,
)
from reportgen.inputs.models import (
    LoadedModel,
    check_model,
    check_size_before_loading,
    load_model,
)
from reportgen.inputs.modelspec import ModelSpec
from reportgen.inputs.preprocess import Preprocessing
from reportgen.options import (
    DEFAULT_IMAGE,
    DEFAULT_MODEL,
    DEFAULT_SITE_DIR,
    DEFAULT_WEIGHTS,
    BuildOptions,
)
from reportgen.pictures.colormaps import colormap_lut
from reportgen.pictures.pngio import PngWriter
from reportgen.progress import stage
from reportgen.publish.staging import check_target, staged_folder
from reportgen.report import manifest as manifests
from reportgen.report.filters import filter_pictures
from reportgen.report.model import (
    MAX_IMAGES,
    InputRecord,
    LayerRecord,
    ModelInfo,
    Prediction,
    ReportRecord,
    count_layers,
)
from reportgen.report.pages import write_pages
from reportgen.report.predictions import category_notes, predictions
from reportgen.report.stamp import build_time
from reportgen.sitelayout import INDEX, input_png

log = logging.getLogger(__name__)


@dataclass
class Report:
    """What :func:`build_report` wrote, for a notebook or a script to use."""

    site_dir: Path
    index: Path
    record: ReportRecord
    manifest: dict[str, Any]  # manifest.json as written
    timings: dict[str, float] = field(default_factory=dict)
    single_file: Path | None = None  # the one-file report, with self_contained=True
    #: Seconds the PNG worker threads spent encoding, summed over threads. They overlap the
    #: stages in ``timings`` (whose "png" is only the wait for the last files).
    encode_seconds: float = 0.0

    @property
    def layers(self) -> list[LayerRecord]:
        return self.record.layers

    @property
    def predictions(self) -> list[Prediction]:
        return self.record.predictions

    @property
    def options(self) -> BuildOptions:
        return self.record.options

    @property
    def seconds(self) -> float:
        return sum(self.timings.values())

    def __repr__(self) -> str:  # one line: the manifest is in .manifest, not in the repr
        top = self.predictions[0] if self.predictions else None
        guess = f", top-1 {top.label!r} {top.probability:.1%}" if top else ""
        return (f"<Report of {self.record.model.name}: {count_layers(self.layers)} in "
                f"'{self.site_dir}'{guess}, {self.seconds:.1f} s>")

    def _repr_html_(self) -> str:
        """Jupyter's view: the input, the top-5, a few layers and a link to the report."""
        from reportgen.report.preview import preview_html

        return preview_html(self.record, self.site_dir)


#: Every analysis a build can run, in the order it runs them (see reportgen.analysis).
ANALYSES: tuple[Analysis, ...] = (DatasetExamples(), Attribution(), FeatureVisualisation())


def build_report(model: str | nn.Module = DEFAULT_MODEL,
                 weights: str | os.PathLike[str] | None = DEFAULT_WEIGHTS,
                 image: Any = None, site_dir: str | os.PathLike[str] = DEFAULT_SITE_DIR,
                 options: BuildOptions | None = None, *, command: str | None = None,
                 progress: Callable[[str], None] | None = None, show_progress: bool = False,
                 **overrides: Any) -> Report:
    """Run the model once on the image and publish every conv layer's view of it.

    ``model``: a torchvision model name, ``timm:NAME``, ``package.module:factory``,
    ``path/to/file.py:factory`` (``model_args`` passes keyword arguments) or your own
    ``nn.Module``. ``weights``: ``"DEFAULT"``, ``"none"``, a weights enum name such as
    ``"IMAGENET1K_V1"`` or a checkpoint path. ``image``: an skimage sample name, a file path, a
    PIL image, an array or a tensor, or a list of up to 16 of them on one shared range (with
    ``preprocess=False``: the model's input tensors, used as given); None: the first dataset
    image with ``dataset``, else skimage's astronaut. ``options`` (a
    :class:`~reportgen.options.BuildOptions`) and its fields as keywords say how to build.
    ``command``: the command line, for the manifest; ``progress`` receives one-line messages;
    ``show_progress`` draws bars on stderr (after two seconds, only on a terminal).
    """
    chosen = BuildOptions.of(options, **overrides)
    say, clock = progress or log.info, Clock()
    analyses = [analysis for analysis in ANALYSES if analysis.wanted(chosen)]
    with clock("image"):
        plan = _plan(model, image, site_dir, chosen)
    say(f"Loading {plan.spec.text if plan.spec is not None else type(model).__name__} ...")
    with clock("model"):
        loaded = load_model(model, weights, seed=chosen.seed, categories=plan.categories,
                            model_args=chosen.model_args, weights_key=chosen.weights_key,
                            trust_checkpoint=chosen.trust_checkpoint)
    with ExitStack() as on_device:
        _place(on_device, loaded.module, plan.device, isinstance(model, nn.Module), clock)
        context = _model_context(loaded, chosen)
        for analysis in analyses:
            analysis.check(context)
        preprocessing, notes = input_preprocessing(plan.givens, loaded.module,
                                                   loaded.preprocessing, chosen)
        with clock("dataset"):
            dataset = _mine(plan, loaded, context, preprocessing, say, show_progress)
        with clock("image"):
            givens = _report_images(plan, dataset)
            batch, input_notes = model_batch(givens, preprocessing, loaded.module)
        with staged_folder(plan.target) as site, PngWriter(chosen.compress_level) as writer:
            with core_left_for_png(batch.shape[-2] * batch.shape[-1]):
                with clock("forward"):
                    forward = _forward(loaded, batch, plan.device, context, site, writer,
                                       dataset, say, show_progress)
                clock.move(forward.grid_seconds, "forward", "grids")
                for number in range(len(givens)):  # each input as the model saw it
                    writer.submit(preprocessing.to_picture(batch[number:number + 1]),
                                  site / input_png(number))
                layer_context = LayerContext(context, loaded.weights, preprocessing, batch,
                                             forward.captures, dataset, site, writer, say,
                                             show_progress)
                results = _run_analyses([a for a in analyses if not a.needs_all_threads],
                                        layer_context, clock)
                with clock("filters"):
                    filters = filter_pictures(forward.captures, loaded.module, writer, site)
            # Minutes of optimisation with all of torch's threads: the writer's queue has
            # long drained, and the sprites are written here, not by it.
            results |= _run_analyses([a for a in analyses if a.needs_all_threads],
                                     layer_context, clock)
            layers = [LayerRecord.of(capture, pictures,
                                     **{name: found.get(capture.name)
                                        for name, found in results.items()})
                      for capture, pictures in filters]
            with clock("png"), stage("Writing PNGs", writer.pending, "file",
                                     show_progress) as ticker:
                writer.close(ticker.update)
            record = _record(loaded, chosen, preprocessing, givens, layers, forward,
                             [*loaded.notes, *notes, *input_notes], dataset, command)
            with clock("html"):
                written = manifests.write(site, record)
                write_pages(site, record, preprocessing.input_size)
                # The file list last, so report.html inlines the manifest as the site has it.
                written = manifests.record_files(site, written, chosen.self_contained)
            with clock("single file"):
                single = _single_file(site, say) if chosen.self_contained else None
    final = Path(site_dir)
    return Report(final, final / INDEX, record, written, clock.timings,
                  final / single.path.name if single else None, encode_seconds=writer.seconds)


@dataclass(frozen=True)
class _Plan:
    """What a build is asked to do, checked before anything heavy is loaded."""

    target: Path  # the site folder, checked (an earlier report or a new folder)
    device: torch.device
    givens: list[SourceImage | RawInput]
    files: DatasetFiles | None
    spec: ModelSpec | None  # None: the caller's own module
    categories: list[str] | None


def _plan(model: str | nn.Module, image: Any, site_dir: str | os.PathLike[str],
          options: BuildOptions) -> _Plan:
    """Every check that needs no model, in the order a user's mistakes are best reported."""
    colormap_lut(options.cmap)  # an unknown colormap fails before any work is done
    device = parse_device(options.device)
    target = check_target(Path(site_dir))  # a refused folder fails before any heavy work
    if image is None and options.dataset is None:
        image = DEFAULT_IMAGE
    givens = ([read_input(item, options.preprocess) for item in _images(image)]
              if image is not None else [])
    files = dataset_files(options)
    if not options.preprocess and (files is not None or options.feature_vis):
        raise ReportError(f"{'--dataset' if files is not None else '--feature-vis'} needs "
                          "the model's preprocessing, so it cannot be combined with "
                          "preprocess=False.")
    spec = check_model(model, options.model_args)  # before anything is loaded or said
    check_size_before_loading(spec, options.size, options.model_args)
    categories = list(options.categories) if options.categories else None
    return _Plan(target, device, givens, files, spec, categories)


def _place(stack: ExitStack, module: nn.Module, device: torch.device, callers: bool,
           clock: Clock) -> None:
    """The model on the device once for the whole build, so every stage's own move is a
    no-op: the build's own model stays there; a caller's module goes back when ``stack``
    closes, also after an error (one already on the device is not copied at all)."""
    with clock("to device") if device.type != "cpu" else nullcontext():
        stack.enter_context(placed(module, device, restore=callers))


def _report_images(plan: _Plan, dataset: DatasetRun | None) -> list[SourceImage | RawInput]:
    """The images given, or else the dataset's first (as the CLI does without -i)."""
    if plan.givens or dataset is None:
        return plan.givens
    return [load_location(dataset.first_image())]


def _model_context(loaded: LoadedModel, options: BuildOptions) -> ModelContext:
    """The chosen layers of the loaded model (none is an error)."""
    chosen = choose_layers(loaded.module, options.layers)
    if not chosen:
        raise ReportError(f"Model {loaded.name} has no Conv2d layer, so there is nothing "
                          "to show; --layers can name other layers (--layers @blocks: its "
                          "blocks).")
    conv_names = frozenset(name for name, _ in conv_layers(loaded.module))
    return ModelContext(loaded.module, chosen, conv_names, loaded.categories, options)


def _mine(plan: _Plan, loaded: LoadedModel, context: ModelContext,
          preprocessing: Preprocessing | AsGiven, say: Callable[[str], None],
          show_progress: bool) -> DatasetRun | None:
    """The dataset pass, before the report's own (it may give the report its image)."""
    if plan.files is None:
        return None
    assert isinstance(preprocessing, Preprocessing)  # preprocess=False was refused
    say(f"Mining {len(plan.files)} dataset files for each channel's top "
        f"{context.options.top_k} images ...")
    return mine_for_report(loaded.module, plan.files, context.chosen, preprocessing,
                           context.options, plan.target, loaded.weights.get("sha256"),
                           show_progress)


def _forward(loaded: LoadedModel, batch: torch.Tensor, device: torch.device,
             context: ModelContext, site: Path, writer: PngWriter, dataset: DatasetRun | None,
             say: Callable[[str], None], show_progress: bool) -> ForwardPass:
    chosen = context.chosen
    hooked = (f"{len(chosen)} conv layers" if set(chosen) <= context.conv_names else
              f"{len(chosen)} layers ({len(context.conv_names.intersection(chosen))} conv)")
    say(f"Running {loaded.name} once with hooks on {hooked} ...")
    # Only --normalize dataset draws on the dataset's peaks.
    peaks = dataset.peaks() if dataset and context.options.normalize == "dataset" else None
    with stage("Forward pass", len(chosen), "layer", show_progress) as ticker:
        return run_forward(loaded, batch, device, chosen, site, writer, context.options, peaks,
                           ticker.update)


def _run_analyses(analyses: list[Analysis], context: LayerContext,
                  clock: Clock) -> dict[str, dict[str, Any]]:
    """Each analysis's per-layer records, by its name, each timed as its stage."""
    results = {}
    for analysis in analyses:
        with clock(analysis.stage):
            results[analysis.name] = analysis.run(context)
    return results


def _record(loaded: LoadedModel, options: BuildOptions, preprocessing: Preprocessing | AsGiven,
            givens: list[SourceImage | RawInput], layers: list[LayerRecord],
            forward: ForwardPass, notes: list[str], dataset: DatasetRun | None,
            command: str | None) -> ReportRecord:
    """The typed report model, once everything it holds is known."""
    logits, categories = forward.logits, loaded.categories
    return ReportRecord(
        created=build_time(), versions=manifests.versions(), command=command,
        model=_model_info(loaded), weights=loaded.weights,
        preprocessing=preprocessing.describe(), options=options,
        notes=[*notes, *forward.notes,
               *category_notes(logits, categories, options.categories_must_match)],
        inputs=[InputRecord(given.describe(), input_png(number),
                            predictions(logits, categories, number))
                for number, given in enumerate(givens)],
        layers=layers, dataset=dataset.summary(options) if dataset else None)


def _images(image: Any) -> list[Any]:
    """One image, or a list or tuple of them (at most MAX_IMAGES)."""
    images = list(image) if isinstance(image, (list, tuple)) else [image]
    if not images:
        raise ReportError("No image was given; pass an image (or a list of them).")
    if len(images) > MAX_IMAGES:
        raise ReportError(f"{len(images)} images were given; a report shows at most "
                          f"{MAX_IMAGES} side by side. Choose fewer, or mine a folder with "
                          "--dataset.")
    return images


def _single_file(site: Path, say: Callable[[str], None]) -> Any:
    from reportgen.publish.singlefile import write_single_file

    single = write_single_file(site)
    say(f"Single-file report {single.path.name}: {single.size / 2**20:.1f} MB "
        f"({single.pages} pages, {single.assets} files inlined)")
    return single


def _model_info(loaded: LoadedModel) -> ModelInfo:
    return ModelInfo(loaded.name, type(loaded.module).__name__,
                     sum(p.numel() for p in loaded.module.parameters()),
                     len(conv_layers(loaded.module)), loaded.kind, loaded.source_sha256)
