"""Every src and href in a built site resolves: a file in the site, or an id on the page."""
from __future__ import annotations

import re
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote, urlsplit

import pytest

from reportgen import build_report


class _Links(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.urls: list[str] = []
        self.ids: set[str] = set()
        self.images: list[dict[str, str]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = {key: value or "" for key, value in attrs}
        if "id" in values:
            self.ids.add(values["id"])
        for key in ("href", "src"):
            if key in values:
                self.urls.append(values[key])
        if tag == "img":
            self.images.append(values)


def parse(path: Path) -> _Links:
    parser = _Links()
    parser.feed(path.read_text(encoding="utf-8"))
    return parser


def assert_valid_links(site: Path) -> int:
    pages = {page: parse(page) for page in site.glob("*.html")}
    checked = 0
    for page, links in pages.items():
        for url in links.urls:
            parts = urlsplit(url)
            assert not parts.scheme and not parts.netloc, f"{page.name}: non-relative {url}"
            assert not url.startswith("/"), f"{page.name}: root-relative {url}"
            target = page if not parts.path else (page.parent / unquote(parts.path))
            assert target.resolve().is_relative_to(site.resolve()), url
            assert target.is_file(), f"{page.name}: {url} does not exist"
            if parts.fragment and target.suffix == ".html":
                ids = pages[target].ids if target in pages else parse(target).ids
                assert unquote(parts.fragment) in ids, f"{page.name}: no #{parts.fragment}"
            checked += 1
        for image in links.images:
            assert image.get("alt"), f"{page.name}: img without alt"
            assert image.get("width") and image.get("height"), f"{page.name}: img size"
    return checked


@pytest.fixture(scope="module")
def tiny_site(tmp_path_factory):
    from conftest import TinyNet

    site = tmp_path_factory.mktemp("links") / "site"
    build_report(TinyNet(), None, "chelsea", site, size=32)
    return site


def test_every_href_and_src_resolves(tiny_site):
    assert assert_valid_links(tiny_site) > 20


def test_layer_pages_link_previous_and_next(tiny_site):
    first = (tiny_site / "layer-stem.html").read_text()
    assert 'rel="next" href="layer-body.1.html"' in first and 'rel="prev"' not in first
    last = (tiny_site / "layer-shared_2.html").read_text()
    assert 'rel="prev" href="layer-shared.html"' in last and 'rel="next"' not in last


def test_static_assets_have_cache_busting_names(tiny_site):
    names = sorted(p.name for p in (tiny_site / "static").iterdir())
    assert names and all(re.fullmatch(r"[a-z]+_cb_[0-9a-f]{10}\.(css|js)", n) for n in names)


def test_images_are_lazy_except_the_input(tiny_site):
    page = (tiny_site / "layer-stem.html").read_text()
    assert page.count('loading="lazy"') == 2
