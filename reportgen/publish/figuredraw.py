"""How a figure is laid out and drawn: its panels and rows, text fitted to the width, colour
bars measured so nothing is cut at the edge, and the bytes saved reproducibly.

:mod:`reportgen.publish.figure` decides what to draw (the model's maps, or a report's
pictures) and :mod:`reportgen.publish.figurerows` lays out one row per channel; both draw
through this module, which imports neither.
"""
from __future__ import annotations

import logging
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from reportgen import __version__
from reportgen.errors import ReportError
from reportgen.files import atomic_write
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
TICK_FONT = FONT_SIZE - 1.5


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
    panels: list[LayerPanel] = field(default_factory=list)  # the maps drawn, per selection
    kinds: tuple[str, ...] = ("map",)  # the panels of each channel (--panels)

    @property
    def size(self) -> int:
        return self.path.stat().st_size



def shown_label(rectify: bool, convs_only: bool = True) -> str:
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
#: and the column kept for colour bars (one per block, or one per panel with "channel"). The
#: bar columns are first guesses: :func:`draw_blocks` widens them to what the tick labels and the
#: bar's label really take, so nothing is cut at the figure's edge.
TITLE_IN, LABEL_IN, GAP_IN = 0.40, 0.15, 0.05
BAR_IN, BAR_WIDTH_IN, BAR_PAD_IN = 0.55, 0.09, 0.06
SMALL_BAR_IN = 0.42
#: Text is shrunk to fit, down to this size in points (what journals accept at the least).
MIN_FONT = 5.0
LINE_IN = FONT_SIZE * 1.3 / 72
#: The white kept below the last row (for the colour bar's lowest tick label), and right of
#: the colour bar's label.
BOTTOM_IN, EDGE_IN = 0.06, 0.03


def text_inches(text: str, size: float) -> float:
    """How wide matplotlib sets ``text`` (its widest line) at ``size`` points, in inches."""
    import matplotlib
    from matplotlib.backends.backend_agg import RendererAgg
    from matplotlib.font_manager import FontProperties

    agg: Any = RendererAgg  # untyped in matplotlib's stubs
    with matplotlib.rc_context(_rc()):  # type: ignore[arg-type]  # keys are checked by name
        prop = FontProperties(size=size)
        renderer = agg(1, 1, 72)  # at 72 dpi a pixel is a point
        return max(float(renderer.get_text_width_height_descent(line, prop, ismath=False)[0])
                   for line in text.split("\n")) / 72


def fit_text(text: str, size: float, limit: float) -> tuple[str, float]:
    """``text`` within ``limit`` inches: broken after its semicolons, then between words, then
    set smaller (not below :data:`MIN_FONT`); what still does not fit (a channel id has no
    space to break at) is left at the smallest size."""
    if text_inches(text, size) <= limit:
        return text, size
    text = text.replace("; ", ";\n")
    while True:
        wrapped = _wrap_words(text, size, limit)
        if text_inches(wrapped, size) <= limit or size <= MIN_FONT:
            return wrapped, size
        size = max(MIN_FONT, size - 0.5)


def _wrap_words(text: str, size: float, limit: float) -> str:
    """Each line of ``text`` broken between words where it is wider than ``limit`` inches."""
    lines = []
    for line in text.split("\n"):
        current = ""
        for word in line.split(" "):
            joined = f"{current} {word}" if current else word
            if current and text_inches(joined, size) > limit:
                lines.append(current)
                joined = word
            current = joined
        lines.append(current)
    return "\n".join(lines)


@dataclass(frozen=True)
class _BlockLayout:
    """Where one layer's panels go: sized for ``columns`` panels a row (so a few channels stay
    panel-sized rather than filling the width), the colour bar right beside them."""

    columns: int
    rows: int
    panel_width: float
    panel_height: float
    bar_each: bool  # one colour bar per panel (per-channel ranges) or one for the block
    reserve: float  # inches kept right of a panel (bar_each) or of the block for colour bars
    title: str
    label_size: float
    bar_label: tuple[str, float]  # the block's colour bar: its label and font size

    @classmethod
    def of(cls, panel: LayerPanel, width: float, columns: int, normalize: str, shown: str,
           reserve: float | None = None) -> _BlockLayout:
        bar_each, asked, guessed = normalize != "layer", columns, reserve is None
        if reserve is None:
            reserve = max(SMALL_BAR_IN if bar_each else BAR_IN, bar_guess(panel, bar_each))
        labels = [_panel_label(panel, position) for position in range(len(panel.channels))]
        while True:
            panel_width = (width - (columns * reserve if bar_each else reserve) -
                           (columns - 1) * GAP_IN) / columns
            label_size = min(fit_text(label, FONT_SIZE - 1, panel_width)[1] for label in labels)
            fits = all(text_inches(label, label_size) <= panel_width for label in labels)
            if fits or columns == 1:  # fewer panels a row when even small ids do not fit
                break
            columns -= 1
        channels, map_height, map_width = panel.shape
        title, _ = fit_text(f"{panel.layer}  ({channels}×{map_height}×{map_width})\n"
                             f"{shown}; {how_scaled(normalize)}", FONT_SIZE, width)
        rows, panel_height = math.ceil(len(panel.channels) / columns), \
            panel_width * map_height / max(1, map_width)
        flat = sum(panel.flat)
        bar_label = fit_text(shown + (f"; {flat} flat" if flat else ""), FONT_SIZE - 1,
                              rows * panel_height + (rows - 1) * (LABEL_IN + GAP_IN))
        more_lines = bar_label[0].count("\n") * bar_label[1] * 1.2 / 72
        if guessed and more_lines and not bar_each:  # the label broke: guess again, wider
            return cls.of(panel, width, asked, normalize, shown, reserve + more_lines)
        return cls(min(columns, len(panel.channels)), rows, panel_width, panel_height,
                   bar_each, reserve, title, label_size, bar_label)

    @property
    def title_height(self) -> float:
        return TITLE_IN + (self.title.count("\n") - 1) * LINE_IN

    @property
    def height(self) -> float:
        return (self.title_height + self.rows * (LABEL_IN + self.panel_height) +
                (self.rows - 1) * GAP_IN)

    def panel_origin(self, position: int) -> tuple[float, float]:
        """(x, y) of a panel's top-left corner in inches from the block's top-left."""
        row, column = divmod(position, self.columns)
        step = self.panel_width + (self.reserve if self.bar_each else 0.0) + GAP_IN
        return column * step, (self.title_height + LABEL_IN +
                               row * (LABEL_IN + self.panel_height + GAP_IN))


def _panel_label(panel: LayerPanel, position: int) -> str:
    """The channel id ``LAYER:INDEX``, what ``--select`` takes and the README promises."""
    flat = " (flat)" if panel.flat[position] else ""
    return f"{panel.layer}:{panel.channels[position]}{flat}"


def draw_blocks(figure: Figure, colormap: Any, columns: int, shown: str) -> None:
    def compose(reserve: float | None) -> tuple[Any, float, float]:
        layouts = [_BlockLayout.of(panel, figure.width, columns, figure.normalize, shown,
                                   reserve) for panel in figure.panels]
        return (*_compose(figure, layouts, colormap), layouts[0].reserve)

    finish_figure(figure, lambda: fit_bars(compose))


def finish_figure(figure: Figure, draw: Callable[[], Any]) -> None:
    """Draw with the figure's fonts and settings (also in force while saving) and save."""
    import matplotlib

    with matplotlib.rc_context(_rc()):  # type: ignore[arg-type]  # keys are checked by name
        canvas = draw()
        if figure.height > PAGE_HEIGHT_INCHES:
            log.warning("The figure is %.1f in tall, more than a page; select fewer channels "
                        "or pass a larger --columns.", figure.height)
        _save(canvas, figure)


def fit_bars(compose: Callable[[float | None], tuple[Any, float, float]]) -> Any:
    """Lay out and draw (``compose(reserve)`` gives the figure, the widest colour bar's
    measured width and the width kept for it), and again with the measured width if the bars
    need more than was kept (a few times at most: wider bars leave the maps smaller)."""
    reserve: float | None = None
    for _ in range(4):
        canvas, needed, kept = compose(reserve)
        if needed + EDGE_IN <= kept + 1e-6:
            break
        reserve = needed + EDGE_IN
    return canvas


def _compose(figure: Figure, layouts: list[_BlockLayout], colormap: Any
             ) -> tuple[Any, float]:
    """The drawn matplotlib figure, and the widest colour bar (ticks and label) in inches."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure as MplFigure

    figure.height = round(sum(layout.height for layout in layouts) +
                          GAP_IN * (len(layouts) - 1) + BOTTOM_IN, 3)
    canvas = MplFigure(figsize=(figure.width, figure.height), dpi=figure.dpi)
    agg: Any = FigureCanvasAgg(canvas)  # get_renderer is untyped in the stubs
    top, bars = 0.0, []
    for panel, layout in zip(figure.panels, layouts, strict=True):
        bars += _draw_layer(canvas, figure, top, panel, layout, colormap)
        top += layout.height + GAP_IN
    return canvas, bars_width(agg, bars, figure.dpi)


def bars_width(agg: Any, bars: list[tuple[Any, float]], dpi: int) -> float:
    """How far the widest colour bar (its ticks and label) reaches right of where the space
    kept for it starts, in inches, as the renderer sets it."""
    renderer = agg.get_renderer()
    return max((bar.ax.get_tightbbox(renderer).x1 / dpi - left for bar, left in bars),
               default=0.0)


def _draw_layer(canvas: Any, figure: Figure, top: float, panel: LayerPanel,
                layout: _BlockLayout, colormap: Any) -> list[tuple[Any, float]]:
    """One layer: its title, its panels left to right, its colour bar(s) beside them. Gives
    each colour bar with where the space kept for it starts (inches from the left)."""
    width, height = figure.width, figure.height

    def box(x: float, y: float, w: float, h: float) -> list[float]:  # inches -> figure units
        return [x / width, 1.0 - (top + y + h) / height, w / width, h / height]

    canvas.text(0.0, 1.0 - (top + 0.02) / height, layout.title, ha="left", va="top",
                linespacing=1.3, fontsize=FONT_SIZE)
    images = []
    for position in range(len(panel.channels)):
        x, y = layout.panel_origin(position)
        axis = canvas.add_axes(box(x, y, layout.panel_width, layout.panel_height))
        axis.set_xticks([])
        axis.set_yticks([])
        vmin, vmax = colour_limits(panel, position)
        image = axis.imshow(panel.maps[position], cmap=colormap, vmin=vmin, vmax=vmax,
                            interpolation="nearest", resample=False, aspect="auto")
        axis.set_title(_panel_label(panel, position), pad=1.5, fontsize=layout.label_size)
        for spine in axis.spines.values():
            spine.set_linewidth(0.4)
        images.append((x, y, image))
    bars = []
    if layout.bar_each:
        for x, y, image in images:
            bar_axis = canvas.add_axes(box(x + layout.panel_width + BAR_PAD_IN, y, BAR_WIDTH_IN,
                                           layout.panel_height))
            bar = canvas.colorbar(image, cax=bar_axis, extend=extend_of(panel, image))
            style_bar(bar)
            bars.append((bar, x + layout.panel_width))
    elif images:
        used = min(layout.columns, len(images))
        right = used * layout.panel_width + (used - 1) * GAP_IN
        rows_height = layout.rows * (LABEL_IN + layout.panel_height) + (layout.rows - 1) * GAP_IN
        bar_axis = canvas.add_axes(box(right + BAR_PAD_IN, layout.title_height + LABEL_IN,
                                       BAR_WIDTH_IN, rows_height - LABEL_IN))
        bar = canvas.colorbar(images[0][2], cax=bar_axis, extend=extend_of(panel, images[0][2]))
        label, size = layout.bar_label
        bar.set_label(label, fontsize=size)
        style_bar(bar, zero=True)
        bars.append((bar, right))
    return bars


def how_scaled(normalize: str) -> str:
    return {"layer": "layer-wide colour scale (1st–99th percentile, clipped)",
            "channel": "per-channel colour scale (1st–99th percentile, clipped)",
            "minmax": "per-channel min–max colour scale"}[normalize]


def extend_of(panel: LayerPanel, image: Any) -> str:
    """Arrows on the colour bar where values beyond its range were clipped."""
    low, high = image.get_clim()
    below, above = panel.layer_min < low, panel.layer_max > high
    return "both" if below and above else "min" if below else "max" if above else "neither"


def colour_limits(panel: LayerPanel, position: int) -> tuple[float, float]:
    """A channel's colour scale; a constant map is shown flat, on a range that has width."""
    low, high = panel.low[position], panel.high[position]
    return (low - 0.5, low + 0.5) if high <= low else (low, high)


def _ticks(low: float, high: float, zero: bool) -> list[float]:
    """A colour bar's ticks: the real minimum and maximum, and 0 when the range crosses it."""
    ticks = [low, high]
    if zero and low < 0 < high and min(-low, high) > 0.12 * (high - low):
        ticks.insert(1, 0.0)
    return ticks


def bar_guess(panel: LayerPanel, bar_each: bool) -> float:
    """About the width its colour bar(s) will take, from the tick labels' set width: a first
    layout that is usually right, so the drawn bars' measurement rarely asks for another."""
    positions = range(len(panel.channels)) if bar_each else range(min(1, len(panel.channels)))
    ticks = max((text_inches(f"{value:.3g}", TICK_FONT)
                 for position in positions
                 for value in _ticks(*colour_limits(panel, position), zero=not bar_each)),
                default=0.0)
    label = 0.0 if bar_each else (4 + (FONT_SIZE - 1) * 1.2) / 72  # labelpad, one line
    return BAR_PAD_IN + BAR_WIDTH_IN + 5.5 / 72 + ticks + label + EDGE_IN  # 5.5: tick, pad


def style_bar(bar: Any, zero: bool = False) -> None:
    """Ticks at the real minimum and maximum (and 0 when the range crosses it)."""
    bar.ax.tick_params(labelsize=TICK_FONT, width=0.4, length=2)
    bar.outline.set_linewidth(0.4)
    low, high = bar.mappable.get_clim()
    ticks = _ticks(low, high, zero)
    bar.set_ticks(ticks)
    bar.set_ticklabels([f"{value:.3g}" for value in ticks])


def _save(canvas: Any, figure: Figure) -> None:
    """Write beside the target and rename, so a failure never leaves half a file."""
    atomic_write(figure.path, lambda temporary: canvas.savefig(
        temporary, format=figure.format, dpi=figure.dpi, metadata=_metadata(figure.format),
        facecolor="white"))
