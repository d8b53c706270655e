"""Which pages go into the single file, in what order, each cut into its shell and its content.

Every page of a report is the same shell (header, sidebar, footer) around its own ``<main>``;
the single file keeps one shell and puts each page's ``<main>`` content in a ``div.rg-page``.
"""
from __future__ import annotations

import html
import json
from dataclasses import dataclass
from pathlib import Path

from reportgen.errors import ReportError
from reportgen.publish.singlefile.html import BODY, MAIN, title
from reportgen.sitelayout import INDEX, MANIFEST

#: The overview page: first in the file, shown when the address has no fragment.
OVERVIEW = INDEX
#: The id of a page's ``div``: ``layer-x.html`` -> ``rg-page-layer-x``.
PAGE_PREFIX = "rg-page-"


@dataclass(frozen=True)
class Page:
    """One rendered page: ``head + main + tail`` is its text."""

    name: str
    head: str  # everything up to the content of <main> (or <body>)
    main: str
    tail: str
    title: str | None
    layer: str | None  # the layer a layer page shows, for ``#LAYER:INDEX`` addresses

    def section(self, content: str) -> str:
        """``content`` (this page's rewritten ``main``) as the page's ``div`` in the file."""
        attributes = f' data-title="{self.title}"' if self.title is not None else ""
        if self.layer is not None:
            attributes += f' data-rg-layer="{html.escape(self.layer)}"'
        return (f'<div class="rg-page" id="{page_id(self.name)}" '
                f'data-page="{html.escape(self.name)}"{attributes}>\n{content}\n</div>')


def read_pages(site: Path, skip: str) -> list[Page]:
    """The site's pages (but ``skip``, an earlier single file) in the order of :func:`order`."""
    names, layers = order(site, skip)
    texts = {name: (site / name).read_text(encoding="utf-8") for name in names}
    return [Page(name, *split(texts[name], name), title(texts[name]), layers.get(name))
            for name in names]


def order(site: Path, skip: str) -> tuple[list[str], dict[str, str]]:
    """index.html first, then the layer pages in forward order (the manifest's), then others;
    and each layer page's layer name (for ``#LAYER:INDEX`` addresses)."""
    names = sorted(path.name for path in site.glob("*.html") if path.name != skip)
    wanted = [OVERVIEW]
    layers: dict[str, str] = {}
    try:
        manifest = json.loads((site / MANIFEST).read_text(encoding="utf-8"))
        for layer in manifest.get("layers", []):
            if layer.get("page"):
                wanted.append(layer["page"])
                layers[layer["page"]] = str(layer.get("name", ""))
    except (OSError, ValueError, TypeError, KeyError, AttributeError):
        pass  # no or an odd manifest: the overview, then the other pages by name
    ordered = [name for name in dict.fromkeys(wanted) if name in names]
    return ordered + [name for name in names if name not in ordered], layers


def split(text: str, name: str) -> tuple[str, str, str]:
    """(before, content, after) of the page's <main> (or <body>)."""
    match = MAIN.search(text) or BODY.search(text)
    if match is None:
        raise ReportError(f"{name} has no <main> or <body>; is it a reportgen report?")
    return text[: match.start(2)], match.group(2), text[match.end(2):]


def stem(name: str) -> str:
    """``layer-x.html`` -> ``layer-x``."""
    return name[: -len(".html")]


def page_id(name: str) -> str:
    """The id of the page's ``div``, the target of links to the page."""
    return PAGE_PREFIX + stem(name)
