"""One HTML file holding the whole report: mail it, attach it, open it by double click offline.

It is made from the rendered site, not from the templates, so it keeps working when they
change: a layer page's shell holds all pages, and the ``<main>`` of every page becomes one
``div.rg-page`` inside it (:mod:`.pages`, :mod:`.shell`). Links between pages become
in-document anchors and ids that several pages share get the page as a prefix
(:mod:`.anchors`); stylesheets and scripts are inlined, and every file of the site a page uses
(images, manifest.json, icons) becomes a ``data:`` URI, stored once (:mod:`.inline`,
:mod:`.assets`). A small script shows one page at a time, following the address's #fragment
(also the ``#LAYER:INDEX`` channel addresses), and fills in the pictures used more than once
(:mod:`.runtime`). Without JavaScript, CSS ``:target`` does the page switching and every
first-use picture still shows.
"""
from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path

from reportgen.errors import ReportError
from reportgen.files import atomic_write
from reportgen.publish.singlefile.assemble import assemble
from reportgen.sitelayout import INDEX, SINGLE_FILE

__all__ = ["SINGLE_FILE", "WARN_BYTES", "SingleFile", "write_single_file"]

log = logging.getLogger(__name__)

#: Above this, browsers get slow or crash opening one page (an 80 MB report crashes some).
WARN_BYTES = 50 * 1024 * 1024


@dataclass(frozen=True)
class SingleFile:
    """What :func:`write_single_file` wrote."""

    path: Path
    size: int
    pages: int
    assets: int

    @property
    def too_large(self) -> bool:
        """Large enough that browsers get slow or crash opening it (a warning is logged)."""
        return self.size > WARN_BYTES


def write_single_file(site_dir: str | os.PathLike[str], output: str | os.PathLike[str] | None = None
                      ) -> SingleFile:
    """Write the report in ``site_dir`` as one HTML file (default ``<site_dir>/report.html``)."""
    site = Path(site_dir)
    if not (site / INDEX).is_file():
        raise ReportError(f"'{site_dir}' holds no {INDEX}; build the report first.")
    target = Path(output) if output is not None else site / SINGLE_FILE
    document = assemble(site, skip=SINGLE_FILE)
    data = document.text.encode("utf-8")
    atomic_write(target, lambda temporary: temporary.write_bytes(data))
    result = SingleFile(target, len(data), document.pages, document.assets)
    if result.too_large:
        log.warning("%s is %.0f MB; browsers get slow or give up on single pages this large. "
                    "Keep fewer layers with --layers (e.g. --layers 'features.1*'), or publish "
                    "the multi-page site instead.", target.name, result.size / 2**20)
    return result
