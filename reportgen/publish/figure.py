"""Publication figures: chosen channels of chosen layers, as PDF, SVG or PNG for a paper.

The site's PNGs are normalised, shrunk and 8-bit; a figure needs the real values. So the model
runs once more, with hooks (reportgen's :class:`~reportgen.forward.hooks.ConvHooks`) that keep a
clone of the selected layers' outputs only. Each layer becomes one block of panels, with one
colorbar in real units that names the normalisation, so a reader can compare what they see.

What venues ask for, and how we give it: TrueType (Type 42) fonts rather than matplotlib's
default Type 3, vector text in SVG, no smoothing of the maps (nearest neighbour, also inside
PDF/SVG where the maps are embedded at ``dpi``), one- or two-column widths, and the same bytes
for the same inputs under ``SOURCE_DATE_EPOCH``. matplotlib is imported here and nowhere else.
"""
from __future__ import annotations

import difflib
import logging
import os
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from reportgen.errors import ReportError
from reportgen.forward.device import moved_to, parse_device
from reportgen.forward.features import FeatureView, read_feature_map
from reportgen.forward.hooks import ConvHooks, conv_layers, parse_record_name, record_name
from reportgen.forward.stats import activation_stats, rank_channels
from reportgen.inputs.images import SourceImage, load_image
from reportgen.inputs.inputsize import size_failures_explained
from reportgen.inputs.modelinput import input_channels
from reportgen.inputs.models import load_model
from reportgen.inputs.modelspec import FILE, parse_model_spec
from reportgen.inputs.preprocess import Preprocessing
from reportgen.options import (
    DEFAULT_IMAGE,
    DEFAULT_MODEL,
    DEFAULT_WEIGHTS,
    FIGURE_NORMALIZATIONS,
    BuildOptions,
    choices,
)
from reportgen.pictures.colormaps import colormap
from reportgen.pictures.ranges import picture_range
from reportgen.publish.figuredraw import (
    DEFAULT_CHANNELS,
    FORMATS,
    PANEL_INCHES,
    SMALL_BAR_IN,
    UNITS,
    Figure,
    LayerPanel,
    Selection,
    draw_blocks,
    finish_figure,
    shown_label,
)
from reportgen.publish.figuresite import ReportPictures, parse_panels
from reportgen.report import manifest as manifests

log = logging.getLogger(__name__)

def parse_width(text: str | float) -> float:
    """``3.5in``, ``7in``, ``89mm``, ``17.8cm``, ``252pt`` or a bare number of inches."""
    if isinstance(text, (int, float)):
        inches = float(text)
    else:
        match = re.fullmatch(r"\s*([0-9]*\.?[0-9]+)\s*(in|cm|mm|pt)?\s*", str(text))
        if not match:
            raise ReportError(f"--width '{text}' is not a length; use 3.5in (one column), "
                              "7in (two columns), 89mm or 17.8cm.")
        inches = float(match.group(1)) * UNITS[match.group(2) or "in"]
    if not 1.0 - 1e-9 <= inches <= 20.0 + 1e-9:
        raise ReportError(f"--width {text} is {inches:.2f} in; use 1-20 in (3.5in for one "
                          "column, 7in for two).")
    return inches


def make_figure(output: str | os.PathLike[str], select: Sequence[str | Selection], *,
                model: str | nn.Module | None = None,
                weights: str | os.PathLike[str] | None = None,
                image: Any = None, source: str | os.PathLike[str] | None = None,
                normalize: str = "layer", cmap: str | None = None, width: str | float = "7in",
                dpi: int = 300, columns: int | None = None, size: int | None = None,
                rectify: bool | None = None, seed: int = 0, device: str = "cpu",
                model_args: Any = (), panels: str | Sequence[str] = "map") -> Figure:
    """Draw the selected channels of the selected layers into ``output`` (.pdf/.svg/.png).

    Either name a ``model``/``weights``/``image`` as for :func:`reportgen.build_report` (the
    defaults are the same), or pass ``source``, a report's folder or its manifest.json, to
    rebuild exactly that report's input (``weights``/``image`` then only point at files the
    manifest names by base name). ``model_args`` are keyword arguments for a model factory,
    as ``--model-arg``. ``normalize="layer"`` gives each layer one colour scale, its
    real min..max; ``"channel"`` gives every channel its own scale and colorbar.

    ``panels`` other than ``"map"`` (``"map,examples,featurevis,gradcam"``, any of them) draw
    one row per channel with those pictures from the report ``source``; without ``"map"``
    the model does not run at all.
    """
    target = Path(output)
    kind = _check_request(target, normalize, dpi, columns)
    inches = parse_width(width)
    selections = [item if isinstance(item, Selection) else Selection.parse(item)
                  for item in select]
    if not selections:
        raise ReportError("Choose what to draw with --select LAYER or --select LAYER:CH,CH "
                          "(reportgen layers --model NAME lists the layers).")
    kinds = parse_panels(panels)
    pictures = None
    if kinds != ("map",):  # rows of a built report's pictures, all checked before any work
        if source is None:
            raise ReportError(f"--panels {','.join(kinds)} draws a built report's pictures; "
                              "name the report with --from SITE.")
        pictures = ReportPictures(manifests.read(Path(source)))
        selections = [Selection(item.layer, tuple(pictures.channels(item.layer, item.channels,
                                                                    kinds)))
                      for item in selections]

    if source is not None:
        inputs = _inputs_from_report(Path(source), weights, image) if "map" in kinds else \
            _Inputs(None, None, None, manifests.read(Path(source)).options, None)
    else:
        inputs = _Inputs(model if model is not None else DEFAULT_MODEL,
                         weights if weights is not None else DEFAULT_WEIGHTS,
                         image if image is not None else DEFAULT_IMAGE,
                         BuildOptions(seed=seed, size=size, model_args=model_args), None)
    shown_options = inputs.options.replace(
        rectify=inputs.options.rectify if rectify is None else rectify,
        cmap=cmap or inputs.options.cmap)
    drawn_with = colormap(shown_options.cmap)
    if "map" in kinds:
        drawn, convs_only = _maps(inputs, selections, normalize, shown_options.rectify,
                                  parse_device(device))
    else:
        assert pictures is not None
        drawn, convs_only = [], all(pictures.layer(item.layer).get("kind") == "conv"
                                    for item in selections)
    figure = Figure(target, kind, inches, 0.0, dpi, normalize, drawn, kinds)
    shown = shown_label(shown_options.rectify, convs_only)
    if pictures is None:
        per_panel = PANEL_INCHES + (SMALL_BAR_IN if normalize != "layer" else 0.0)
        draw_blocks(figure, drawn_with, columns or max(1, round(inches / per_panel)), shown)
    else:
        from reportgen.publish.figurerows import channel_rows, draw_rows

        rows = channel_rows(pictures, selections, drawn, kinds, inches)
        finish_figure(figure, lambda: draw_rows(figure, rows, kinds, drawn_with, shown))
    log.debug("Wrote %s (%.2f x %.2f in, %s bytes)", target, figure.width, figure.height,
              f"{figure.size:,}")
    return figure


def _check_request(target: Path, normalize: str, dpi: int, columns: int | None) -> str:
    """The figure's format (from the file name), after refusing what cannot be drawn."""
    kind = FORMATS.get(target.suffix.lower())
    if kind is None:
        raise ReportError(f"Cannot tell the figure format from '{target.name}'; end the file "
                          "name with .pdf, .svg or .png.")
    if target.is_dir():
        raise ReportError(f"'{target}' is a folder; pass a file name such as figure.pdf.")
    if normalize not in FIGURE_NORMALIZATIONS:
        raise ReportError(f"A figure cannot use the normalisation '{normalize}'; use "
                          f"{choices(FIGURE_NORMALIZATIONS)}.")
    if not 50 <= dpi <= 2400:
        raise ReportError(f"--dpi {dpi} is out of range; use 50-2400 (300 for print).")
    if columns is not None and columns < 1:
        raise ReportError("--columns must be at least 1.")
    return kind


def _maps(inputs: _Inputs, selections: list[Selection], normalize: str, rectify: bool,
          device: torch.device) -> tuple[list[LayerPanel], bool]:
    """Run the model once on the image: each selection's maps, and whether all are convs."""
    assert inputs.model is not None
    picture = load_image(inputs.image)
    _check_hash(picture, inputs.image_sha256)
    loaded = load_model(inputs.model, inputs.weights, seed=inputs.options.seed,
                        model_args=inputs.options.model_args,
                        weights_key=inputs.options.weights_key)
    preprocessing = inputs.preprocessing or Preprocessing.chosen(
        loaded.preprocessing, inputs.options, input_channels(loaded.module)[0])[0]
    batch = preprocessing(picture.rgb)
    with size_failures_explained(loaded.module, batch, loaded.name):
        maps = capture(loaded.module, batch, selections, device)
    panels = [_panel(selection, maps[selection.layer], normalize, rectify)
              for selection in selections]
    convs = {name for name, _ in conv_layers(loaded.module)}
    return panels, all(parse_record_name(panel.layer)[0] in convs for panel in panels)


@dataclass(frozen=True)
class _Inputs:
    """What to run: a model, its weights, an image, and how the report was built."""

    model: str | nn.Module | None  # None: only the report's pictures are drawn
    weights: Any
    image: Any
    options: BuildOptions
    preprocessing: Preprocessing | None  # a report's recorded one; None: the weights' own
    image_sha256: str | None = None


def _inputs_from_report(source: Path, weights: Any, image: Any) -> _Inputs:
    """Rebuild the model, weights, image and preprocessing a report's manifest records."""
    saved = manifests.read(source)
    if saved.in_memory_model:
        raise ReportError(f"The report in '{source}' was built from Python with your own "
                          f"{saved.model.name} module, which no manifest can rebuild; call "
                          "reportgen.publish.figure.make_figure(out, select, model=your_module, "
                          "image=...) instead.")
    folders = [Path.cwd(), saved.path.parent.parent, saved.path.parent]
    recorded_weights, recorded_image = saved.weights, saved.image
    if weights is None:
        name = recorded_weights.get("name")
        if name == "checkpoint":
            weights = _find_file(recorded_weights.get("file", ""), folders, "checkpoint", "-w")
        else:
            weights = name
    if image is None:
        kind, name = recorded_image.get("kind"), recorded_image.get("source", "")
        if kind == "skimage":
            image = name
        elif kind == "file":
            image = _find_file(name, folders, "image", "-i")
        else:
            raise ReportError(f"The report in '{source}' was built from an in-memory image "
                              f"({name}); pass the image file with -i PATH.")
    seed = int(recorded_weights.get("seed", saved.options.seed) or 0)
    model = saved.model.name
    if saved.model.kind == FILE:  # a model file, recorded like the image: look near the report
        spec = parse_model_spec(model)
        if not Path(spec.target).is_file():
            found = _find_file(Path(spec.target).name, folders, "model file", "-m")
            model = f"{found}:{spec.attribute}"
    return _Inputs(model, weights, image, saved.options.replace(seed=seed),
                   saved.preprocessing, recorded_image.get("sha256"))


def _find_file(name: str, folders: Iterable[Path], what: str, option: str) -> Path:
    """The manifest keeps base names only (never a user's full path): look near the report."""
    for folder in folders:
        candidate = folder / name
        if name and candidate.is_file():
            return candidate
    raise ReportError(f"The report was built from the {what} '{name}', which is not in the "
                      f"current folder or beside the report; point at it with {option} PATH.")


def _check_hash(picture: SourceImage, expected: str | None) -> None:
    if expected and picture.sha256 != expected:
        log.warning("Image '%s' differs from the one the report was built from (SHA-256 %s..., "
                    "report %s...); the figure shows this image.", picture.name,
                    picture.sha256[:12], expected[:12])


def capture(module: nn.Module, batch: torch.Tensor, selections: Sequence[Selection],
            device: torch.device | None = None) -> dict[str, torch.Tensor]:
    """One forward pass; a (C, H, W) float CPU clone of each selected layer's output (a block
    that is not a convolution: its output read as maps, as in the report)."""
    device = device or torch.device("cpu")
    names = [name for name, _ in conv_layers(module)]
    others = {name for name, sub in module.named_modules() if name} - set(names)
    wanted: dict[str, str] = {}
    for selection in selections:
        module_name = parse_record_name(selection.layer)[0]
        if module_name not in names and module_name not in others:
            close = difflib.get_close_matches(selection.layer, names, n=3, cutoff=0.6)
            hint = f"did you mean {', '.join(close)}?" if close else (
                "the layers are " + ", ".join(names[:8]) +
                (f", ... ({len(names)} in all)" if len(names) > 8 else ""))
            raise ReportError(f"--select: '{selection.layer}' is not a layer of this "
                              f"model; {hint}")
        wanted[selection.layer] = module_name
    kept: dict[str, torch.Tensor] = {}
    unreadable: dict[str, str] = {}
    input_hw = (int(batch.shape[-2]), int(batch.shape[-1]))

    def keep(name: str, call: int, layer: nn.Module, output: Any) -> None:
        full = record_name(name, call)
        if full not in wanted:
            return
        if name not in others:  # clone: an in-place ReLU runs right after this hook
            kept[full] = output[0].detach().float().cpu().clone()
            return
        view = read_feature_map(output, input_hw)  # a block: its output as maps
        if isinstance(view, FeatureView):
            kept[full] = view.batch[0].detach().float().cpu().clone()
        else:
            unreadable[full] = view

    with moved_to(module, device), \
            ConvHooks(module, keep, sorted(set(wanted.values()))) as hooks:
        hooks.run(batch.to(device))
    for layer, why in unreadable.items():
        raise ReportError(f"--select {layer}: {why}, so there are no maps to draw.")
    for layer in wanted:
        if layer not in kept:
            raise ReportError(f"--select: layer '{layer}' was not called that many times in "
                              "the forward pass.")
    return kept


def _panel(selection: Selection, maps: torch.Tensor, normalize: str, rectify: bool
           ) -> LayerPanel:
    if rectify:
        maps = maps.clamp_min(0)
    stats = activation_stats(maps)
    count = maps.shape[0]
    if selection.channels is None:  # the most active channels that are not flat on this image
        ranking = [k for k in rank_channels(stats.channel_mean) if not stats.channel_flat[k]]
        channels = sorted(ranking[:DEFAULT_CHANNELS])
    else:
        wrong = [k for k in selection.channels if k >= count]
        if wrong:
            raise ReportError(f"--select {selection.layer}: channel {wrong[0]} does not exist; "
                              f"the layer has {count} channels (0-{count - 1}).")
        channels = list(dict.fromkeys(selection.channels))
    # The range over the whole layer (all its channels, not only the chosen ones), robust as
    # in the report's pictures; flat channels on the layer's true range.
    low, high = picture_range(maps, normalize, torch.tensor(stats.channel_flat))
    _, height, width = (int(v) for v in maps.shape)
    return LayerPanel(selection.layer, (count, height, width), channels,
                      [maps[k].numpy() for k in channels], [float(low[k]) for k in channels],
                      [float(high[k]) for k in channels],
                      [bool(stats.channel_flat[k]) for k in channels],
                      float(stats.min), float(stats.max))


