"""The style and script that switch pages and fill in shared pictures in the single file.

They are real files, ``templates/static/singlefile/runtime.{css,js}``, to be read and linted as
CSS and JavaScript. :func:`reportgen.report.pages.copy_static` copies only the files directly in
``templates/static/``, so this folder never reaches the multi-page site.
"""
from __future__ import annotations

import re

from reportgen.publish.singlefile.html import BODY
from reportgen.report.pages import template_dir
from reportgen.sitelayout import STATIC_DIR

FOLDER = "singlefile"
_HEAD_END = re.compile(r"</head\s*>", re.I)
#: The first script that runs (embedded JSON does not): shared pictures must be filled in first.
_FIRST_SCRIPT = re.compile(r"<script\b(?![^>]*application/(ld\+)?json)", re.I)


def source(name: str) -> str:
    """The text of ``runtime.css`` or ``runtime.js``."""
    return (template_dir() / STATIC_DIR / FOLDER / name).read_text(encoding="utf-8")


def add_runtime(text: str, store: str = "") -> str:
    """The runtime style at the end of the head, the script before the page's first script
    (or at the end of the body), with ``store`` (the pictures it fills in) just before it."""
    style = f"<style>\n{source('runtime.css')}</style>\n"
    script = f"{store}<script>\n{source('runtime.js')}</script>\n"
    head_end = _HEAD_END.search(text)
    if head_end:
        text = text[: head_end.start()] + style + text[head_end.start():]
    body = BODY.search(text)
    where = None
    if body:
        found = _FIRST_SCRIPT.search(text, body.start(2))
        where = found.start() if found else body.end(2)
    if where is None:
        return text + script
    return text[:where] + script + text[where:]
