"""The one shell around all pages, where the overview's and the layer pages' shells differ.

The shell is a layer page's, the most common kind. Where the overview's shell differs (say,
no input thumbnail in its sidebar), the differing elements are kept and marked with
``data-rg-shell`` to show on the overview only or on the other pages only; the runtime style
hides the ones that do not belong to the page shown.
"""
from __future__ import annotations

import difflib

from reportgen.publish.singlefile.html import outermost_ends
from reportgen.publish.singlefile.pages import OVERVIEW, Page


def shell_page(pages: list[Page]) -> Page:
    """The page whose shell the file uses: the first layer page, or the overview alone."""
    return pages[1] if len(pages) > 1 else pages[0]


def shell(pages: list[Page]) -> tuple[str, str]:
    """The text before and after the pages' content, with the overview's differences marked."""
    page = shell_page(pages)
    if page.name == OVERVIEW:
        return page.head, page.tail
    overview = next(other for other in pages if other.name == OVERVIEW)
    return variants(overview.head, page.head), variants(overview.tail, page.tail)


def variants(index: str, base: str) -> str:
    """The base shell, plus what only the overview's shell has, each part marked for its pages.

    Line by line (the templates render one element per line or more): lines only the base has
    show on pages other than the overview, lines only the overview has on the overview; a block
    is marked only if it is whole elements, otherwise the base's lines are kept as they are.
    """
    old, new = index.splitlines(keepends=True), base.splitlines(keepends=True)
    out: list[str] = []
    matcher = difflib.SequenceMatcher(None, old, new, autojunk=False)
    for operation, i1, i2, j1, j2 in matcher.get_opcodes():
        if operation in ("equal", "replace"):
            out.extend(new[j1:j2])  # a changed line (a title, aria-current): the base's
        elif operation == "insert":
            out.append(_mark("".join(new[j1:j2]), "not-index"))
        elif operation == "delete":
            out.append(_mark("".join(old[i1:i2]), "index", keep=False))
    return "".join(out)


def _mark(block: str, where: str, keep: bool = True) -> str:
    """Add data-rg-shell to the outermost elements of ``block``; unbalanced: keep or drop it."""
    ends = outermost_ends(block)
    if not ends:
        return block if keep else ""
    for position in reversed(ends):
        block = block[:position] + f' data-rg-shell="{where}"' + block[position:]
    return block
