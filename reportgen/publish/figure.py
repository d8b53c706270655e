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
from reportgen.forward.device import moved_to, parse_device
from reportgen.forward.hooks import ConvHooks, conv_layers, record_name
from reportgen.forward.stats import rank_channels
from reportgen.inputs.images import SourceImage, load_image
from reportgen.inputs.models import load_model
from reportgen.inputs.preprocess import Preprocessing
from reportgen.options import (
    DEFAULT_IMAGE,
    DEFAULT_MODEL,
    DEFAULT_WEIGHTS,
    NORMALIZATIONS,
    BuildOptions,
)
from reportgen.pictures.colormaps import colormap
from reportgen.publish.staging import atomic_write
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
                rectify: bool | None = None, seed: int = 0, device: str = "cpu") -> Figure:
    """Draw the selected channels of the selected layers into ``output`` (.pdf/.svg/.png).

    Either name a ``model``/``weights``/``image`` as for :func:`reportgen.build_report` (the
    defaults are the same), or pass ``source``, a report's folder or its manifest.json, to
    rebuild exactly that report's input (``weights``/``image`` then only point at files the
    manifest names by base name). ``normalize="layer"`` gives each layer one colour scale, its
    real min..max; ``"channel"`` gives every channel its own scale and colorbar.
    """
    target = Path(output)
    kind = FORMATS.get(target.suffix.lower())
    if kind is None:
        raise ReportError(f"Cannot tell the figure format from '{target.name}'; end the file "
                          "name with .pdf, .svg or .png.")
    if target.is_dir():
        raise ReportError(f"'{target}' is a folder; pass a file name such as figure.pdf.")
    if normalize not in NORMALIZATIONS:
        raise ReportError(f"Unknown normalisation '{normalize}'; use "
                          f"{' or '.join(NORMALIZATIONS)}.")
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
                         BuildOptions(seed=seed, size=size), None)
    shown_options = inputs.options.replace(
        rectify=inputs.options.rectify if rectify is None else rectify,
        cmap=cmap or inputs.options.cmap)
    drawn_with = colormap(shown_options.cmap)
    device_chosen = parse_device(device)

    picture = load_image(inputs.image)
    _check_hash(picture, inputs.image_sha256)
    loaded = load_model(inputs.model, inputs.weights, seed=inputs.options.seed)
    preprocessing = inputs.preprocessing or Preprocessing.from_preset(loaded.preprocessing,
                                                                      inputs.options.size)
    maps = capture(loaded.module, preprocessing(picture.rgb), selections, device_chosen)
    panels = [_panel(selection, maps[selection.layer], normalize, shown_options.rectify)
              for selection in selections]
    figure = Figure(target, kind, inches, 0.0, dpi, normalize, panels)
    _draw(figure, drawn_with, columns or max(1, round(inches / PANEL_INCHES)),
          _shown(shown_options.rectify), loaded.name)
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
    return _Inputs(saved.model.name, weights, image, saved.options.replace(seed=seed),
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
    """One forward pass; a (C, H, W) float CPU clone of each selected layer's output."""
    device = device or torch.device("cpu")
    names = [name for name, _ in conv_layers(module)]
    wanted: dict[str, str] = {}
    for selection in selections:
        module_name, _, call = selection.layer.partition("@")
        if module_name not in names or (call and not (call.isdigit() and int(call) >= 2)):
            close = difflib.get_close_matches(selection.layer, names, n=3, cutoff=0.6)
            hint = f"did you mean {', '.join(close)}?" if close else (
                "the layers are " + ", ".join(names[:8]) +
                (f", ... ({len(names)} in all)" if len(names) > 8 else ""))
            raise ReportError(f"--select: '{selection.layer}' is not a conv layer of this "
                              f"model; {hint}")
        wanted[selection.layer] = module_name
    kept: dict[str, torch.Tensor] = {}

    def keep(name: str, call: int, conv: nn.Module, output: torch.Tensor) -> None:
        full = record_name(name, call)
        if full in wanted:  # clone: an in-place ReLU runs right after this hook
            kept[full] = output[0].detach().float().cpu().clone()

    with moved_to(module, device), \
            ConvHooks(module, keep, sorted(set(wanted.values()))) as hooks:
        hooks.run(batch.to(device))
    for layer in wanted:
        if layer not in kept:
            raise ReportError(f"--select: layer '{layer}' was not called that many times in "
                              "the forward pass.")
    return kept


def _panel(selection: Selection, maps: torch.Tensor, normalize: str, rectify: bool
           ) -> LayerPanel:
    if rectify:
        maps = maps.clamp_min(0)
    count = maps.shape[0]
    if selection.channels is None:
        ranking = rank_channels(maps.reshape(count, -1).mean(dim=1).tolist())
        channels = sorted(ranking[:DEFAULT_CHANNELS])
    else:
        wrong = [k for k in selection.channels if k >= count]
        if wrong:
            raise ReportError(f"--select {selection.layer}: channel {wrong[0]} does not exist; "
                              f"the layer has {count} channels (0-{count - 1}).")
        channels = list(dict.fromkeys(selection.channels))
    arrays = [maps[k].numpy() for k in channels]
    if normalize == "layer":  # the layer's own range, over all its channels, not just these
        low, high = [float(maps.min())] * len(arrays), [float(maps.max())] * len(arrays)
    else:
        low = [float(a.min()) for a in arrays]
        high = [float(a.max()) for a in arrays]
    count, height, width = (int(v) for v in maps.shape)
    return LayerPanel(selection.layer, (count, height, width), channels, arrays, low, high)


def _shown(rectify: bool) -> str:
    return "max(0, conv output)" if rectify else "conv output"


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


def _draw(figure: Figure, colormap: Any, columns: int, shown: str, model_name: str) -> None:
    import matplotlib
    from matplotlib.figure import Figure as MplFigure
    from matplotlib.layout_engine import ConstrainedLayoutEngine

    title_in, label_in, bar_in = 0.42, 0.14, 0.55
    panel_in = (figure.width - bar_in) / columns
    rows = [math.ceil(len(panel.channels) / columns) for panel in figure.panels]
    heights = [title_in + r * (panel_in + label_in) for r in rows]
    figure.height = round(sum(heights), 3)
    if figure.height > PAGE_HEIGHT_INCHES:
        log.warning("The figure is %.1f in tall, more than a page; select fewer channels or "
                    "pass a larger --columns.", figure.height)
    with matplotlib.rc_context(_rc()):  # type: ignore[arg-type]  # keys are checked by name
        canvas = MplFigure(figsize=(figure.width, figure.height), dpi=figure.dpi,
                           layout="constrained")
        engine = canvas.get_layout_engine()
        assert isinstance(engine, ConstrainedLayoutEngine)
        engine.set(w_pad=0.02, h_pad=0.02, wspace=0.02, hspace=0.02)
        blocks = canvas.subfigures(len(figure.panels), 1, height_ratios=heights, squeeze=False)
        for block, panel, row_count in zip(blocks[:, 0], figure.panels, rows, strict=True):
            _draw_layer(block, panel, colormap, columns, row_count, shown, figure.normalize)
        _save(canvas, figure)


def _draw_layer(block: Any, panel: LayerPanel, colormap: Any, columns: int, rows: int,
                shown: str, normalize: str) -> None:
    channels, height, width = panel.shape
    how = ("layer-wide min–max colour scale" if normalize == "layer"
           else "per-channel min–max colour scale")
    block.suptitle(f"{panel.layer}  ({channels}×{height}×{width})\n{shown}; {how}",
                   x=0.0, ha="left", linespacing=1.3)
    axes = block.subplots(rows, columns, squeeze=False)
    images = []
    for position, axis in enumerate(axes.flat):
        axis.set_xticks([])
        axis.set_yticks([])
        if position >= len(panel.channels):
            axis.set_visible(False)
            continue
        channel = panel.channels[position]
        vmin, vmax = panel.low[position], panel.high[position]
        if vmax <= vmin:  # a constant map: show it flat, with a range that still has width
            vmin, vmax = vmin - 0.5, vmin + 0.5
        image = axis.imshow(panel.maps[position], cmap=colormap, vmin=vmin, vmax=vmax,
                            interpolation="nearest", resample=False)
        axis.set_title(f"ch {channel}", pad=2)
        for spine in axis.spines.values():
            spine.set_linewidth(0.4)
        images.append((axis, image))
    if normalize == "layer":
        bar = block.colorbar(images[0][1], ax=axes.ravel().tolist(), fraction=0.05, pad=0.02,
                             aspect=max(8, 12 * rows))
        bar.set_label(shown, fontsize=FONT_SIZE - 1)
        _style_bar(bar, zero=True)
    else:
        for axis, image in images:
            bar = block.colorbar(image, ax=axis, fraction=0.08, pad=0.03)
            _style_bar(bar)


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
