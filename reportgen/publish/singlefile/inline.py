"""Every reference of the document to a file of the site, replaced by the file itself.

Stylesheets become ``<style>``, scripts are inlined, ``src``/``href``/``poster`` get data URIs
(or a key, after the file's first use), and paths in ``style`` attributes, in embedded JSON and
in ``data-*`` values the report's script reads become data URIs or references (see
:mod:`reportgen.publish.singlefile.assets`).
"""
from __future__ import annotations

import html
import re
from functools import partial

from reportgen.publish.singlefile.assets import Assets
from reportgen.publish.singlefile.html import (
    Attribute,
    Raw,
    Tag,
    rewrite_attributes,
    rewrite_tags,
    split_raw,
)

#: Attributes whose value is the URL of a file to show or download.
_ASSET_ATTRIBUTES = ("src", "href", "poster")
#: Added to an element with references in its ``data-*`` values, for the script to find them.
_TOKENS = ' data-rg-tokens=""'
_SOURCE = re.compile(r"""\ssrc\s*=\s*["']([^"']+)["']""")
_SOURCE_ATTRIBUTE = re.compile(r"""\ssrc\s*=\s*["'][^"']+["']""")
_END_SCRIPT = re.compile(r"</(script)", re.I)
_JSON_TYPE = re.compile(r"""type\s*=\s*["']application/(ld\+)?json["']""", re.I)
_STYLESHEET = re.compile(r"""rel\s*=\s*["']?stylesheet""", re.I)
_HREF = re.compile(r"""href\s*=\s*["']([^"']+)["']""")


def inline(text: str, assets: Assets) -> str:
    """``text`` with the site files it uses inlined from ``assets``' site."""
    pieces: list[str] = []
    for piece in split_raw(text):
        if isinstance(piece, Raw):
            pieces.append(_raw(piece, assets))
        else:
            pieces.append(rewrite_tags(piece, partial(_tag, assets)))
    return "".join(pieces)


def _raw(block: Raw, assets: Assets) -> str:
    """A ``<style>`` with its ``url()``s inlined, a ``<script src>`` with its code, embedded
    JSON with references for its paths."""
    if block.kind == "style":
        opening = rewrite_tags(block.opening, partial(_tag, assets))
        return opening + assets.css(block.body, assets.site) + block.closing
    source = _SOURCE.search(block.opening)
    path = assets.file(html.unescape(source.group(1))) if source else None
    if path is not None:
        assets.use(path)
        code = _END_SCRIPT.sub(r"<\\/\1", path.read_text(encoding="utf-8"))
        opening = _SOURCE_ATTRIBUTE.sub("", block.opening)
        return f"{opening}\n{code}\n{block.closing}"
    if _JSON_TYPE.search(block.opening):
        return block.opening + assets.json(block.body) + block.closing
    return block.opening + block.body + block.closing


def _tag(assets: Assets, tag: Tag) -> str:
    """A linked stylesheet as ``<style>``; any other tag with its attributes inlined."""
    if tag.name.lower() == "link" and _STYLESHEET.search(tag.attributes):
        href = _HREF.search(tag.attributes)
        path = assets.file(html.unescape(href.group(1))) if href else None
        if path is not None:
            assets.use(path)
            css = assets.css(path.read_text(encoding="utf-8"), path.parent)
            return f"<style>\n{css}\n</style>"
    extra: list[str] = []  # attributes to add, after the tag's own
    rewritten = rewrite_attributes(tag.attributes, partial(_attribute, assets, tag, extra))
    return tag.rebuilt(rewritten, "".join(extra))


def _attribute(assets: Assets, tag: Tag, extra: list[str], attribute: Attribute) -> str | None:
    value = attribute.value
    if value is None:
        return None
    name = attribute.name.lower()
    if name == "style":
        return attribute.with_value(assets.css(value, assets.site))
    if name.startswith("data-") and not name.startswith("data-rg-"):
        return _data(assets, extra, attribute, value)
    if name not in _ASSET_ATTRIBUTES:
        return None
    path = assets.file(value)
    if path is None:
        return None
    key, uri = assets.uri(path)
    if name == "href" and tag.name.lower() == "a" and "download=" not in tag.attributes:
        extra.append(f' download="{html.escape(path.name)}"')
    if assets.first_use(path):  # the first use carries the data
        return f'{attribute.space}{attribute.name}="{uri}" data-rg-asset="{name} {key}"'
    return f'{attribute.space}data-rg-{name}="{key}"'  # later uses: filled in by the script


def _data(assets: Assets, extra: list[str], attribute: Attribute, value: str) -> str | None:
    """A ``data-*`` value for the page's script (JSON or a bare path), with references."""
    path = assets.file(value)
    changed = assets.reference(path) if path else assets.json(value)
    if changed == value:
        return None
    if _TOKENS not in extra:
        extra.append(_TOKENS)
    return attribute.with_value(changed)
