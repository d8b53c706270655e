"""Ids that stay unique once all pages share one document, and links that stay inside it.

The overview keeps its ids; an id of another page that some other page (or the shell) also
uses gets the page's name as a prefix (``stats`` -> ``layer-x--stats``), along with every
``href="#..."``, ``for`` and ``aria-*`` reference to it on that page. Links between pages
become in-document anchors: ``layer-x.html`` -> ``#rg-page-layer-x``, ``layer-x.html#frag``
-> ``#frag`` (renamed as on its page).
"""
from __future__ import annotations

from functools import partial
from urllib.parse import unquote, urlsplit

from reportgen.publish.singlefile.html import (
    ID_LISTS,
    Attribute,
    ids,
    rewrite_attributes_outside_raw,
)
from reportgen.publish.singlefile.pages import OVERVIEW, Page, page_id, stem

#: The page name for the shell's own text, whose ids are never renamed.
SHELL = ""


class Anchors:
    """Renames ids of the pages and points their links into the one document."""

    def __init__(self, pages: list[Page], shell_ids: set[str]) -> None:
        self.ids = {page.name: ids(page.main) for page in pages}
        counts: dict[str, int] = {}
        for page in pages:
            for element_id in self.ids[page.name]:
                counts[element_id] = counts.get(element_id, 0) + 1
        taken = set(self.ids[OVERVIEW]) | shell_ids | {page_id(page.name) for page in pages}
        self.renamed: dict[str, dict[str, str]] = {OVERVIEW: {}, SHELL: {}}
        for page in pages[1:]:
            self.renamed[page.name] = {element_id: f"{stem(page.name)}--{element_id}"
                                       for element_id in self.ids[page.name]
                                       if counts[element_id] > 1 or element_id in taken}

    def rewrite(self, page: str, text: str) -> str:
        """``text`` of ``page`` (or of the :data:`SHELL`) with its ids renamed and its links
        between pages turned into in-document anchors."""
        return rewrite_attributes_outside_raw(text, partial(self._attribute, page))

    def link(self, page: str, value: str) -> str:
        """Where an ``href`` on ``page`` points in the single file."""
        if value.startswith("#"):
            return "#" + self.renamed[page].get(unquote(value[1:]), value[1:])
        parts = urlsplit(value)
        if parts.scheme or parts.netloc or not parts.path.endswith(".html"):
            return value
        target = parts.path
        if target not in self.ids:
            return value
        if parts.fragment:
            fragment = unquote(parts.fragment)
            if fragment in self.ids[target]:
                return "#" + self.renamed[target].get(fragment, fragment)
            return "#" + parts.fragment  # e.g. #LAYER:INDEX, which the page's script routes
        return "#" + page_id(target)

    def _attribute(self, page: str, attribute: Attribute) -> str | None:
        value = attribute.value
        if value is None:
            return None
        renamed = self.renamed[page]
        name = attribute.name.lower()
        if name == "id" and value in renamed:
            value = renamed[value]
        elif name in ID_LISTS:
            value = " ".join(renamed.get(part, part) for part in value.split())
        elif name == "href":
            value = self.link(page, value)
        else:
            return None
        return attribute.with_value(value)
