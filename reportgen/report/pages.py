"""Render the report's HTML pages and copy its static assets.

Templates see the typed report model (:mod:`reportgen.report.model`) and the small views
computed from it (:mod:`reportgen.report.views`). Every URL in the site is relative (pages sit
side by side at the top of the site folder), so the report works from ``file://``, from a web
server and from a GitHub Pages project sub-path alike. Static files get content-hash names, so a
browser never shows a stale stylesheet after a rebuild.
"""
from __future__ import annotations

import hashlib
import shutil
from functools import lru_cache
from pathlib import Path
from typing import Any

import jinja2
import markupsafe

from reportgen.formatting import format_number, format_pair
from reportgen.pictures.colormaps import colorbar
from reportgen.pictures.pngio import save_png
from reportgen.report import views
from reportgen.report.model import CHANNEL_ADDRESS, ReportRecord
from reportgen.report.reproduce import reproduction
from reportgen.sitelayout import (
    COLORBAR_PNG,
    ICON,
    INDEX,
    INPUT_PNG,
    NO_JEKYLL,
    STATIC_DIR,
    static_file,
)

SCRIPT = "report.js"
#: The parts of report.js (templates/static/js/), in the order they are put together.
SCRIPT_FOLDER = "js"
SCRIPT_PARTS = ("base.js", "layer.js", "channel.js", "toc.js", "keys.js", "main.js")
#: An input smaller than this is shown enlarged, so it is drawn with square pixels: smoothing
#: would show a 28x28 digit blurred, not as the model saw it.
PIXELATED_BELOW = 128


def template_dir() -> Path:
    """Inside the wheel the templates are package data; in a checkout, the top-level folder."""
    package = Path(__file__).resolve().parent.parent
    packaged = package / "templates"
    if packaged.is_dir():
        return packaged
    return package.parent / "templates"


@lru_cache(maxsize=1)
def environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(template_dir())),
        autoescape=True,  # every value is escaped: layer and file names are user data
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )
    env.filters["num"] = format_number
    env.filters["pct"] = lambda value: f"{100.0 * value:.1f}%"
    env.filters["pair"] = format_pair
    env.filters["breakable"] = breakable
    # A layer page's data (tojson) is mostly per-channel numbers: no space after each comma
    # keeps a 1,280-channel page ~10 KB smaller.
    env.policies["json.dumps_kwargs"] = {"sort_keys": True, "separators": (",", ":")}
    env.globals["reproduce"] = reproduction  # the Reproduce section (templates/_reproduce.html)
    env.globals["channel_address"] = CHANNEL_ADDRESS  # read by report.js and the single file
    return env


def breakable(name: str) -> markupsafe.Markup:
    """A module path that may wrap after each dot (``features.<wbr>1.<wbr>conv``), escaped, so
    a narrow table column wraps it rather than scroll."""
    return markupsafe.escape(name).replace(".", markupsafe.Markup(".<wbr>"))


def script() -> str:
    """``report.js``: the parts in ``templates/static/js/``, in ``SCRIPT_PARTS`` order, inside one
    function scope. One file rather than several ``<script>`` elements: one request, no
    globals, and the single-file report inlines it like any script; no bundler, each part is
    plain JavaScript that may use what the parts before it define."""
    folder = template_dir() / STATIC_DIR / SCRIPT_FOLDER
    parts = [f"/* ---- {name} */\n" + (folder / name).read_text(encoding="utf-8")
             for name in SCRIPT_PARTS]
    return "(function () {\n  \"use strict\";\n\n" + "\n".join(parts) + "})();\n"


def copy_static(site: Path) -> dict[str, str]:
    """Copy ``templates/static/*`` as ``name_cb_<hash>.ext``, and write ``report.js`` from its
    parts the same way; return name -> relative URL."""
    source = template_dir() / STATIC_DIR
    target = site / STATIC_DIR
    target.mkdir(exist_ok=True)
    files = {path.name: path.read_bytes() for path in sorted(source.iterdir()) if path.is_file()}
    files[SCRIPT] = script().encode("utf-8")
    urls: dict[str, str] = {}
    for name, content in files.items():
        stem, suffix = name.rsplit(".", 1)
        busted = f"{stem}_cb_{hashlib.sha256(content).hexdigest()[:10]}.{suffix}"
        (target / busted).write_bytes(content)
        urls[name] = static_file(busted)
    return urls


def write_colorbar(site: Path, cmap: str) -> str:
    """The colormap as a 256x1 picture, low to high, for the channel view's value scale; its
    site-relative path."""
    save_png(colorbar(cmap), site / COLORBAR_PNG)
    return COLORBAR_PNG


def copy_icon(site: Path) -> str:
    """The tab icon. Without one, a browser asks the server for ``/favicon.ico`` on every
    page, which is a 404 (and a console error) on a project site."""
    shutil.copyfile(template_dir() / "icon.svg", site / ICON)
    return ICON


def render(site: Path, template: str, output: str, **context: Any) -> None:
    html = environment().get_template(template).render(**context)
    # Strip trailing spaces so the bytes do not depend on template indentation details.
    text = "\n".join(line.rstrip() for line in html.splitlines()) + "\n"
    (site / output).write_text(text, encoding="utf-8")


def write_pages(site: Path, record: ReportRecord, input_size: int | tuple[int, int]) -> None:
    """The overview, one page per layer (with previous / next), statics and ``.nojekyll``.

    ``input_size`` is the model input's side, or its (width, height) when it is not square.
    """
    assets = {**copy_static(site), "icon.svg": copy_icon(site)}
    layers = record.layers
    width, height = input_size if isinstance(input_size, tuple) else (input_size, input_size)
    common = dict(report=record, layers=layers, assets=assets, predictions=record.predictions,
                  input_png=INPUT_PNG, input_size=width, input_width=width,
                  input_height=height, pixelated=max(width, height) < PIXELATED_BELOW,
                  toc=views.toc(layers), colorbar_png=write_colorbar(site, record.options.cmap))
    render(site, "index.html", INDEX, page="index", **common)
    for position, layer in enumerate(layers):
        data = views.layer_data(layer, record.options, record.inputs)
        render(site, "layer.html", layer.page, page=layer.page, layer=layer, data=data,
               scale=data["scale"],
               filter_scale=(views.filter_display_scale(*layer.filters.size)
                             if layer.filters is not None else 1),
               previous=layers[position - 1] if position > 0 else None,
               next=layers[position + 1] if position + 1 < len(layers) else None, **common)
    (site / NO_JEKYLL).write_text("", encoding="utf-8")
