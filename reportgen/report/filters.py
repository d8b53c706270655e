"""Each captured conv's filter picture, drawn once per module and shared by its calls."""
from __future__ import annotations

from pathlib import Path

from torch import nn

from reportgen.forward.hooks import conv_layers
from reportgen.pictures.kernels import filter_figure
from reportgen.pictures.pngio import PngWriter
from reportgen.report.model import Capture, FilterPicture
from reportgen.sitelayout import filters_png


def filter_pictures(captures: list[Capture], module: nn.Module, writer: PngWriter,
                    site: Path) -> list[tuple[Capture, FilterPicture | None]]:
    """Each capture with its conv's filter picture; layers that are not convolutions have
    none."""
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
            png = filters_png(capture.slug)
            writer.submit(figure.pixels, site / png)
            picture = FilterPicture(png, (figure.pixels.shape[1], figure.pixels.shape[0]),
                                    figure.view, figure.description, figure.layout,
                                    figure.scale, figure.strongest_input, figure.stats)
            pictures[capture.module_name] = picture
        layers.append((capture, picture))
    return layers
