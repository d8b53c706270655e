"""One HTML file holding the whole report: mail it, attach it, open it by double click offline.

It is made from the rendered site, not from the templates, so it keeps working when they
change: the overview page is the shell, and the ``<main>`` of every page becomes one
``div.rg-page`` inside it. Links between pages become in-document anchors (``layer-x.html`` ->
``#rg-page-layer-x``, ``layer-x.html#frag`` -> ``#frag``), ids that several pages share get the
page as a prefix, stylesheets and scripts are inlined, and every file of the site a page uses
(images, manifest.json, icons) becomes a ``data:`` URI.

A picture used many times (the input image appears in every layer's channel view, a grid
both as ``<img>`` and in the layer's JSON) is stored once: its first use carries the data, later
uses (an ``<img>``, a path in embedded JSON or in a ``data-*`` attribute the report's script
reads) carry a reference that a small inline script fills in before the report's own script
runs. The same script shows one page at a time, following the address's #fragment (also the
``#LAYER:INDEX`` channel addresses, by the element with that ``data-layer``). Without
JavaScript, CSS ``:target`` does the page switching and every first-use picture still shows.
"""
from __future__ import annotations

import base64
import html
import json
import logging
import mimetypes
import os
import re
import tempfile
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote, urlsplit

from reportgen.errors import ReportError
from reportgen.output import MANIFEST
from reportgen.site import STATIC_DIR, template_dir

log = logging.getLogger(__name__)

SINGLE_FILE = "report.html"
#: Above this, browsers get slow or crash opening one page (an 80 MB report crashes some).
WARN_BYTES = 50 * 1024 * 1024
PAGE_PREFIX = "rg-page-"
_MIME = {".png": "image/png", ".svg": "image/svg+xml", ".json": "application/json",
         ".css": "text/css", ".js": "text/javascript", ".ico": "image/x-icon",
         ".jpg": "image/jpeg", ".jpeg": "image/jpeg", ".webp": "image/webp",
         ".gif": "image/gif", ".woff2": "font/woff2", ".woff": "font/woff"}

_TAG = re.compile(r"<([a-zA-Z][a-zA-Z0-9-]*)(\s[^<>]*?)?(/?)>")
_ATTRIBUTE = re.compile(r"""(\s+)([^\s"'<>/=]+)(?:(\s*=\s*)(?:"([^"]*)"|'([^']*)'|([^\s"'=<>`]+)))?""")
_RAW = re.compile(r"(<(script|style)\b[^>]*>)(.*?)(</\2\s*>)", re.S | re.I)
_MAIN = re.compile(r"(<main\b[^>]*>)(.*)(</main\s*>)", re.S | re.I)
_BODY = re.compile(r"(<body\b[^>]*>)(.*)(</body\s*>)", re.S | re.I)
_TITLE = re.compile(r"<title>(.*?)</title>", re.S | re.I)
_ID_LISTS = ("for", "aria-labelledby", "aria-describedby", "aria-controls", "aria-owns",
             "aria-details", "aria-errormessage", "headers", "list", "form")
_ASSET_ATTRIBUTES = ("src", "href", "poster")


@dataclass(frozen=True)
class SingleFile:
    """What :func:`write_single_file` wrote."""

    path: Path
    size: int
    pages: int
    assets: int

    @property
    def too_large(self) -> bool:
        return self.size > WARN_BYTES


def write_single_file(site_dir: str | os.PathLike, output: str | os.PathLike | None = None
                      ) -> SingleFile:
    """Write the report in ``site_dir`` as one HTML file (default ``<site_dir>/report.html``)."""
    site = Path(site_dir)
    if not (site / "index.html").is_file():
        raise ReportError(f"'{site_dir}' holds no index.html; build the report first.")
    target = Path(output) if output is not None else site / SINGLE_FILE
    pages, layer_names = _pages(site)
    document, assets = _Assembler(site, pages, layer_names).document()
    data = document.encode("utf-8")
    target.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(prefix=f".{target.name}.", dir=target.parent)
    try:
        with os.fdopen(handle, "wb") as stream:
            stream.write(data)
        os.chmod(temporary, 0o644)
        os.replace(temporary, target)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    result = SingleFile(target, len(data), len(pages), assets)
    if result.too_large:
        log.warning("%s is %.0f MB; browsers get slow or give up on single pages this large. "
                    "Keep fewer layers with --layers (e.g. --layers 'features.1*'), or publish "
                    "the multi-page site instead.", target.name, result.size / 2**20)
    return result


def _pages(site: Path) -> tuple[list[str], dict[str, str]]:
    """index.html first, then the layer pages in forward order (the manifest's), then others;
    and each layer page's layer name (for ``#LAYER:INDEX`` addresses)."""
    names = sorted(path.name for path in site.glob("*.html") if path.name != SINGLE_FILE)
    order = ["index.html"]
    layer_names: dict[str, str] = {}
    try:
        manifest = json.loads((site / MANIFEST).read_text(encoding="utf-8"))
        for layer in manifest.get("layers", []):
            if layer.get("page"):
                order.append(layer["page"])
                layer_names[layer["page"]] = str(layer.get("name", ""))
    except (OSError, ValueError, TypeError, KeyError, AttributeError):
        pass
    ordered = [name for name in dict.fromkeys(order) if name in names]
    return ordered + [name for name in names if name not in ordered], layer_names


def _page_id(name: str) -> str:
    return PAGE_PREFIX + name[: -len(".html")]


class _Assembler:
    def __init__(self, site: Path, pages: list[str], layer_names: dict[str, str]) -> None:
        self.site = site.resolve()
        self.pages = pages
        self.layer_names = layer_names
        self.texts = {name: (site / name).read_text(encoding="utf-8") for name in pages}
        self.parts = {name: _split(self.texts[name], name) for name in pages}
        # The shell (everything around <main>'s content) of a layer page, the most common kind;
        # where the overview's shell differs (say, no input thumbnail in its sidebar), the
        # differing elements are kept and marked to show on the overview or on the others only.
        self.base = pages[1] if len(pages) > 1 else pages[0]
        self.ids = {name: _ids(self.parts[name][1]) for name in pages}
        shell_ids = set(_ids(self.parts[self.base][0] + self.parts[self.base][2]))
        counts: dict[str, int] = {}
        for name in pages:
            for element_id in self.ids[name]:
                counts[element_id] = counts.get(element_id, 0) + 1
        # The overview keeps its ids; an id also used elsewhere gets its page's name as prefix.
        taken = set(self.ids["index.html"]) | shell_ids | {_page_id(name) for name in pages}
        self.renamed: dict[str, dict[str, str]] = {"index.html": {}, "": {}}
        for name in pages[1:]:
            self.renamed[name] = {element_id: f"{_page_id(name)[len(PAGE_PREFIX):]}--{element_id}"
                                  for element_id in self.ids[name]
                                  if counts[element_id] > 1 or element_id in taken}
        self.uris: dict[str, tuple[str, str]] = {}  # file -> (key, data URI)
        self.used: set[str] = set()

    # -------------------------------------------------------------- structure
    def document(self) -> tuple[str, int]:
        head, _, tail = self.parts[self.base]
        if self.base != "index.html":
            index_head, _, index_tail = self.parts["index.html"]
            head, tail = _variants(index_head, head), _variants(index_tail, tail)
        sections = [self._section(name) for name in self.pages]
        container = '\n<div class="rg-pages">\n' + "\n".join(sections) + "\n</div>\n"
        text = self._rewrite("", head) + container + self._rewrite("", tail)
        text = self._inline_assets(text)
        text = self._add_runtime(text)
        return text, len(self.used)

    def _section(self, name: str) -> str:
        inner = self.parts[name][1]
        title = _TITLE.search(self.texts[name])
        title_attribute = f' data-title="{title.group(1).strip()}"' if title else ""
        if name in self.layer_names:
            title_attribute += f' data-rg-layer="{html.escape(self.layer_names[name])}"'
        return (f'<div class="rg-page" id="{_page_id(name)}" data-page="{html.escape(name)}"'
                f'{title_attribute}>\n{self._rewrite(name, inner)}\n</div>')

    # ------------------------------------------------------- ids and links
    def _rewrite(self, page: str, text: str) -> str:
        """Rename shared ids and turn links between pages into in-document anchors."""
        renamed = self.renamed[page]

        def tag(match: re.Match[str]) -> str:
            attributes = match.group(2)
            if not attributes:
                return match.group(0)

            def attribute(item: re.Match[str]) -> str:
                space, name, equals = item.group(1), item.group(2), item.group(3)
                if equals is None:
                    return item.group(0)
                raw = _value(item)
                value = html.unescape(raw)
                lowered = name.lower()
                if lowered == "id" and value in renamed:
                    value = renamed[value]
                elif lowered in _ID_LISTS:
                    value = " ".join(renamed.get(part, part) for part in value.split())
                elif lowered == "href":
                    value = self._link(page, value)
                else:
                    return item.group(0)
                return f'{space}{name}="{html.escape(value)}"'

            return (f"<{match.group(1)}{_ATTRIBUTE.sub(attribute, attributes)}"
                    f"{match.group(3)}>")

        return _outside_raw(text, lambda chunk: _TAG.sub(tag, chunk))

    def _link(self, page: str, value: str) -> str:
        if value.startswith("#"):
            return "#" + self.renamed[page].get(unquote(value[1:]), value[1:])
        parts = urlsplit(value)
        if parts.scheme or parts.netloc or not parts.path.endswith(".html"):
            return value
        target = parts.path
        if target not in self.texts:
            return value
        if parts.fragment:
            fragment = unquote(parts.fragment)
            if fragment in self.ids[target]:
                return "#" + self.renamed[target].get(fragment, fragment)
            return "#" + parts.fragment  # e.g. #LAYER:INDEX, which the page's script routes
        return "#" + _page_id(target)

    # ------------------------------------------------------------- assets
    def _file(self, value: str) -> Path | None:
        """The site file a relative URL names, or None (external, data:, missing, outside)."""
        if not value or len(value) > 1024 or value.startswith("#") or \
                any(character in value for character in '{}[]"<>\n'):
            return None  # not a URL (e.g. JSON in a data attribute)
        parts = urlsplit(value)
        if parts.scheme or parts.netloc or not parts.path:
            return None
        try:
            path = (self.site / unquote(parts.path)).resolve()
            if self.site not in path.parents or not path.is_file() or path.suffix == ".html":
                return None
        except (OSError, ValueError):
            return None
        return path

    def _uri(self, path: Path) -> tuple[str, str]:
        key = str(path)
        if key not in self.uris:
            mime = _MIME.get(path.suffix.lower()) or mimetypes.guess_type(path.name)[0] or \
                "application/octet-stream"
            payload = path.read_bytes()
            if path.suffix.lower() == ".css":
                payload = self._css(payload.decode("utf-8"), path.parent).encode("utf-8")
            encoded = base64.b64encode(payload).decode("ascii")
            self.uris[key] = (f"a{len(self.uris)}", f"data:{mime};base64,{encoded}")
        return self.uris[key]

    def _css(self, css: str, folder: Path) -> str:
        def url(match: re.Match[str]) -> str:
            value = match.group(2)
            path = self._file(os.path.relpath(folder / value, self.site)) \
                if not value.startswith(("#", "data:")) else None
            if path is None:
                return match.group(0)
            self.used.add(str(path))
            return f'url("{self._uri(path)[1]}")'

        return re.sub(r"""url\(\s*(["']?)([^"')]+)\1\s*\)""", url, css)

    def _inline_assets(self, text: str) -> str:
        seen: set[str] = set()

        def raw(opening: str, kind: str, body: str, closing: str) -> str:
            if kind == "style":
                return _TAG.sub(tag, opening) + self._css(body, self.site) + closing
            source = re.search(r"""\ssrc\s*=\s*["']([^"']+)["']""", opening)
            path = self._file(html.unescape(source.group(1))) if source else None
            if path is not None:
                self.used.add(str(path))
                code = path.read_text(encoding="utf-8")
                code = re.sub(r"</(script)", r"<\\/\1", code, flags=re.I)
                opening = re.sub(r"""\ssrc\s*=\s*["'][^"']+["']""", "", opening)
                return f"{opening}\n{code}\n{closing}"
            if re.search(r"""type\s*=\s*["']application/(ld\+)?json["']""", opening, re.I):
                return opening + self._json(body) + closing
            return opening + body + closing

        def tag(match: re.Match[str]) -> str:
            name = match.group(1).lower()
            attributes = match.group(2) or ""
            if name == "link" and re.search(r"""rel\s*=\s*["']?stylesheet""", attributes, re.I):
                href = re.search(r"""href\s*=\s*["']([^"']+)["']""", attributes)
                path = self._file(html.unescape(href.group(1))) if href else None
                if path is not None:
                    self.used.add(str(path))
                    css = self._css(path.read_text(encoding="utf-8"), path.parent)
                    return f"<style>\n{css}\n</style>"
            extra: list[str] = []

            def attribute(item: re.Match[str]) -> str:
                space, attr, equals = item.group(1), item.group(2), item.group(3)
                lowered = attr.lower()
                if equals is None:
                    return item.group(0)
                value = html.unescape(_value(item))
                if lowered == "style":
                    return f'{space}{attr}="{html.escape(self._css(value, self.site))}"'
                if lowered.startswith("data-") and not lowered.startswith("data-rg-"):
                    # data for the page's script (JSON or a bare path): references it resolves
                    path = self._file(value)
                    changed = f"rg-asset:{self._uri(path)[0]}" if path else self._json(value)
                    if changed == value:
                        return item.group(0)
                    if path is not None:
                        self.used.add(str(path))
                    if ' data-rg-tokens=""' not in extra:
                        extra.append(' data-rg-tokens=""')
                    return f'{space}{attr}="{html.escape(changed)}"'
                if lowered not in _ASSET_ATTRIBUTES:
                    return item.group(0)
                path = self._file(value)
                if path is None:
                    return item.group(0)
                self.used.add(str(path))
                key, uri = self._uri(path)
                if lowered == "href" and name == "a" and "download=" not in attributes:
                    extra.append(f' download="{html.escape(path.name)}"')
                if str(path) not in seen:  # the first use carries the data
                    seen.add(str(path))
                    return f'{space}{attr}="{uri}" data-rg-asset="{lowered} {key}"'
                return f'{space}data-rg-{lowered}="{key}"'  # later uses: filled in by script

            rewritten = _ATTRIBUTE.sub(attribute, attributes)
            return f"<{match.group(1)}{rewritten}{''.join(extra)}{match.group(3)}>"

        pieces: list[str] = []
        position = 0
        for block in _RAW.finditer(text):
            pieces.append(_TAG.sub(tag, text[position: block.start()]))
            pieces.append(raw(block.group(1), block.group(2).lower(), block.group(3),
                              block.group(4)))
            position = block.end()
        pieces.append(_TAG.sub(tag, text[position:]))
        return "".join(pieces)

    def _json(self, body: str) -> str:
        """Paths to site files inside embedded JSON become references the script resolves."""
        def string(match: re.Match[str]) -> str:
            try:
                value = json.loads(match.group(0))
            except ValueError:
                return match.group(0)
            path = self._file(value) if isinstance(value, str) else None
            if path is None:
                return match.group(0)
            self.used.add(str(path))
            return json.dumps(f"rg-asset:{self._uri(path)[0]}")

        return re.sub(r'"(?:[^"\\]|\\.)*"', string, body)

    def _add_runtime(self, text: str) -> str:
        """The style and script that switch pages and fill in shared pictures."""
        style = f"<style>\n{_runtime('runtime.css')}</style>\n"
        script = f"<script>\n{_runtime('runtime.js')}</script>\n"
        head_end = re.search(r"</head\s*>", text, re.I)
        if head_end:
            text = text[: head_end.start()] + style + text[head_end.start():]
        body = _BODY.search(text)
        first_script = re.compile(r"<script\b(?![^>]*application/(ld\+)?json)", re.I)
        where = None
        if body:
            found = first_script.search(text, body.start(2))
            where = found.start() if found else body.end(2)
        if where is None:
            return text + script
        return text[:where] + script + text[where:]


def _split(text: str, name: str) -> tuple[str, str, str]:
    """(before, content, after) of the page's <main> (or <body>)."""
    match = _MAIN.search(text) or _BODY.search(text)
    if match is None:
        raise ReportError(f"{name} has no <main> or <body>; is it a reportgen report?")
    return text[: match.start(2)], match.group(2), text[match.end(2):]


def _variants(index: str, base: str) -> str:
    """The base shell, plus what only the overview's shell has, each part marked for its pages.

    Line by line (the templates render one element per line or more): lines only the base has
    show on pages other than the overview, lines only the overview has on the overview; a block
    is marked only if it is whole elements, otherwise the base's lines are kept as they are.
    """
    import difflib

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
    depth, marks = 0, []
    for match in re.finditer(r"<(/?)([a-zA-Z][a-zA-Z0-9-]*)([^<>]*?)(/?)>", block):
        closing, name, self_closing = match.group(1), match.group(2).lower(), match.group(4)
        if closing:
            depth -= 1
            if depth < 0:
                return block if keep else ""
            continue
        if depth == 0:
            marks.append(match.end(3))
        if not self_closing and name not in _VOID:
            depth += 1
    if depth != 0 or not marks:
        return block if keep else ""
    for position in reversed(marks):
        block = block[:position] + f' data-rg-shell="{where}"' + block[position:]
    return block


_VOID = {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source",
         "track", "wbr"}


def _value(item: re.Match[str]) -> str:
    for group in (4, 5, 6):
        if item.group(group) is not None:
            return item.group(group)
    return ""


def _outside_raw(text: str, change) -> str:  # type: ignore[no-untyped-def]
    """Apply ``change`` to the text between <script>/<style> blocks, never inside them."""
    pieces: list[str] = []
    position = 0
    for block in _RAW.finditer(text):
        pieces.append(change(text[position: block.start()]))
        pieces.append(change(block.group(1)) + block.group(3) + block.group(4))
        position = block.end()
    pieces.append(change(text[position:]))
    return "".join(pieces)


def _ids(text: str) -> list[str]:
    found: list[str] = []

    def collect(chunk: str) -> str:
        for match in _TAG.finditer(chunk):
            for item in _ATTRIBUTE.finditer(match.group(2) or ""):
                if item.group(2).lower() == "id" and item.group(3) is not None:
                    found.append(html.unescape(_value(item)))
        return chunk

    _outside_raw(text, collect)
    return found


def _runtime(name: str) -> str:
    """``templates/static/singlefile/<name>``: real files, not copied into multi-page sites."""
    return (template_dir() / STATIC_DIR / "singlefile" / name).read_text(encoding="utf-8")
