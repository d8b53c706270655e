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
from reportgen.forward.device import core_left_for_png, laid_out, moved_to, parse_device
from reportgen.forward.hooks import ConvHooks, conv_layers
from reportgen.forward.recorder import ActivationRecorder
from reportgen.inputs.images import SourceImage, load_image
from reportgen.inputs.inputsize import check_input_size, explain_failure
from reportgen.inputs.models import (
    LoadedModel,
    build_architecture,
    check_model_name,
    load_model,
    select_layers,
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
    LayerDataset,
    LayerRecord,
    ModelInfo,
    Prediction,
    ReportRecord,
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
        return (f"<Report of {self.record.model.name}: {len(self.layers)} conv layers in "
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
                 image: Any = DEFAULT_IMAGE, site_dir: str | os.PathLike[str] = DEFAULT_SITE_DIR,
                 options: BuildOptions | None = None, *, command: str | None = None,
                 progress: Callable[[str], None] | None = None, show_progress: bool = False,
                 **overrides: Any) -> Report:
    """Run the model once on the image and publish every conv layer's view of it.

    ``model`` is a torchvision classification model name or your own ``nn.Module``;
    ``weights`` is ``"DEFAULT"``, ``"none"``, a weights enum name such as ``"IMAGENET1K_V1"`` or
    a checkpoint path; ``image`` is an skimage sample name, a file path, a PIL image, an array
    or a tensor, or a list of up to 16 of them, shown side by side on one shared range. How
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
        raise ReportError("No image was given; pass an image, or --dataset to use its first.")
    sources = [load_image(item) for item in _images(image)] if image is not None else []
    files = dataset_files(chosen_options)
    if isinstance(model, str) and chosen_options.size is not None:
        _check_size_before_loading(model, chosen_options.size)
    clock.lap("image")
    say(f"Loading {model if isinstance(model, str) else type(model).__name__} ...")
    categories = list(chosen_options.categories) if chosen_options.categories else None
    loaded = load_model(model, weights, seed=chosen_options.seed, categories=categories)
    clock.lap("model")
    chosen = select_layers([name for name, _ in conv_layers(loaded.module)],
                           chosen_options.layers)
    if not chosen:
        raise ReportError(f"Model {loaded.name} has no Conv2d layer, so there is nothing to show.")
    preprocessing = Preprocessing.from_preset(loaded.preprocessing, chosen_options.size)
    dataset = None
    if files is not None:
        say(f"Mining {len(files)} dataset files for each channel's top {chosen_options.top_k} "
            "images ...")
        dataset = mine_for_report(loaded.module, files, chosen, preprocessing, chosen_options,
                                  target, loaded.weights.get("sha256"), show_progress)
        clock.lap("dataset")
        if not sources:
            sources = [load_location(dataset.first_image())]
    # No size check here: a meta dry run costs 0.2 s on MobileNetV2 on every build, and a
    # too-small input is explained by _forward's handler (same search) when it really fails.
    batch = torch.cat([preprocessing(source.rgb) for source in sources])
    notes = [*loaded.notes, *_image_notes(sources, preprocessing)]
    clock.lap("image")

    with staged_folder(target) as site:
        with PngWriter(chosen_options.compress_level) as writer, \
                core_left_for_png(batch.shape[-2] * batch.shape[-1]):
            say(f"Running {loaded.name} once with hooks on {len(chosen)} conv layers ...")
            with stage("Forward pass", len(chosen), "layer", show_progress) as ticker:
                recorder = ActivationRecorder(site, writer, chosen_options, ticker.update,
                                              dataset.peaks() if dataset else None)
                logits = _forward(loaded, batch, torch_device, recorder, chosen)
            clock.lap("forward")
            clock.timings["forward"] -= recorder.seconds
            clock.timings["grids"] = recorder.seconds
            for number in range(len(sources)):
                writer.submit(preprocessing.to_picture(batch[number:number + 1]),
                              site / input_png(number))
            examples = (dataset_layers(dataset, recorder.captures, site, writer, chosen_options)
                        if dataset else {})
            clock.lap("dataset crops")
            layers = _with_filters(recorder.captures, loaded.module, writer, site, examples)
            clock.lap("filters")
            with stage("Writing PNGs", writer.pending, "file", show_progress) as ticker:
                writer.close(ticker.update)
            clock.lap("png")
        record = ReportRecord(
            created=build_time(), versions=manifests.versions(), command=command,
            model=_model_info(loaded), weights=loaded.weights,
            preprocessing=preprocessing.describe(), options=chosen_options,
            notes=[*notes, *_category_notes(logits, loaded.categories)],
            inputs=[InputRecord(source.describe(), input_png(number),
                                _predictions(logits, loaded.categories, number))
                    for number, source in enumerate(sources)],
            layers=layers, dataset=dataset.summary(chosen_options) if dataset else None)
        written = manifests.write(site, record)
        write_pages(site, record, preprocessing.crop)
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


def _image_notes(sources: list[SourceImage], preprocessing: Preprocessing) -> list[str]:
    """Each image's own notes (conversions, crop), named by image when there are several."""
    notes = []
    for source in sources:
        crop = preprocessing.crop_note(source.rgb.width, source.rgb.height)
        for note in [*source.notes, *([crop] if crop else [])]:
            notes.append(note if len(sources) == 1 else f"{source.name}: {note}")
    return notes


def _single_file(site: Path, say: Callable[[str], None]) -> Any:
    from reportgen.publish.singlefile import write_single_file

    single = write_single_file(site)
    say(f"Single-file report {single.path.name}: {single.size / 2**20:.1f} MB "
        f"({single.pages} pages, {single.assets} files inlined)")
    return single


def _check_size_before_loading(name: str, size: int) -> None:
    """A too-small --size fails on the meta skeleton, before seconds of weight loading."""
    check_model_name(name)
    check_input_size(build_architecture(name, on_meta=True), size, name)


def _forward(loaded: LoadedModel, batch: torch.Tensor, device: torch.device,
             recorder: ActivationRecorder, chosen: list[str]) -> torch.Tensor | None:
    module = loaded.module
    try:
        with moved_to(module, device), ConvHooks(module, recorder, chosen) as hooks:
            output = hooks.run(laid_out(batch.to(device), module))
        return output.float().cpu() if isinstance(output, torch.Tensor) else None
    except (RuntimeError, ValueError) as error:
        # The meta check passed (or could not tell): explain a shape failure if it is one.
        explain_failure(module, int(batch.shape[-1]), loaded.name, error)
        raise


def _with_filters(captures: list[Capture], module: nn.Module, writer: PngWriter,
                  site: Path, examples: dict[str, LayerDataset]) -> list[LayerRecord]:
    """Each capture with its conv's filter picture (drawn once per module, shared by calls)."""
    convs = dict(conv_layers(module))
    pictures: dict[str, FilterPicture] = {}
    layers = []
    for capture in captures:
        picture = pictures.get(capture.module_name)
        if picture is None:
            figure = filter_figure(convs[capture.module_name])
            png = f"{IMAGE_DIR}/{capture.slug}-filters.png"
            writer.submit(figure.pixels, site / png)
            picture = FilterPicture(png, (figure.pixels.shape[1], figure.pixels.shape[0]),
                                    figure.view, figure.description, figure.layout,
                                    figure.scale, figure.strongest_input, figure.stats)
            pictures[capture.module_name] = picture
        layers.append(LayerRecord.of(capture, picture, examples.get(capture.name)))
    return layers


def _model_info(loaded: LoadedModel) -> ModelInfo:
    return ModelInfo(loaded.name, type(loaded.module).__name__,
                     sum(p.numel() for p in loaded.module.parameters()),
                     len(conv_layers(loaded.module)))


def _category_notes(logits: Any, categories: list[str] | None) -> list[str]:
    # one line however many images: the names and the outputs disagree for all of them
    """A warning (and a note in the report) when the names do not match the outputs."""
    if not categories or not _is_logits(logits) or len(categories) == logits.shape[1]:
        return []
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
