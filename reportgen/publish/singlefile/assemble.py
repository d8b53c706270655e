"""The single file's text: one shell, every page's content as a section, files inlined."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from reportgen.publish.singlefile.anchors import SHELL, Anchors
from reportgen.publish.singlefile.assets import Assets
from reportgen.publish.singlefile.html import ids
from reportgen.publish.singlefile.inline import inline
from reportgen.publish.singlefile.pages import read_pages
from reportgen.publish.singlefile.runtime import add_runtime
from reportgen.publish.singlefile.shell import shell, shell_page


@dataclass(frozen=True)
class Document:
    """The single file's text and what went into it, for the build's summary line."""

    text: str
    pages: int
    assets: int  # files of the site inlined


def assemble(site: Path, skip: str) -> Document:
    """The site's pages (but ``skip``) as one document."""
    pages = read_pages(site, skip)
    base = shell_page(pages)
    anchors = Anchors(pages, set(ids(base.head + base.tail)))
    head, tail = shell(pages)
    sections = [page.section(anchors.rewrite(page.name, page.main)) for page in pages]
    container = '\n<div class="rg-pages">\n' + "\n".join(sections) + "\n</div>\n"
    text = anchors.rewrite(SHELL, head) + container + anchors.rewrite(SHELL, tail)
    assets = Assets(site)
    text = inline(text, assets)
    text = add_runtime(text, assets.store())
    return Document(text, len(pages), assets.used)
