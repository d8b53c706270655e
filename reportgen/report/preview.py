"""A report inside a notebook: a small inline preview, not the whole site.

Jupyter shows ``_repr_html_``. Pictures are inlined as small JPEG ``data:`` URIs (a notebook
cannot load files from a folder beside it in every front end), so the preview works for
relative and absolute site folders alike and stays well under 50 KB: the input, the top-5,
the most active channel of a few layers spread over the network, and a link to the full report.
"""
from __future__ import annotations

import base64
import html
import io
from pathlib import Path

import numpy as np
from PIL import Image

from reportgen.report.model import LayerRecord, ReportRecord, count_layers
from reportgen.sitelayout import INDEX, INPUT_PNG

THUMBNAILS = 4
INPUT_SIDE = 128
TILE_SIDE = 64


def preview_html(record: ReportRecord, site_dir: Path) -> str:
    site = site_dir.resolve()
    index = site / INDEX
    rows = "".join(f"<tr><td>{html.escape(p.label)}</td><td>{p.probability:.1%}</td></tr>"
                   for p in record.predictions)
    thumbs = "".join(_thumbnail(layer, site) for layer in _spread(record.layers, THUMBNAILS))
    picture = _jpeg_uri(Image.open(site / INPUT_PNG).convert("RGB"), INPUT_SIDE)
    return (
        '<div class="reportgen-preview" style="display:flex;gap:1em;flex-wrap:wrap;'
        'align-items:flex-start">'
        f'<figure style="margin:0"><img src="{picture}" alt="Input" width="{INPUT_SIDE}">'
        f"<figcaption>{html.escape(str(record.image.get('source', 'input')))}</figcaption>"
        "</figure>"
        f"<table><caption>Top {len(record.predictions)}</caption>{rows}</table>"
        f'<div style="display:flex;gap:.5em">{thumbs}</div>'
        f'<p style="flex-basis:100%">{count_layers(record.layers)} of '
        f"<code>{html.escape(record.model.name)}</code>. "
        f'<a href="{html.escape(index.as_uri())}" target="_blank">Open the full report</a> '
        f"(<code>{html.escape(str(index))}</code>)</p></div>")


def _spread(layers: list[LayerRecord], count: int) -> list[LayerRecord]:
    """``count`` layers evenly over the network, first and last included."""
    if len(layers) <= count:
        return layers
    return [layers[round(i * (len(layers) - 1) / (count - 1))] for i in range(count)]


def _thumbnail(layer: LayerRecord, site: Path) -> str:
    """The layer's most active channel (by mean), cut from its grid picture."""
    channel = layer.ranking["mean"][0]
    layout = layer.activation.layout
    x, y = layout.origin(channel)
    grid = Image.open(site / layer.activation.png)
    tile = grid.crop((x, y, x + layout.tile_width, y + layout.tile_height)).convert("RGB")
    uri = _jpeg_uri(tile, TILE_SIDE, nearest=True)
    name = html.escape(f"{layer.name}:{channel}")
    return (f'<figure style="margin:0"><img src="{uri}" alt="{name}" width="{TILE_SIDE}" '
            f'style="image-rendering:pixelated"><figcaption style="font-size:.75em">'
            f"<code>{name}</code></figcaption></figure>")


def _jpeg_uri(picture: Image.Image, side: int, nearest: bool = False) -> str:
    scale = side / max(picture.size)
    size = (max(1, round(picture.width * scale)), max(1, round(picture.height * scale)))
    resample = Image.Resampling.NEAREST if nearest else Image.Resampling.LANCZOS
    buffer = io.BytesIO()
    Image.fromarray(np.asarray(picture.resize(size, resample))).save(buffer, "JPEG", quality=85)
    return "data:image/jpeg;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")
