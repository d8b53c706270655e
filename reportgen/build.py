"""``build_report``: model + weights + image -> a static site. The CLI is a thin layer on this.

The pipeline, stage by stage (each stage a subpackage): inputs (image, model, weights,
preprocessing) -> forward pass (hooks, recorder) -> pictures (grids, filters, PNGs) -> report
(typed records, manifest, pages) -> publishing (staged folder, single file). One
:class:`~reportgen.options.BuildOptions` travels through all of them.
"""
from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from reportgen.dataset.remote import load_location
from reportgen.dataset.report import dataset_files, dataset_layers, mine_for_report
from reportgen.errors import ReportError
from reportgen.explain.report import attributions, check_explanations, feature_visualisations
from reportgen.forward.device import core_left_for_png, laid_out, moved_to, parse_device, placed
from reportgen.forward.hooks import ConvHooks, conv_layers
from reportgen.forward.recorder import ActivationRecorder
from reportgen.forward.selection import choose_layers
from reportgen.inputs.inputsize import explain_failure
from reportgen.inputs.modelinput import input_preprocessing, model_batch, read_input
from reportgen.inputs.models import (
    LoadedModel,
    check_model,
    check_size_before_loading,
    load_model,
)
from reportgen.inputs.preprocess import Preprocessing
from reportgen.options import (
    DEFAULT_IMAGE,
    DEFAULT_MODEL,
    DEFAULT_SITE_DIR,
    DEFAULT_WEIGHTS,
    BuildOptions,
)
from reportgen.pictures.colormaps import colormap_lut
from reportgen.pictures.kernels import filter_figure
from reportgen.pictures.pngio import PngWriter
from reportgen.progress import stage
from reportgen.publish.staging import check_target, staged_folder
from reportgen.report import manifest as manifests
from reportgen.report.model import (
    IMAGE_DIR,
    MAX_IMAGES,
    Capture,
    FilterPicture,
    InputRecord,
    LayerRecord,
    ModelInfo,
    Prediction,
    ReportRecord,
    count_layers,
    input_png,
)
from reportgen.report.pages import write_pages
from reportgen.report.stamp import build_time

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


class _Stopwatch:
    def __init__(self) -> None:
        self.timings: dict[str, float] = {}
        self._last = time.perf_counter()

    def lap(self, stage: str) -> None:
        now = time.perf_counter()
        self.timings[stage] = self.timings.get(stage, 0.0) + now - self._last
        self._last = now


def build_report(model: str | nn.Module = DEFAULT_MODEL,
                 weights: str | os.PathLike[str] | None = DEFAULT_WEIGHTS,
                 image: Any = None, site_dir: str | os.PathLike[str] = DEFAULT_SITE_DIR,
                 options: BuildOptions | None = None, *, command: str | None = None,
                 progress: Callable[[str], None] | None = None, show_progress: bool = False,
                 **overrides: Any) -> Report:
    """Run the model once on the image and publish every conv layer's view of it.

    ``model`` is a torchvision classification model name, ``timm:NAME``,
    ``package.module:factory`` or ``path/to/file.py:factory`` (``model_args`` passes keyword
    arguments), or your own ``nn.Module``;
    ``weights`` is ``"DEFAULT"``, ``"none"``, a weights enum name such as ``"IMAGENET1K_V1"`` or
    a checkpoint path; ``image`` is an skimage sample name, a file path, a PIL image, an array
    or a tensor, or a list of up to 16 of them, shown side by side on one shared range (with
    ``preprocess=False``: tensors that are the model's input, used exactly as given); None
    (the default) is the first dataset image with ``dataset``, as the CLI without ``-i``,
    else skimage's astronaut. How
    to build is a :class:`~reportgen.options.BuildOptions`, or its fields as keywords
    (``layers="features.*", cmap="magma", self_contained=True``, ...), which override
    ``options``. ``command`` is the command line that asked for this build, for the manifest.
    ``progress`` receives one-line messages; ``show_progress`` draws progress bars on stderr
    for the slow stages (after two seconds, and only on a terminal).
    Returns a :class:`Report` describing what was written to ``site_dir``.
    """
    chosen_options = BuildOptions.of(options, **overrides)
    say = progress or log.info
    clock = _Stopwatch()
    colormap_lut(chosen_options.cmap)  # an unknown colormap fails before any work is done
    torch_device = parse_device(chosen_options.device)
    target = check_target(Path(site_dir))  # a refused folder fails before any heavy work
    if image is None and chosen_options.dataset is None:
        image = DEFAULT_IMAGE
    givens = ([read_input(item, chosen_options.preprocess) for item in _images(image)]
              if image is not None else [])
    files = dataset_files(chosen_options)
    if not chosen_options.preprocess and (files is not None or chosen_options.feature_vis):
        raise ReportError(f"{'--dataset' if files is not None else '--feature-vis'} needs "
                          "the model's preprocessing, so it cannot be combined with "
                          "preprocess=False.")
    spec = check_model(model, chosen_options.model_args)  # before anything is loaded or said
    check_size_before_loading(spec, chosen_options.size, chosen_options.model_args)
    clock.lap("image")
    say(f"Loading {spec.text if spec is not None else type(model).__name__} ...")
    categories = list(chosen_options.categories) if chosen_options.categories else None
    loaded = load_model(model, weights, seed=chosen_options.seed, categories=categories,
                        model_args=chosen_options.model_args,
                        weights_key=chosen_options.weights_key)
    clock.lap("model")
    # On the device once for the whole build, so every stage's own move is a no-op: the
    # build's own model stays there; a caller's module goes back at the end, also after
    # an error (one already on the device is not copied at all).
    with placed(loaded.module, torch_device, restore=isinstance(model, nn.Module)):
        if torch_device.type != "cpu":
            clock.lap("to device")
        chosen = choose_layers(loaded.module, chosen_options.layers)
        if not chosen:
            raise ReportError(f"Model {loaded.name} has no Conv2d layer, so there is nothing "
                              "to show; --layers can name other layers (--layers @blocks: its "
                              "blocks).")
        check_explanations(chosen_options, loaded.module, chosen, loaded.categories)
        preprocessing, notes = input_preprocessing(givens, loaded.module, loaded.preprocessing,
                                                   chosen_options)
        dataset = None
        conv_names = {name for name, _ in conv_layers(loaded.module)}
        if files is not None:
            others = [name for name in chosen if name not in conv_names]
            if others:
                raise ReportError(f"--dataset mines conv layers only; leave {others[0]}"
                                  f"{f' and {len(others) - 1} more' if len(others) > 1 else ''} "
                                  "out of --layers.")
            assert isinstance(preprocessing, Preprocessing)  # preprocess=False was refused above
            say(f"Mining {len(files)} dataset files for each channel's top {chosen_options.top_k} "
                "images ...")
            dataset = mine_for_report(loaded.module, files, chosen, preprocessing, chosen_options,
                                      target, loaded.weights.get("sha256"), show_progress)
            clock.lap("dataset")
            if not givens:
                givens = [load_location(dataset.first_image())]
        # No size check here: a meta dry run costs 0.2 s on MobileNetV2 on every build, and a
        # too-small input is explained by _forward's handler (same search) when it really fails.
        batch, input_notes = model_batch(givens, preprocessing, loaded.module)
        notes = [*loaded.notes, *notes, *input_notes]
        clock.lap("image")

        with staged_folder(target) as site:
            with PngWriter(chosen_options.compress_level) as writer:
                # Only --normalize dataset draws on the dataset's peaks.
                peaks = (dataset.peaks() if dataset and chosen_options.normalize == "dataset"
                         else None)
                with core_left_for_png(batch.shape[-2] * batch.shape[-1]):
                    hooked = (f"{len(chosen)} conv layers" if set(chosen) <= conv_names else
                              f"{len(chosen)} layers ({len(conv_names.intersection(chosen))} conv)")
                    say(f"Running {loaded.name} once with hooks on {hooked} ...")
                    with stage("Forward pass", len(chosen), "layer", show_progress) as ticker:
                        recorder = ActivationRecorder(site, writer, chosen_options, ticker.update,
                                                      peaks,
                                                      input_hw=(batch.shape[-2], batch.shape[-1]),
                                                      batch_size=batch.shape[0])
                        logits = _forward(loaded, batch, torch_device, recorder, chosen)
                    skipped = _skipped_notes(recorder.skipped, bool(recorder.captures))
                    clock.lap("forward")
                    clock.timings["forward"] -= recorder.seconds
                    clock.timings["grids"] = recorder.seconds
                    for number in range(len(givens)):
                        writer.submit(preprocessing.to_picture(batch[number:number + 1]),
                                      site / input_png(number))
                    examples = (dataset_layers(dataset, recorder.captures, site, writer,
                                               chosen_options) if dataset else {})
                    clock.lap("dataset crops")
                    # Attribution and feature visualisation work on conv outputs: other layers
                    # have none.
                    conv_captures = [capture for capture in recorder.captures
                                     if capture.module_name in conv_names]
                    explained = (attributions(loaded.module, batch, conv_captures, chosen_options,
                                              loaded.categories, site)
                                 if chosen_options.explain and conv_captures else {})
                    clock.lap("attribution")
                    filters = list(_filter_pictures(recorder.captures, loaded.module, writer,
                                                    site))
                    clock.lap("filters")
                # Minutes of optimisation with all of torch's threads: the writer's queue has
                # long drained, and the sprites are written here, not by it.
                visualised = (feature_visualisations(loaded.module, conv_captures, preprocessing,
                                                     chosen_options, loaded.weights, site, say,
                                                     show_progress)
                              if chosen_options.feature_vis and conv_captures
                              and isinstance(preprocessing, Preprocessing) else {})
                clock.lap("feature vis")
                layers = [LayerRecord.of(capture, pictures, examples.get(capture.name),
                                         visualised.get(capture.name), explained.get(capture.name))
                          for capture, pictures in filters]
                with stage("Writing PNGs", writer.pending, "file", show_progress) as ticker:
                    writer.close(ticker.update)
                clock.lap("png")
            record = ReportRecord(
                created=build_time(), versions=manifests.versions(), command=command,
                model=_model_info(loaded), weights=loaded.weights,
                preprocessing=preprocessing.describe(), options=chosen_options,
                notes=[*notes, *skipped, *_category_notes(logits, loaded.categories,
                                                          chosen_options.categories_must_match)],
                inputs=[InputRecord(given.describe(), input_png(number),
                                    _predictions(logits, loaded.categories, number))
                        for number, given in enumerate(givens)],
                layers=layers, dataset=dataset.summary(chosen_options) if dataset else None)
            written = manifests.write(site, record)
            write_pages(site, record, preprocessing.input_size)
            clock.lap("html")
            single = _single_file(site, say) if chosen_options.self_contained else None
            clock.lap("single file")
        final = Path(site_dir)
        return Report(final, final / "index.html", record, written, clock.timings,
                      final / single.path.name if single else None,
                      encode_seconds=writer.seconds)


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


def _forward(loaded: LoadedModel, batch: torch.Tensor, device: torch.device,
             recorder: ActivationRecorder, chosen: list[str]) -> torch.Tensor | None:
    module = loaded.module
    try:
        with moved_to(module, device), ConvHooks(module, recorder, chosen) as hooks:
            output = hooks.run(laid_out(batch.to(device), module))
        return output.float().cpu() if isinstance(output, torch.Tensor) else None
    except (RuntimeError, ValueError) as error:
        # The meta check passed (or could not tell): explain a shape failure if it is one.
        explain_failure(module, int(batch.shape[-1]), loaded.name, error,
                        channels=int(batch.shape[1]))
        raise


def _skipped_notes(skipped: list[tuple[str, str]], shown: bool) -> list[str]:
    """Chosen layers whose output is not a feature map: a note, or an error if none is left."""
    if not skipped:
        return []
    listed = "; ".join(f"{name}: {why}" for name, why in skipped[:3])
    more = f"; and {len(skipped) - 3} more" if len(skipped) > 3 else ""
    if not shown:
        raise ReportError(f"None of the layers --layers chose can be shown as maps ({listed}"
                          f"{more}); choose layers whose output is a feature map or a token "
                          "sequence.")
    return [f"{len(skipped)} chosen layer{'s are' if len(skipped) > 1 else ' is'} not shown, "
            f"as {'their' if len(skipped) > 1 else 'its'} output is not a feature map: "
            f"{listed}{more}."]


def _filter_pictures(captures: list[Capture], module: nn.Module, writer: PngWriter,
                     site: Path) -> list[tuple[Capture, FilterPicture | None]]:
    """Each capture with its conv's filter picture (drawn once per module, shared by calls);
    layers that are not convolutions have none."""
    convs = dict(conv_layers(module))
    pictures: dict[str, FilterPicture] = {}
    layers: list[tuple[Capture, FilterPicture | None]] = []
    for capture in captures:
        if capture.module_name not in convs:
            layers.append((capture, None))
            continue
        picture = pictures.get(capture.module_name)
        if picture is None:
            figure = filter_figure(convs[capture.module_name])
            png = f"{IMAGE_DIR}/{capture.slug}-filters.png"
            writer.submit(figure.pixels, site / png)
            picture = FilterPicture(png, (figure.pixels.shape[1], figure.pixels.shape[0]),
                                    figure.view, figure.description, figure.layout,
                                    figure.scale, figure.strongest_input, figure.stats)
            pictures[capture.module_name] = picture
        layers.append((capture, picture))
    return layers


def _model_info(loaded: LoadedModel) -> ModelInfo:
    return ModelInfo(loaded.name, type(loaded.module).__name__,
                     sum(p.numel() for p in loaded.module.parameters()),
                     len(conv_layers(loaded.module)), loaded.kind, loaded.source_sha256)


def _category_notes(logits: Any, categories: list[str] | None, must_match: bool = False
                    ) -> list[str]:
    # one line however many images: the names and the outputs disagree for all of them
    """A warning (and a note in the report) when the names do not match the outputs; an
    error when they must (a --categories file made for this model)."""
    if not categories or not _is_logits(logits) or len(categories) == logits.shape[1]:
        return []
    if must_match:
        raise ReportError(f"--categories has {len(categories)} label"
                          f"{'s' if len(categories) != 1 else ''} but the model has "
                          f"{logits.shape[1]} outputs; give one label per output, in order.")
    note = (f"categories has {len(categories)} names but the model has {logits.shape[1]} "
            "outputs; the predictions are labelled by index instead.")
    log.warning("%s", note)
    return [note]


def _is_logits(logits: Any) -> bool:
    return isinstance(logits, torch.Tensor) and logits.dim() == 2


def _predictions(logits: Any, categories: list[str] | None, number: int = 0,
                 top: int = 5) -> list[Prediction]:
    """The top predictions for image ``number`` of the batch."""
    if not _is_logits(logits):
        return []
    if categories and len(categories) != logits.shape[1]:
        categories = None
    probabilities = logits[number].float().softmax(dim=0)
    values, indices = probabilities.topk(min(top, probabilities.numel()))
    result = []
    for value, index in zip(values.tolist(), indices.tolist(), strict=True):
        label = categories[index] if categories and index < len(categories) else f"class {index}"
        result.append(Prediction(label, int(index), float(value)))
    return result
