"""Find and rewrite start tags and their attributes in rendered pages, with regular expressions.

The single file is made by editing the pages' text, not by parsing and re-serialising them: a
parser would rewrite every tag, so only the attributes that must change are rebuilt and all
other bytes are copied as they are. ``<script>`` and ``<style>`` bodies are code, not markup,
and are never scanned for tags.
"""
from __future__ import annotations

import html
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import partial

#: A start tag: name, attributes (with their leading space) and a self-closing slash.
TAG = re.compile(r"<([a-zA-Z][a-zA-Z0-9-]*)(\s[^<>]*?)?(/?)>")
#: One attribute: space, name, ``=`` and the value double-, single- or unquoted.
ATTRIBUTE = re.compile(
    r"""(\s+)([^\s"'<>/=]+)(?:(\s*=\s*)(?:"([^"]*)"|'([^']*)'|([^\s"'=<>`]+)))?""")
#: A ``<script>`` or ``<style>`` element: opening tag, kind, body, closing tag.
RAW = re.compile(r"(<(script|style)\b[^>]*>)(.*?)(</\2\s*>)", re.S | re.I)
MAIN = re.compile(r"(<main\b[^>]*>)(.*)(</main\s*>)", re.S | re.I)
BODY = re.compile(r"(<body\b[^>]*>)(.*)(</body\s*>)", re.S | re.I)
_TITLE = re.compile(r"<title>(.*?)</title>", re.S | re.I)
#: Start and end tags, for following how elements nest.
_NESTING = re.compile(r"<(/?)([a-zA-Z][a-zA-Z0-9-]*)([^<>]*?)(/?)>")
#: Elements that never have an end tag.
_VOID = frozenset({"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta",
                   "source", "track", "wbr"})
#: Attributes whose value is a space-separated list of ids, renamed with the ids themselves.
ID_LISTS = ("for", "aria-labelledby", "aria-describedby", "aria-controls", "aria-owns",
            "aria-details", "aria-errormessage", "headers", "list", "form")


@dataclass(frozen=True)
class Attribute:
    """One attribute as written; ``text`` (leading space included) reproduces it exactly."""

    text: str
    space: str
    name: str
    raw: str | None  # the value as written, still escaped; None for a bare ``hidden``

    @property
    def value(self) -> str | None:
        """The value as the browser reads it (entities decoded)."""
        return None if self.raw is None else html.unescape(self.raw)

    def with_value(self, value: str) -> str:
        """This attribute with another value, double-quoted and escaped."""
        return f'{self.space}{self.name}="{html.escape(value)}"'


@dataclass(frozen=True)
class Tag:
    """One start tag as written: ``<{name}{attributes}{slash}>``."""

    name: str
    attributes: str  # "" or starting with white space
    slash: str

    def rebuilt(self, attributes: str, extra: str = "") -> str:
        """The tag with its attributes replaced and ``extra`` ones appended."""
        return f"<{self.name}{attributes}{extra}{self.slash}>"


@dataclass(frozen=True)
class Raw:
    """A ``<script>`` or ``<style>`` element, whose body is not markup."""

    opening: str
    kind: str  # "script" or "style", lower case
    body: str
    closing: str


def split_raw(text: str) -> Iterator[str | Raw]:
    """``text`` in order: the markup between script/style elements (a str), and each of them."""
    position = 0
    for block in RAW.finditer(text):
        yield text[position: block.start()]
        yield Raw(block.group(1), block.group(2).lower(), block.group(3), block.group(4))
        position = block.end()
    yield text[position:]


def outside_raw(text: str, change: Callable[[str], str]) -> str:
    """Apply ``change`` to the markup of ``text``, and to script/style opening tags, never to
    their bodies."""
    pieces: list[str] = []
    for piece in split_raw(text):
        if isinstance(piece, Raw):
            pieces.append(change(piece.opening) + piece.body + piece.closing)
        else:
            pieces.append(change(piece))
    return "".join(pieces)


def tags(markup: str) -> Iterator[Tag]:
    """The start tags in ``markup`` (which must hold no script/style body)."""
    for match in TAG.finditer(markup):
        yield _tag(match)


def attributes(text: str) -> Iterator[Attribute]:
    """The attributes in a tag's ``attributes`` text."""
    for match in ATTRIBUTE.finditer(text):
        yield _attribute(match)


def rewrite_tags(markup: str, change: Callable[[Tag], str]) -> str:
    """Replace every start tag in ``markup`` by what ``change`` makes of it."""
    return TAG.sub(partial(_change_tag, change), markup)


def rewrite_attributes(text: str, change: Callable[[Attribute], str | None]) -> str:
    """Replace each attribute in ``text`` by ``change``'s text for it; None keeps it as written."""
    return ATTRIBUTE.sub(partial(_change_attribute, change), text)


def rewrite_attributes_outside_raw(text: str, change: Callable[[Attribute], str | None]) -> str:
    """:func:`rewrite_attributes` on every start tag of ``text`` outside script/style bodies."""
    return outside_raw(text, partial(rewrite_tags, change=partial(_change_attributes, change)))


def ids(text: str) -> list[str]:
    """Every ``id`` defined in ``text``'s markup, in order."""
    found: list[str] = []
    for piece in split_raw(text):
        markup = piece.opening if isinstance(piece, Raw) else piece
        for tag in tags(markup):
            found.extend(attribute.value for attribute in attributes(tag.attributes)
                         if attribute.name.lower() == "id" and attribute.value is not None)
    return found


def title(text: str) -> str | None:
    """The page's ``<title>``, as written."""
    match = _TITLE.search(text)
    return match.group(1).strip() if match else None


def outermost_ends(block: str) -> list[int] | None:
    """Where each outermost start tag's attributes end in ``block`` (to add one there), or
    None where ``block`` is not whole elements (an end tag without its start, or the reverse)."""
    depth, ends = 0, []
    for match in _NESTING.finditer(block):
        closing, name, self_closing = match.group(1), match.group(2).lower(), match.group(4)
        if closing:
            depth -= 1
            if depth < 0:
                return None
            continue
        if depth == 0:
            ends.append(match.end(3))
        if not self_closing and name not in _VOID:
            depth += 1
    return ends if depth == 0 else None


def _tag(match: re.Match[str]) -> Tag:
    return Tag(match.group(1), match.group(2) or "", match.group(3))


def _attribute(match: re.Match[str]) -> Attribute:
    raw = None
    if match.group(3) is not None:
        raw = next((value for value in match.group(4, 5, 6) if value is not None), "")
    return Attribute(match.group(0), match.group(1), match.group(2), raw)


def _change_tag(change: Callable[[Tag], str], match: re.Match[str]) -> str:
    return change(_tag(match))


def _change_attribute(change: Callable[[Attribute], str | None], match: re.Match[str]) -> str:
    attribute = _attribute(match)
    changed = change(attribute)
    return attribute.text if changed is None else changed


def _change_attributes(change: Callable[[Attribute], str | None], tag: Tag) -> str:
    return tag.rebuilt(rewrite_attributes(tag.attributes, change))
