"""Figures of channels, one row each: the map, top dataset examples, feature visualisation
and Grad-CAM side by side, the row labelled with the channel id ``LAYER:INDEX``.

A paper that discusses a few channels shows what each responds to in several ways at once; a
row per channel keeps those views of one channel together and the same views in one column.
The panels fill the chosen width (3.5 or 7 in), all rows one height, and the height follows
from the content. Layout, fonts and the measured colour bars are the layer figure's
(:mod:`reportgen.publish.figure`).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from reportgen.publish.figuredraw import (
    BAR_PAD_IN,
    BAR_WIDTH_IN,
    BOTTOM_IN,
    EDGE_IN,
    FONT_SIZE,
    LINE_IN,
    SMALL_BAR_IN,
    Figure,
    LayerPanel,
    Selection,
    bar_guess,
    bars_width,
    colour_limits,
    extend_of,
    fit_bars,
    fit_text,
    how_scaled,
    style_bar,
    text_inches,
)
from reportgen.publish.figuresite import GradCam, ReportPictures

#: Between a row's panels and between rows; between the crops of the examples panel.
COLUMN_GAP_IN, ROW_GAP_IN, CROP_GAP_IN = 0.08, 0.06, 0.02
#: No taller rows than this, however wide the figure: two panels need not be 3 in maps.
MAX_ROW_IN = 1.25
#: Dataset examples shown per row: about one per this many inches of width.
INCHES_PER_EXAMPLE = 1.75
HEADERS = {"map": "map", "examples": "top dataset examples", "featurevis": "feature vis.",
           "gradcam": "Grad-CAM"}


@dataclass(frozen=True)
class ChannelRow:
    """One channel's pictures; ``maps`` and ``position`` point at its map, when drawn."""

    layer: str
    channel: int
    maps: LayerPanel | None = None
    position: int = 0
    examples: tuple[np.ndarray, ...] = ()
    feature_vis: np.ndarray | None = None
    cam: GradCam | None = None

    @property
    def id(self) -> str:
        return f"{self.layer}:{self.channel}"

    def label(self) -> str:
        """The id (flat maps said so), and the channel's share of the class score where
        Grad-CAM is shown."""
        flat = " (flat)" if self.maps is not None and self.maps.flat[self.position] else ""
        if self.cam is None:
            return self.id + flat
        return f"{self.id}{flat}\ncontrib. {self.cam.contribution[self.channel]:.3g}"


def examples_per_row(width: float, available: int) -> int:
    return max(1, min(available, round(width / INCHES_PER_EXAMPLE)))


@dataclass(frozen=True)
class _RowLayout:
    """Columns left to right: the label, then each panel kind (x and width in inches)."""

    labels: list[str]  # each row's, broken into lines where needed
    label_size: float
    label_width: float
    row_height: float
    header: float  # inches above the first row: the caption, then the column headers
    caption: tuple[str, float]
    headers: dict[str, tuple[str, float]]
    columns: dict[str, tuple[float, float]]
    reserve: float

    @classmethod
    def of(cls, rows: list[ChannelRow], kinds: tuple[str, ...], width: float, shown: str,
           normalize: str, reserve: float | None) -> _RowLayout:
        if reserve is None:
            reserve = max([SMALL_BAR_IN] + [bar_guess(row.maps, True) for row in rows
                                            if row.maps is not None])
        limit = 0.3 * width
        label_size = min(fit_text(row.label(), FONT_SIZE - 1, limit)[1] for row in rows)
        labels = [fit_text(row.label(), label_size, limit)[0] for row in rows]
        label_width = max(text_inches(label, label_size) for label in labels) + COLUMN_GAP_IN
        first = rows[0]
        units: dict[str, float] = {}  # each panel's width in row heights, plus fixed inches
        fixed: dict[str, float] = {}
        for kind in kinds:
            if kind == "map":
                assert first.maps is not None
                _, map_height, map_width = first.maps.shape
                units[kind], fixed[kind] = map_width / max(1, map_height), reserve
            elif kind == "examples":
                count = max(len(row.examples) for row in rows)
                units[kind], fixed[kind] = count, (count - 1) * CROP_GAP_IN
            elif kind == "gradcam":
                assert first.cam is not None
                units[kind], fixed[kind] = first.cam.cam.shape[1] / first.cam.cam.shape[0], 0.0
            else:
                units[kind], fixed[kind] = 1.0, 0.0
        free = (width - label_width - sum(fixed.values()) -
                (len(kinds) - 1) * COLUMN_GAP_IN - EDGE_IN)
        row_height = min(MAX_ROW_IN, free / sum(units.values()))
        columns, x = {}, label_width
        for kind in kinds:
            columns[kind] = (x, units[kind] * row_height + fixed[kind])
            x += columns[kind][1] + COLUMN_GAP_IN
        said = ([f"map: {shown}", how_scaled(normalize)] if "map" in kinds else []) + (
            [f"Grad-CAM for {first.cam.label}"] if first.cam is not None else [])
        caption = fit_text("; ".join(said), FONT_SIZE, width) if said else ("", FONT_SIZE)
        headers = {kind: fit_text(HEADERS[kind], FONT_SIZE - 1, columns[kind][1])
                   for kind in kinds}
        lines = max(text.count("\n") + 1 for text, _ in headers.values())
        above = (caption[0].count("\n") + 1) * LINE_IN if said else 0.0
        return cls(labels, label_size, label_width, row_height,
                   0.08 + above + lines * (FONT_SIZE - 1) * 1.3 / 72, caption, headers, columns,
                   reserve)

    @property
    def caption_height(self) -> float:
        return (self.caption[0].count("\n") + 1) * LINE_IN if self.caption[0] else 0.0

    def height(self, rows: int) -> float:
        return self.header + rows * self.row_height + (rows - 1) * ROW_GAP_IN + BOTTOM_IN


def draw_rows(figure: Figure, rows: list[ChannelRow], kinds: tuple[str, ...], colormap: Any,
              shown: str) -> Any:
    """The drawn matplotlib figure of ``rows`` (its colour bars measured to fit)."""

    def compose(reserve: float | None) -> tuple[Any, float, float]:
        layout = _RowLayout.of(rows, kinds, figure.width, shown, figure.normalize, reserve)
        figure.height = round(layout.height(len(rows)), 3)
        return (*_compose_rows(figure, rows, kinds, layout, colormap), layout.reserve)

    return fit_bars(compose)


def _compose_rows(figure: Figure, rows: list[ChannelRow], kinds: tuple[str, ...],
                  layout: _RowLayout, colormap: Any) -> tuple[Any, float]:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure as MplFigure

    width, height = figure.width, figure.height
    canvas = MplFigure(figsize=(width, height), dpi=figure.dpi)
    agg: Any = FigureCanvasAgg(canvas)  # get_renderer is untyped in the stubs

    def axes(x: float, y: float, w: float, h: float) -> Any:  # inches from the top-left
        axis = canvas.add_axes((x / width, 1.0 - (y + h) / height, w / width, h / height))
        axis.set_xticks([])
        axis.set_yticks([])
        for spine in axis.spines.values():
            spine.set_linewidth(0.4)
        return axis

    caption, size = layout.caption
    canvas.text(0.0, 1.0 - 0.02 / height, caption, ha="left", va="top", fontsize=size,
                linespacing=1.3)
    for kind in kinds:
        x, column_width = layout.columns[kind]
        text, size = layout.headers[kind]
        canvas.text(x / width, 1.0 - (0.04 + layout.caption_height) / height, text, ha="left",
                    va="top", fontsize=size, linespacing=1.3)
    bars = []
    h = layout.row_height
    for number, row in enumerate(rows):
        top = layout.header + number * (h + ROW_GAP_IN)
        canvas.text(0.0, 1.0 - (top + h / 2) / height, layout.labels[number], ha="left",
                    va="center",
                    fontsize=layout.label_size, linespacing=1.3)
        for kind in kinds:
            x, column_width = layout.columns[kind]
            if kind == "map" and row.maps is not None:
                bars.append(_draw_map(canvas, axes, row.maps, row.position, x, top,
                                      column_width - layout.reserve, h, colormap, width))
            elif kind == "examples":
                for index, crop in enumerate(row.examples):
                    axes(x + index * (h + CROP_GAP_IN), top, h, h).imshow(
                        crop, interpolation="nearest", resample=False, aspect="auto")
            elif kind == "featurevis" and row.feature_vis is not None:
                axes(x, top, column_width, h).imshow(row.feature_vis, interpolation="nearest",
                                                     resample=False, aspect="auto")
            elif kind == "gradcam" and row.cam is not None:
                _draw_cam(axes(x, top, column_width, h), row.cam)
    return canvas, bars_width(agg, bars, figure.dpi)


def _draw_map(canvas: Any, axes: Any, panel: LayerPanel, position: int, x: float, top: float,
              map_width: float, h: float, colormap: Any, width: float) -> tuple[Any, float]:
    """The channel's real values on the figure's colour scale, its colour bar beside it."""
    vmin, vmax = colour_limits(panel, position)
    image = axes(x, top, map_width, h).imshow(panel.maps[position], cmap=colormap, vmin=vmin,
                                              vmax=vmax, interpolation="nearest",
                                              resample=False, aspect="auto")
    bar = canvas.colorbar(image, cax=axes(x + map_width + BAR_PAD_IN, top, BAR_WIDTH_IN, h),
                          extend=extend_of(panel, image))
    style_bar(bar)
    return bar, x + map_width


def _draw_cam(axis: Any, cam: GradCam) -> None:
    """The report's Grad-CAM over its input picture in grey, as the report's layer page."""
    grey = cam.picture.mean(axis=2)
    axis.imshow(grey, cmap="gray", vmin=0, vmax=255, extent=(0, 1, 1, 0), aspect="auto",
                interpolation="nearest", resample=False)
    axis.imshow(cam.cam, cmap="inferno", vmin=0.0, vmax=1.0, alpha=0.6, extent=(0, 1, 1, 0),
                aspect="auto", interpolation="nearest", resample=False)
    axis.set_xlim(0, 1)
    axis.set_ylim(1, 0)


def channel_rows(pictures: ReportPictures, selections: list[Selection], maps: list[LayerPanel],
                 kinds: tuple[str, ...], width: float) -> list[ChannelRow]:
    """One row per selected channel, in the order selected, with the report's pictures."""
    rows = []
    for number, selection in enumerate(selections):
        assert selection.channels is not None  # filled in from the report's ranking
        panel = maps[number] if maps else None
        count = (examples_per_row(width, pictures.examples_available(selection.layer))
                 if "examples" in kinds else 0)
        cam = pictures.grad_cam(selection.layer) if "gradcam" in kinds else None
        for channel in selection.channels:
            rows.append(ChannelRow(
                selection.layer, channel, panel,
                panel.channels.index(channel) if panel is not None else 0,
                tuple(pictures.examples(selection.layer, channel, count)),
                pictures.feature_vis(selection.layer, channel) if "featurevis" in kinds
                else None, cam))
    return rows
