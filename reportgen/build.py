"""``build_report``: model + weights + image -> a static site. The CLI is a thin layer on this."""
from __future__ import annotations

import logging
import os
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

import torch
from torch import nn

from reportgen import manifest as manifests
from reportgen import views
from reportgen.capture import ConvHooks, conv_layers
from reportgen.errors import ReportError
from reportgen.filters import filter_figure
from reportgen.grids import check_normalization, colormap_lut
from reportgen.images import load_image
from reportgen.models import (LoadedModel, build_architecture, check_model_name, load_model,
                              select_layers)
from reportgen.inputsize import check_input_size, explain_failure
from reportgen.output import MANIFEST, check_target, staged_folder
from reportgen.pngio import DEFAULT_COMPRESS_LEVEL, PngWriter
from reportgen.preprocess import Preprocessing
from reportgen.recorder import IMAGE_DIR, ActivationRecorder, LayerRecord
from reportgen.site import copy_icon, copy_static, render

log = logging.getLogger(__name__)
DEFAULT_TILE_CAP = 256


@dataclass
class Report:
    """What :func:`build_report` wrote, for a notebook or a script to use."""

    site_dir: Path
    index: Path
    manifest: dict[str, Any]
    layers: list[LayerRecord]
    predictions: list[dict[str, Any]]
    timings: dict[str, float] = field(default_factory=dict)
    single_file: Path | None = None  # the one-file report, with self_contained=True
    #: Seconds the PNG worker threads spent encoding, summed over threads. They overlap the
    #: stages in ``timings`` (whose "png" is only the wait for the last files).
    encode_seconds: float = 0.0

    @property
    def seconds(self) -> float:
        return sum(self.timings.values())

    def _repr_html_(self) -> str:  # a clickable summary in Jupyter
        return (f'<a href="{self.index.as_uri()}">{self.index}</a>: {len(self.layers)} conv '
                f'layers of {self.manifest["model"]["name"]}')


class _Stopwatch:
    def __init__(self) -> None:
        self.timings: dict[str, float] = {}
        self._last = time.perf_counter()

    def lap(self, stage: str) -> None:
        now = time.perf_counter()
        self.timings[stage] = self.timings.get(stage, 0.0) + now - self._last
        self._last = now


def build_report(model: str | nn.Module = "vgg16", weights: str | os.PathLike | None = "DEFAULT",
                 image: Any = "astronaut", site_dir: str | os.PathLike = "site", *,
                 layers: str | None = None, normalize: str = "channel", cmap: str = "gray",
                 rectify: bool = False, size: int | None = None,
                 tile_cap: int | None = DEFAULT_TILE_CAP,
                 compress_level: int = DEFAULT_COMPRESS_LEVEL, seed: int = 0,
                 device: str = "cpu", categories: list[str] | None = None,
                 command: str | None = None, self_contained: bool = False,
                 progress: Callable[[str], None] | None = None) -> Report:
    """Run the model once on the image and publish every conv layer's view of it.

    ``model`` is a torchvision classification model name or your own ``nn.Module``;
    ``weights`` is ``"DEFAULT"``, ``"none"``, a weights enum name such as ``"IMAGENET1K_V1"`` or
    a checkpoint path; ``image`` is an skimage sample name, a file path, a PIL image, an array
    or a tensor. Returns a :class:`Report` describing what was written to ``site_dir``.
    ``self_contained=True`` also writes ``site_dir/report.html``, the whole report in one file.
    """
    say = progress or log.info
    clock = _Stopwatch()
    check_normalization(normalize)
    lut = colormap_lut(cmap)  # unknown colormaps fail before any work is done
    if size is not None and size < 1:
        raise ReportError(f"--size must be a positive number of pixels, not {size}.")
    if not 0 <= compress_level <= 9:
        raise ReportError(f"PNG compression level must be 0-9, not {compress_level}.")
    torch_device = _device(device)
    target = check_target(Path(site_dir))  # a refused folder fails before any heavy work
    source = load_image(image)
    if isinstance(model, str) and size is not None:
        _check_size_before_loading(model, size)
    clock.lap("image")
    say(f"Loading {model if isinstance(model, str) else type(model).__name__} ...")
    loaded = load_model(model, weights, seed=seed, categories=categories)
    clock.lap("model")
    chosen = select_layers([name for name, _ in conv_layers(loaded.module)], layers)
    if not chosen:
        raise ReportError(f"Model {loaded.name} has no Conv2d layer, so there is nothing to show.")
    preprocessing = Preprocessing.from_preset(loaded.preprocessing, size)
    # No size check here: a meta dry run costs 0.2 s on MobileNetV2 on every build, and a
    # too-small input is explained by _forward's handler (same search) when it really fails.
    batch = preprocessing(source.rgb)
    clock.lap("image")

    with staged_folder(target) as site:
        with PngWriter(compress_level) as writer, \
                _core_left_for_png(batch.shape[-2] * batch.shape[-1]):
            recorder = ActivationRecorder(site, writer, normalize=normalize, lut=lut,
                                          rectify=rectify, tile_cap=tile_cap)
            say(f"Running {loaded.name} once with hooks on {len(chosen)} conv layers ...")
            logits = _forward(loaded, batch, torch_device, recorder, chosen)
            clock.lap("forward")
            clock.timings["forward"] -= recorder.seconds
            clock.timings["grids"] = recorder.seconds
            writer.submit(preprocessing.to_picture(batch), site / IMAGE_DIR / "input.png")
            _add_filters(recorder.records, loaded.module, writer, site)
            clock.lap("filters")
            writer.close()
            clock.lap("png")
        predictions = _predictions(logits, loaded.categories)
        record = _manifest(loaded, source, preprocessing, recorder.records, predictions,
                           dict(normalize=normalize, cmap=cmap, rectify=rectify, size=size,
                                tile_cap=tile_cap, layers=layers, seed=seed,
                                compress_level=compress_level), command)
        _write_site(site, record, recorder.records, loaded, source, preprocessing, predictions)
        clock.lap("html")
        single = _single_file(site, say) if self_contained else None
        clock.lap("single file")
    final = Path(site_dir)
    return Report(final, final / "index.html", record, recorder.records, predictions,
                  clock.timings, final / single.path.name if single else None,
                  encode_seconds=writer.seconds)


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


#: Inputs up to this many pixels leave the PNG writers a core (see _core_left_for_png).
SHARE_CORE_UP_TO = 512 * 512


@contextmanager
def _core_left_for_png(pixels: int) -> Iterator[None]:
    """While the PNG workers encode, torch computes with one thread fewer (at least one).

    On 2 cores, torch's 2 OpenMP threads and the encoder threads fought over the cores: VGG16
    at 224 took 2.6 s of CPU for 1.0 s of work (OpenMP threads waiting at barriers for a
    thread whose core an encoder had), 3.3 s wall; with one torch thread, 1.1 s of CPU and
    1.5 s wall (medians of 7 alternating runs, load ~4). Encoding is bounded by --tile-cap
    while the forward pass grows with the input: at 1024x1024 all threads won (7.4-8.4 s
    against 9.2-9.8 s), so larger inputs keep them. The setting is restored afterwards.
    """
    threads = torch.get_num_threads()
    if pixels <= SHARE_CORE_UP_TO:
        torch.set_num_threads(max(1, threads - 1))
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def _device(device: str) -> torch.device:
    try:
        chosen = torch.device(device)
    except RuntimeError:
        raise ReportError(f"Unknown device '{device}'; use cpu or cuda.") from None
    if chosen.type == "cuda" and not torch.cuda.is_available():
        raise ReportError("--device cuda was asked for but no CUDA GPU is available; use cpu.")
    return chosen


def _forward(loaded: LoadedModel, batch: torch.Tensor, device: torch.device,
             recorder: ActivationRecorder, chosen: list[str]) -> torch.Tensor | None:
    module = loaded.module
    original = _device_of(module)
    try:
        module.to(device)
        with ConvHooks(module, recorder, chosen) as hooks:
            output = hooks.run(_laid_out(batch.to(device), module))
        return output.float().cpu() if isinstance(output, torch.Tensor) else None
    except (RuntimeError, ValueError) as error:
        # The meta check passed (or could not tell): explain a shape failure if it is one.
        explain_failure(module, int(batch.shape[-1]), loaded.name, error)
        raise
    finally:
        module.to(original)


def _laid_out(batch: torch.Tensor, module: nn.Module) -> torch.Tensor:
    """Channels-last for torchvision's models, contiguous NCHW for anyone else's.

    VGG16 at 1024x1024: the forward pass alone peaked 768 MB above its start with an NCHW
    input (oneDNN reorders each conv output through a third activation-sized buffer) and
    512 MB channels-last, 6.8 s of CPU instead of 8.2 s (one thread). The preprocessed batch
    is channels-last only by accident (``pil_to_tensor`` keeps HWC memory) and with a batch
    stride of 3, which oneDNN does not take as channels-last: the build peaked 829 MB above
    its start with it, 581 MB after ``.to(memory_format=torch.channels_last)``, which
    re-strides it. All 65 torchvision classification models that build on the meta device
    run channels-last; a user's module may ``.view()`` its activations, which channels-last
    strides break.
    """
    if type(module).__module__.startswith("torchvision.models."):
        return batch.to(memory_format=torch.channels_last)
    return batch.contiguous()


def _device_of(module: nn.Module) -> torch.device:
    for tensor in module.parameters():
        return tensor.device
    return torch.device("cpu")


def _add_filters(records: list[LayerRecord], module: nn.Module, writer: PngWriter,
                 site: Path) -> None:
    convs = dict(conv_layers(module))
    figures: dict[str, LayerRecord] = {}
    for record in records:
        first = figures.get(record.module_name)
        if first is None:  # a module called twice shares one figure
            figure = filter_figure(convs[record.module_name])
            record.filters_png = f"{IMAGE_DIR}/{record.slug}-filters.png"
            writer.submit(figure.pixels, site / record.filters_png)
            record.filters_size = (figure.pixels.shape[1], figure.pixels.shape[0])
            record.filter_view, record.filter_description = figure.view, figure.description
            record.filter_layout, record.filter_scale = figure.layout, figure.scale
            record.strongest_input, record.weight_stats = figure.strongest_input, figure.stats
            figures[record.module_name] = record
            continue
        for attribute in ("filters_png", "filters_size", "filter_view", "filter_description",
                          "filter_layout", "filter_scale", "strongest_input", "weight_stats"):
            setattr(record, attribute, getattr(first, attribute))


def _predictions(logits: Any, categories: list[str] | None, top: int = 5) -> list[dict[str, Any]]:
    if not isinstance(logits, torch.Tensor) or logits.dim() != 2 or logits.shape[0] != 1:
        return []
    probabilities = logits[0].float().softmax(dim=0)
    values, indices = probabilities.topk(min(top, probabilities.numel()))
    result = []
    for value, index in zip(values.tolist(), indices.tolist()):
        label = categories[index] if categories and index < len(categories) else f"class {index}"
        result.append({"label": label, "index": int(index), "probability": float(value)})
    return result


def _manifest(loaded: LoadedModel, source: Any, preprocessing: Preprocessing,
              records: list[LayerRecord], predictions: list[dict[str, Any]],
              options: dict[str, Any], command: str | None) -> dict[str, Any]:
    return {
        "schema_version": manifests.SCHEMA_VERSION,
        "generator": "reportgen",
        "created": manifests.build_time(),
        "versions": manifests.versions(),
        "command": command,
        "model": {"name": loaded.name, "class": type(loaded.module).__name__,
                  "parameters": sum(p.numel() for p in loaded.module.parameters()),
                  "conv_layers": len(conv_layers(loaded.module))},
        "weights": loaded.weights,
        "image": source.describe(),
        "preprocessing": preprocessing.describe(),
        "options": options,
        "shown": ("max(0, conv output) (--rectify)" if options["rectify"]
                  else "conv output before any activation function"),
        "notes": [*loaded.notes, *source.notes],
        "predictions": [{"label": p["label"], "index": p["index"],
                         "probability": round(p["probability"], 6)} for p in predictions],
        "layers": [manifests.layer_entry(record) for record in records],
    }


def _write_site(site: Path, record: dict[str, Any], records: list[LayerRecord],
                loaded: LoadedModel, source: Any, preprocessing: Preprocessing,
                predictions: list[dict[str, Any]]) -> None:
    assets = {**copy_static(site), "icon.svg": copy_icon(site, IMAGE_DIR)}
    input_png = f"{IMAGE_DIR}/input.png"
    common = dict(manifest=record, layers=records, assets=assets, predictions=predictions,
                  input_png=input_png, input_size=preprocessing.crop, toc=views.toc(records))
    render(site, "index.html", "index.html", page="index", **common)
    for position, layer in enumerate(records):
        data = views.layer_data(layer, record["layers"][position], record["options"], input_png)
        render(site, "layer.html", layer.page, page=layer.page, layer=layer, data=data,
               scale=data["scale"], filter_scale=views.filter_display_scale(*layer.filters_size),
               previous=records[position - 1] if position > 0 else None,
               next=records[position + 1] if position + 1 < len(records) else None, **common)
    (site / ".nojekyll").write_text("", encoding="utf-8")
    manifests.write(site / MANIFEST, record)
