"""The site's files as ``data:`` URIs, each encoded once, and references to them for later uses.

A picture used many times (the input image appears in every layer's channel view, a grid both
as ``<img>`` and in the layer's JSON) is stored once: its first use carries the data under a
short key (``a0``, ``a1``, ...); later uses carry only the key, which the runtime script
resolves (``data-rg-src="a0"``, or ``rg-asset:a0`` inside JSON and ``data-*`` values). A file
that only JSON or ``data-*`` values name (dataset sprite sheets, feature visualisations, the
grids of a second image: pictures the page's script draws) has no first use to carry its data,
so :meth:`Assets.store` holds it, once, for the runtime script to read.
"""
from __future__ import annotations

import base64
import json
import mimetypes
import os
import re
from functools import partial
from pathlib import Path
from urllib.parse import unquote, urlsplit

#: Types by extension first: ``mimetypes`` depends on the machine's tables.
_MIME = {".png": "image/png", ".svg": "image/svg+xml", ".json": "application/json",
         ".css": "text/css", ".js": "text/javascript", ".ico": "image/x-icon",
         ".jpg": "image/jpeg", ".jpeg": "image/jpeg", ".webp": "image/webp",
         ".gif": "image/gif", ".woff2": "font/woff2", ".woff": "font/woff"}
_CSS_URL = re.compile(r"""url\(\s*(["']?)([^"')]+)\1\s*\)""")
_JSON_STRING = re.compile(r'"(?:[^"\\]|\\.)*"')
#: Marks a reference to a stored file inside JSON or a ``data-*`` value.
REFERENCE = "rg-asset:"
#: The id of the JSON element holding the data of files that only references name.
STORE = "rg-asset-store"


class Assets:
    """The files of one site that the single file uses, with their data URIs."""

    def __init__(self, site: Path) -> None:
        self.site = site.resolve()
        self._uris: dict[str, tuple[str, str]] = {}  # file -> (key, data URI)
        self._used: set[str] = set()
        self._placed: set[str] = set()  # files whose data is already in the document
        self._referenced: dict[str, Path] = {}  # files named by a reference, in order

    @property
    def used(self) -> int:
        """How many files of the site the document inlines or refers to."""
        return len(self._used)

    def file(self, value: str) -> Path | None:
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

    def use(self, path: Path) -> None:
        """Count ``path`` as used (inlined as code, or by data URI or reference)."""
        self._used.add(str(path))

    def uri(self, path: Path) -> tuple[str, str]:
        """(key, data URI) of ``path``, used; a stylesheet's own ``url()``s are inlined too."""
        self.use(path)
        key = str(path)
        if key not in self._uris:
            mime = _MIME.get(path.suffix.lower()) or mimetypes.guess_type(path.name)[0] or \
                "application/octet-stream"
            payload = path.read_bytes()
            if path.suffix.lower() == ".css":
                payload = self.css(payload.decode("utf-8"), path.parent).encode("utf-8")
            encoded = base64.b64encode(payload).decode("ascii")
            # keys count the files stored so far, those the stylesheet just stored included
            self._uris[key] = (f"a{len(self._uris)}", f"data:{mime};base64,{encoded}")
        return self._uris[key]

    def reference(self, path: Path) -> str:
        """``rg-asset:KEY``: the runtime script puts the file's data URI there."""
        self._referenced.setdefault(str(path), path)
        return REFERENCE + self.uri(path)[0]

    def store(self) -> str:
        """A JSON element with the data of every referenced file no element carries ("" when
        there is none); call it after the document is inlined."""
        unplaced = dict(self.uri(path) for name, path in self._referenced.items()
                        if name not in self._placed)
        if not unplaced:
            return ""
        return (f'<script type="application/json" id="{STORE}">'
                f"{json.dumps(unplaced, separators=(',', ':'))}</script>\n")

    def first_use(self, path: Path) -> bool:
        """True once per file: the use that carries the data; later ones carry the key."""
        if str(path) in self._placed:
            return False
        self._placed.add(str(path))
        return True

    def css(self, css: str, folder: Path) -> str:
        """``css`` (from a file in ``folder``) with its ``url()``s of site files as data URIs."""
        return _CSS_URL.sub(partial(self._css_url, folder), css)

    def json(self, body: str) -> str:
        """Paths to site files inside embedded JSON become references the script resolves."""
        return _JSON_STRING.sub(self._json_string, body)

    def _css_url(self, folder: Path, match: re.Match[str]) -> str:
        value = match.group(2)
        path = self.file(os.path.relpath(folder / value, self.site)) \
            if not value.startswith(("#", "data:")) else None
        if path is None:
            return match.group(0)
        return f'url("{self.uri(path)[1]}")'

    def _json_string(self, match: re.Match[str]) -> str:
        try:
            value = json.loads(match.group(0))
        except ValueError:
            return match.group(0)
        path = self.file(value) if isinstance(value, str) else None
        if path is None:
            return match.group(0)
        return json.dumps(self.reference(path))
