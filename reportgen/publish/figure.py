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
import math
import os
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from reportgen import __version__
from reportgen.errors import ReportError
from reportgen.files import atomic_write
from reportgen.forward.device import moved_to, parse_device
from reportgen.forward.features import FeatureView, read_feature_map
from reportgen.forward.hooks import ConvHooks, conv_layers, parse_record_name, record_name
from reportgen.forward.stats import activation_stats, rank_channels
from reportgen.inputs.images import SourceImage, load_image
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
from reportgen.report import manifest as manifests
from reportgen.report.stamp import source_date

log = logging.getLogger(__name__)

FORMATS = {".pdf": "pdf", ".svg": "svg", ".png": "png"}
#: Channels shown for a layer selected without a channel list: the most active ones.
DEFAULT_CHANNELS = 16
#: A panel is about this wide, so 3.5 in (one column) holds 4 and 7 in (two columns) 8.
PANEL_INCHES = 0.875
UNITS = {"in": 1.0, "cm": 1 / 2.54, "mm": 1 / 25.4, "pt": 1 / 72.0}
PAGE_HEIGHT_INCHES = 9.5
FONT_SIZE = 7.0


@dataclass(frozen=True)
class Selection:
    """``LAYER`` or ``LAYER:CH,CH,...`` (``LAYER@2`` is the second call of a shared module)."""

    layer: str
    channels: tuple[int, ...] | None = None

    @classmethod
    def parse(cls, text: str) -> Selection:
        layer, colon, channels = text.strip().rpartition(":") if ":" in text else \
            (text.strip(), "", "")
        layer = layer.strip()
        if not layer:
            raise ReportError(f"--select '{text}' names no layer; use LAYER or LAYER:CH,CH "
                              "such as features.28:447,12,5.")
        if not colon:
            return cls(layer)
        try:
            indices = tuple(int(part) for part in channels.split(",") if part.strip())
        except ValueError:
            raise ReportError(f"--select '{text}': channels must be whole numbers separated "
                              "by commas, such as features.28:447,12,5.") from None
        if not indices:
            raise ReportError(f"--select '{text}' lists no channel after ':'.")
        if any(index < 0 for index in indices):
            raise ReportError(f"--select '{text}': channel numbers start at 0.")
        return cls(layer, indices)


@dataclass
class LayerPanel:
    """One selected layer as drawn: the maps of its chosen channels and their value range."""

    layer: str
    shape: tuple[int, int, int]
    channels: list[int]
    maps: list[Any]  # (H, W) float32 numpy arrays, the real values
    low: list[float]  # colour scale per channel (all equal for layer normalisation)
    high: list[float]
    flat: list[bool]  # flat on this image (drawn on the layer's true range)
    layer_min: float  # the layer's true range, to mark clipping on the colour bars
    layer_max: float


@dataclass
class Figure:
    """What :func:`make_figure` wrote."""

    path: Path
    format: str
    width: float  # inches
    height: float
    dpi: int
    normalize: str
    panels: list[LayerPanel] = field(default_factory=list)

    @property
    def size(self) -> int:
        return self.path.stat().st_size


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
                model_args: Any = ()) -> Figure:
    """Draw the selected channels of the selected layers into ``output`` (.pdf/.svg/.png).

    Either name a ``model``/``weights``/``image`` as for :func:`reportgen.build_report` (the
    defaults are the same), or pass ``source``, a report's folder or its manifest.json, to
    rebuild exactly that report's input (``weights``/``image`` then only point at files the
    manifest names by base name). ``model_args`` are keyword arguments for a model factory,
    as ``--model-arg``. ``normalize="layer"`` gives each layer one colour scale, its
    real min..max; ``"channel"`` gives every channel its own scale and colorbar.
    """
    target = Path(output)
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
    inches = parse_width(width)
    selections = [item if isinstance(item, Selection) else Selection.parse(item)
                  for item in select]
    if not selections:
        raise ReportError("Choose what to draw with --select LAYER or --select LAYER:CH,CH "
                          "(reportgen layers --model NAME lists the layers).")

    if source is not None:
        inputs = _inputs_from_report(Path(source), weights, image)
    else:
        inputs = _Inputs(model if model is not None else DEFAULT_MODEL,
                         weights if weights is not None else DEFAULT_WEIGHTS,
                         image if image is not None else DEFAULT_IMAGE,
                         BuildOptions(seed=seed, size=size, model_args=model_args), None)
    shown_options = inputs.options.replace(
        rectify=inputs.options.rectify if rectify is None else rectify,
        cmap=cmap or inputs.options.cmap)
    drawn_with = colormap(shown_options.cmap)
    device_chosen = parse_device(device)

    picture = load_image(inputs.image)
    _check_hash(picture, inputs.image_sha256)
    loaded = load_model(inputs.model, inputs.weights, seed=inputs.options.seed,
                        model_args=inputs.options.model_args,
                        weights_key=inputs.options.weights_key)
    preprocessing = inputs.preprocessing or Preprocessing.chosen(
        loaded.preprocessing, inputs.options, input_channels(loaded.module)[0])[0]
    maps = capture(loaded.module, preprocessing(picture.rgb), selections, device_chosen)
    panels = [_panel(selection, maps[selection.layer], normalize, shown_options.rectify)
              for selection in selections]
    convs = {name for name, _ in conv_layers(loaded.module)}
    figure = Figure(target, kind, inches, 0.0, dpi, normalize, panels)
    per_panel = PANEL_INCHES + (SMALL_BAR_IN if normalize != "layer" else 0.0)
    _draw(figure, drawn_with, columns or max(1, round(inches / per_panel)),
          _shown(shown_options.rectify, all(parse_record_name(panel.layer)[0] in convs
                                            for panel in panels)), loaded.name)
    log.debug("Wrote %s (%.2f x %.2f in, %s bytes)", target, figure.width, figure.height,
              f"{figure.size:,}")
    return figure


@dataclass(frozen=True)
class _Inputs:
    """What to run: a model, its weights, an image, and how the report was built."""

    model: str | nn.Module
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


def _shown(rectify: bool, convs_only: bool = True) -> str:
    what = "conv output" if convs_only else "layer output"
    return f"max(0, {what})" if rectify else what


def _rc() -> dict[str, Any]:
    return {
        "pdf.fonttype": 42,  # TrueType, not Type 3: what journals' checkers accept
        "ps.fonttype": 42,
        "svg.fonttype": "none",  # real <text>, selectable and editable
        "svg.hashsalt": "reportgen",  # stable ids in the SVG
        "font.family": "DejaVu Sans",
        "font.size": FONT_SIZE,
        "axes.titlesize": FONT_SIZE,
        "figure.titlesize": FONT_SIZE + 1,
        "image.interpolation": "nearest",
        "image.resample": False,
        "path.simplify": False,
    }


def _metadata(kind: str) -> dict[str, Any]:
    """No wall-clock time in the file: the SOURCE_DATE_EPOCH date, or no date at all."""
    creator = f"reportgen {__version__}"
    when = source_date()
    if kind == "pdf":
        return {"Creator": creator, "CreationDate": when}
    if kind == "svg":
        return {"Creator": creator, "Date": when.strftime("%Y-%m-%dT%H:%M:%SZ") if when else None}
    return {"Software": creator}


#: Layout in inches: a block's title, the label above each panel, the gap between panels,
#: and the column kept for colour bars (one per block, or one per panel with "channel").
TITLE_IN, LABEL_IN, GAP_IN = 0.40, 0.15, 0.05
BAR_IN, BAR_WIDTH_IN, BAR_PAD_IN = 0.55, 0.09, 0.06
SMALL_BAR_IN = 0.42


@dataclass(frozen=True)
class _BlockLayout:
    """Where one layer's panels go: they fill the width, the colour bar sits beside them."""

    columns: int
    rows: int
    panel_width: float
    panel_height: float
    bar_each: bool  # one colour bar per panel (per-channel ranges) or one for the block

    @classmethod
    def of(cls, panel: LayerPanel, width: float, columns: int, normalize: str
           ) -> _BlockLayout:
        columns = max(1, min(columns, len(panel.channels)))  # never empty columns
        bar_each = normalize != "layer"
        reserved = columns * SMALL_BAR_IN if bar_each else BAR_IN
        panel_width = (width - reserved - (columns - 1) * GAP_IN) / columns
        _, map_height, map_width = panel.shape
        panel_height = panel_width * map_height / max(1, map_width)
        return cls(columns, math.ceil(len(panel.channels) / columns), panel_width,
                   panel_height, bar_each)

    @property
    def height(self) -> float:
        return TITLE_IN + self.rows * (LABEL_IN + self.panel_height) + (self.rows - 1) * GAP_IN

    def panel_origin(self, position: int) -> tuple[float, float]:
        """(x, y) of a panel's top-left corner in inches from the block's top-left."""
        row, column = divmod(position, self.columns)
        step = self.panel_width + (SMALL_BAR_IN if self.bar_each else 0.0) + GAP_IN
        return column * step, TITLE_IN + LABEL_IN + row * (LABEL_IN + self.panel_height + GAP_IN)


def _draw(figure: Figure, colormap: Any, columns: int, shown: str, model_name: str) -> None:
    import matplotlib
    from matplotlib.figure import Figure as MplFigure

    layouts = [_BlockLayout.of(panel, figure.width, columns, figure.normalize)
               for panel in figure.panels]
    figure.height = round(sum(layout.height for layout in layouts) +
                          GAP_IN * (len(layouts) - 1) + 0.05, 3)
    if figure.height > PAGE_HEIGHT_INCHES:
        log.warning("The figure is %.1f in tall, more than a page; select fewer channels or "
                    "pass a larger --columns.", figure.height)
    with matplotlib.rc_context(_rc()):  # type: ignore[arg-type]  # keys are checked by name
        canvas = MplFigure(figsize=(figure.width, figure.height), dpi=figure.dpi)
        top = 0.0
        for panel, layout in zip(figure.panels, layouts, strict=True):
            _draw_layer(canvas, figure, top, panel, layout, colormap, shown)
            top += layout.height + GAP_IN
        _save(canvas, figure)


def _draw_layer(canvas: Any, figure: Figure, top: float, panel: LayerPanel,
                layout: _BlockLayout, colormap: Any, shown: str) -> None:
    """One layer: its title, its panels left to right, its colour bar(s) beside them."""
    width, height = figure.width, figure.height

    def box(x: float, y: float, w: float, h: float) -> list[float]:  # inches -> figure units
        return [x / width, 1.0 - (top + y + h) / height, w / width, h / height]

    channels, map_height, map_width = panel.shape
    flat = sum(panel.flat)
    canvas.text(0.0, 1.0 - (top + 0.02) / height,
                f"{panel.layer}  ({channels}×{map_height}×{map_width})\n{shown}; "
                f"{_how(figure.normalize)}", ha="left", va="top", linespacing=1.3,
                fontsize=FONT_SIZE)
    images = []
    for position, channel in enumerate(panel.channels):
        x, y = layout.panel_origin(position)
        axis = canvas.add_axes(box(x, y, layout.panel_width, layout.panel_height))
        axis.set_xticks([])
        axis.set_yticks([])
        vmin, vmax = panel.low[position], panel.high[position]
        if vmax <= vmin:  # a constant map: show it flat, with a range that still has width
            vmin, vmax = vmin - 0.5, vmin + 0.5
        image = axis.imshow(panel.maps[position], cmap=colormap, vmin=vmin, vmax=vmax,
                            interpolation="nearest", resample=False, aspect="auto")
        label = f"ch {channel}" + (" (flat)" if panel.flat[position] else "")
        axis.set_title(label, pad=1.5, fontsize=FONT_SIZE - 1)
        for spine in axis.spines.values():
            spine.set_linewidth(0.4)
        images.append((x, y, image))
    if layout.bar_each:
        for x, y, image in images:
            bar_axis = canvas.add_axes(box(x + layout.panel_width + BAR_PAD_IN, y, BAR_WIDTH_IN,
                                           layout.panel_height))
            _style_bar(canvas.colorbar(image, cax=bar_axis, extend=_extend(panel, image)))
    elif images:
        used = min(layout.columns, len(images))
        right = used * layout.panel_width + (used - 1) * GAP_IN
        rows_height = layout.rows * (LABEL_IN + layout.panel_height) + (layout.rows - 1) * GAP_IN
        bar_axis = canvas.add_axes(box(right + BAR_PAD_IN, TITLE_IN + LABEL_IN, BAR_WIDTH_IN,
                                       rows_height - LABEL_IN))
        bar = canvas.colorbar(images[0][2], cax=bar_axis, extend=_extend(panel, images[0][2]))
        bar.set_label(shown + (f"; {flat} flat" if flat else ""), fontsize=FONT_SIZE - 1)
        _style_bar(bar, zero=True)


def _how(normalize: str) -> str:
    return {"layer": "layer-wide colour scale (1st–99th percentile, clipped)",
            "channel": "per-channel colour scale (1st–99th percentile, clipped)",
            "minmax": "per-channel min–max colour scale"}[normalize]


def _extend(panel: LayerPanel, image: Any) -> str:
    """Arrows on the colour bar where values beyond its range were clipped."""
    low, high = image.get_clim()
    below, above = panel.layer_min < low, panel.layer_max > high
    return "both" if below and above else "min" if below else "max" if above else "neither"


def _style_bar(bar: Any, zero: bool = False) -> None:
    """Ticks at the real minimum and maximum (and 0 when the range crosses it)."""
    bar.ax.tick_params(labelsize=FONT_SIZE - 1.5, width=0.4, length=2)
    bar.outline.set_linewidth(0.4)
    low, high = bar.mappable.get_clim()
    ticks = [low, high]
    if zero and low < 0 < high and min(-low, high) > 0.12 * (high - low):
        ticks.insert(1, 0.0)
    bar.set_ticks(ticks)
    bar.set_ticklabels([f"{value:.3g}" for value in ticks])


def _save(canvas: Any, figure: Figure) -> None:
    """Write beside the target and rename, so a failure never leaves half a file."""
    atomic_write(figure.path, lambda temporary: canvas.savefig(
        temporary, format=figure.format, dpi=figure.dpi, metadata=_metadata(figure.format),
        facecolor="white"))
