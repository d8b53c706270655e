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

from reportgen.formatting import format_number, format_pair
from reportgen.report import views
from reportgen.report.model import CHANNEL_ADDRESS, IMAGE_DIR, INPUT_PNG, ReportRecord
from reportgen.report.reproduce import reproduction

STATIC_DIR = "static"


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
    env.globals["reproduce"] = reproduction  # the Reproduce section (templates/_reproduce.html)
    env.globals["channel_address"] = CHANNEL_ADDRESS  # read by report.js and the single file
    return env


def copy_static(site: Path) -> dict[str, str]:
    """Copy ``templates/static/*`` as ``name_cb_<hash>.ext``; return name -> relative URL."""
    source = template_dir() / STATIC_DIR
    target = site / STATIC_DIR
    target.mkdir(exist_ok=True)
    urls: dict[str, str] = {}
    for path in sorted(source.iterdir()):
        if not path.is_file():
            continue
        digest = hashlib.sha256(path.read_bytes()).hexdigest()[:10]
        busted = f"{path.stem}_cb_{digest}{path.suffix}"
        shutil.copyfile(path, target / busted)
        urls[path.name] = f"{STATIC_DIR}/{busted}"
    return urls


def copy_icon(site: Path, folder: str) -> str:
    """The tab icon, as ``folder/icon.svg``. Without one, a browser asks the server for
    ``/favicon.ico`` on every page, which is a 404 (and a console error) on a project site."""
    shutil.copyfile(template_dir() / "icon.svg", site / folder / "icon.svg")
    return f"{folder}/icon.svg"


def render(site: Path, template: str, output: str, **context: Any) -> None:
    html = environment().get_template(template).render(**context)
    # Strip trailing spaces so the bytes do not depend on template indentation details.
    text = "\n".join(line.rstrip() for line in html.splitlines()) + "\n"
    (site / output).write_text(text, encoding="utf-8")


def write_pages(site: Path, record: ReportRecord, input_size: int | tuple[int, int]) -> None:
    """The overview, one page per layer (with previous / next), statics and ``.nojekyll``.

    ``input_size`` is the model input's side, or its (width, height) when it is not square.
    """
    assets = {**copy_static(site), "icon.svg": copy_icon(site, IMAGE_DIR)}
    layers = record.layers
    width, height = input_size if isinstance(input_size, tuple) else (input_size, input_size)
    common = dict(report=record, layers=layers, assets=assets, predictions=record.predictions,
                  input_png=INPUT_PNG, input_size=width, input_width=width,
                  input_height=height, toc=views.toc(layers))
    render(site, "index.html", "index.html", page="index", **common)
    for position, layer in enumerate(layers):
        data = views.layer_data(layer, record.options, INPUT_PNG, record.inputs)
        render(site, "layer.html", layer.page, page=layer.page, layer=layer, data=data,
               scale=data["scale"],
               filter_scale=(views.filter_display_scale(*layer.filters.size)
                             if layer.filters is not None else 1),
               previous=layers[position - 1] if position > 0 else None,
               next=layers[position + 1] if position + 1 < len(layers) else None, **common)
    (site / ".nojekyll").write_text("", encoding="utf-8")
