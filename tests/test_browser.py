"""The default report in a real browser: headless Chromium (Debian's) driven by Playwright.

One session builds the default report (mobilenet_v2, offline weights, coffee) into a folder
served from 127.0.0.1 under a sub-path, as GitHub Pages serves a project site, and the same
files are opened from ``file://``. The tests look at what a reader gets: console and network
errors, images that really decode, links and anchors that resolve, the channel view, sorting,
keyboard use, and screenshots (written to ``test-artifacts/``).

Chromium missing fails the run in CI (``make browser`` installs it) and skips it elsewhere.
"""
from __future__ import annotations

import io
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

import numpy as np
import pytest
from PIL import Image

from conftest import SUBPATH, needs_offline_weights, shortcut_help

pytestmark = [pytest.mark.browser, needs_offline_weights]

ROOT = Path(__file__).resolve().parents[1]
ARTIFACTS = ROOT / "test-artifacts"
LAYER = "features.0.0"  # 32 channels of 112x112: tiles shown 1:1, so pixels can be compared
SMALL_LAYER = "features.18.0"  # 1280 channels of 7x7, the largest page


@pytest.fixture(params=["http", "file"])
def base_url(request: pytest.FixtureRequest, report: Any) -> str:
    if request.param == "http":
        return request.getfixturevalue("server")
    return report.site_dir.as_uri() + "/"


@pytest.fixture
def context(browser: Any, request: pytest.FixtureRequest) -> Iterator[Any]:
    """At device scale factor 1, or the one given by indirect parametrization."""
    ctx = browser.new_context(viewport={"width": 1440, "height": 900},
                              device_scale_factor=getattr(request, "param", 1))
    yield ctx
    ctx.close()


class Watch:
    """Everything a page did wrong: console errors, page errors, failed or foreign requests."""

    def __init__(self, page: Any, base: str) -> None:
        self.problems: list[str] = []
        origin = (base if base.startswith("file:")
                  else base.split(f"/{SUBPATH}/")[0] + f"/{SUBPATH}/")
        page.on("console", lambda m: m.type == "error" and self.problems.append(
            f"console error: {m.text}"))
        page.on("pageerror", lambda e: self.problems.append(f"page error: {e}"))
        page.on("requestfailed", lambda r: self.problems.append(
            f"request failed: {r.url} ({r.failure})"))
        page.on("response", lambda r: r.status >= 400 and self.problems.append(
            f"HTTP {r.status}: {r.url}"))
        page.on("request", lambda r: r.url.startswith((origin, "data:")) or self.problems.append(
            f"request outside the report: {r.url}"))


def layer_page(manifest: dict[str, Any], name: str) -> dict[str, Any]:
    return next(layer for layer in manifest["layers"] if layer["name"] == name)


def _load_all_images(page: Any) -> list[str]:
    """Make lazy images load, wait for them, return the src of any that did not decode."""
    page.evaluate("() => document.querySelectorAll('img').forEach(i => { i.loading = 'eager'; })")
    for index in range(page.locator("img").count()):
        image = page.locator("img").nth(index)
        if image.is_visible():
            image.scroll_into_view_if_needed()
    page.wait_for_function("() => [...document.images].every(i => i.complete)", timeout=20_000)
    return page.evaluate("""() => [...document.images]
        .filter(i => !(i.complete && i.naturalWidth > 0)).map(i => i.getAttribute('src'))""")


_COLLECT = """() => ({
  urls: [...document.querySelectorAll('[href], [src]')]
          .map(e => e.getAttribute('href') ?? e.getAttribute('src')),
  ids: [...document.querySelectorAll('[id]')].map(e => e.id),
  layers: [...document.querySelectorAll('article.layer[data-layer]')].map(a => [
            a.dataset.layer, JSON.parse(a.dataset.channels).channels]),
  imagesWithoutAlt: [...document.images].filter(i => !i.getAttribute('alt')).length,
  unnamedButtons: [...document.querySelectorAll('button')].filter(
            b => !(b.getAttribute('aria-label') || b.textContent.trim())).length,
})"""


def test_default_report_loads_cleanly_and_every_link_resolves(browser, report, manifest,
                                                              base_url):
    """Served under a sub-path and from file://: every page, every image, every href."""
    context = browser.new_context(viewport={"width": 1280, "height": 800})
    page = context.new_page()
    watch = Watch(page, base_url)
    names = ["index.html", *(layer["page"] for layer in manifest["layers"])]
    found: dict[str, dict[str, Any]] = {}
    try:
        for name in names:
            page.goto(base_url + name, wait_until="load")
            broken = _load_all_images(page)
            assert not broken, f"{name}: images that did not load: {broken}"
            found[name] = page.evaluate(_COLLECT)
            assert found[name]["imagesWithoutAlt"] == 0, f"{name}: img without alt"
            assert found[name]["unnamedButtons"] == 0, f"{name}: button without a name"
    finally:
        context.close()
    assert watch.problems == [], "\n".join(watch.problems)
    assert len(found) == len(manifest["layers"]) + 1 == 53

    site = report.site_dir
    checked = 0
    for name, info in found.items():
        for url in info["urls"]:
            parts = urlsplit(url)
            assert not parts.scheme and not parts.netloc, f"{name}: absolute URL {url}"
            assert not url.startswith("/"), f"{name}: root-relative URL {url}"
            target = name if not parts.path else unquote(parts.path)
            assert (site / target).resolve().is_relative_to(site.resolve()), url
            assert (site / target).is_file(), f"{name}: {url} does not exist"
            if parts.fragment and target.endswith(".html"):
                fragment = unquote(parts.fragment)
                channel = re.fullmatch(r"(.+):(\d+)", fragment)
                routes = dict(found[target]["layers"])
                assert fragment in found[target]["ids"] or (
                    channel and int(channel[2]) < routes.get(channel[1], 0)), \
                    f"{name}: {url} points at nothing"
            checked += 1
    assert checked > 53 * 10


# Every tile's map box, in CSS px relative to the document; whole numbers are whole device
# pixels at device scale factors 1 and 2, so the browser draws the grid PNG without resampling.
_TILE_BOXES = """() => [...document.querySelectorAll('.tile .px')].map(e => {
  const r = e.getBoundingClientRect();
  return [r.x + scrollX, r.y + scrollY, r.width, r.height, +e.closest('.tile').dataset.index];
})"""


def _fractional_tile_boxes(page: Any) -> list[list[float]]:
    boxes = page.evaluate(_TILE_BOXES)
    assert boxes
    return [box for box in boxes if any(v != int(v) for v in box[:4])]


@pytest.mark.parametrize("context", [1, 2], ids=["dpr1", "dpr2"], indirect=True)
def test_tiles_are_crops_of_the_grid_and_hover_names_the_channel(context, server, report,
                                                                manifest):
    """Whatever fonts are installed: the text above the tiles and their labels have
    font-dependent heights, and the tiles must still sit on whole pixels."""
    entry = layer_page(manifest, LAYER)
    grid = entry["grid"]
    page = context.new_page()
    dpr = page.evaluate("devicePixelRatio")
    watch = Watch(page, server)
    page.goto(server + entry["page"])
    assert _fractional_tile_boxes(page) == []
    k = grid["cols"] + 2  # row 1, column 2 of the grid picture
    tile = page.locator(".tile").nth(k)
    assert tile.get_attribute("data-index") == str(k)
    box = tile.locator(".px").bounding_box()
    assert box["width"] == grid["tile_width"] and box["height"] == grid["tile_height"]

    # What the tile shows is exactly that channel's part of the grid PNG (shown 1:1 here),
    # pixel for pixel; at 2x each map pixel is a 2x2 block of device pixels. Before
    # hovering: the tip's shadow may fall on the tile.
    shot = np.asarray(Image.open(io.BytesIO(tile.locator(".px").screenshot())).convert("RGB"))
    png = Image.open(report.site_dir / entry["activation"]).convert("RGB")
    x = (k % grid["cols"]) * (grid["tile_width"] + grid["gap"])
    y = (k // grid["cols"]) * (grid["tile_height"] + grid["gap"])
    expected = np.asarray(png.crop((x, y, x + grid["tile_width"], y + grid["tile_height"])))
    expected = expected.repeat(dpr, axis=0).repeat(dpr, axis=1)
    assert shot.shape == expected.shape
    assert np.array_equal(shot, expected), \
        f"{np.count_nonzero((shot != expected).any(axis=2))} pixels differ"

    page.mouse.move(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
    tip = page.locator(".tip")
    tip.wait_for(state="visible")
    text = tip.inner_text()
    assert f"{LAYER}:{k}" in text
    mean = entry["channels"]["channel_mean"][k]
    assert f"mean {float(f'{mean:.3g}'):g}" in text.replace("e-0", "e-")
    assert f"{100 * entry['channels']['channel_fraction_positive'][k]:.1f}% > 0" in text

    # Still on whole pixels after sorting, and zoomed to a size that is not a whole multiple
    # of the map, with 4-digit numbers wider than the maps under them.
    page.get_by_role("radio", name="Max").check()
    assert _fractional_tile_boxes(page) == []
    page.goto(server + layer_page(manifest, SMALL_LAYER)["page"])
    assert _fractional_tile_boxes(page) == []
    page.locator(".zoom input").fill("16")
    assert _fractional_tile_boxes(page) == []
    assert watch.problems == []


@pytest.mark.parametrize("name, index", [(LAYER, 5), (SMALL_LAYER, 1279)])
def test_deep_link_opens_the_channel_view(context, base_url, manifest, name, index):
    entry = layer_page(manifest, name)
    page = context.new_page()
    watch = Watch(page, base_url)
    page.goto(f"{base_url}{entry['page']}#{name}:{index}")
    view = page.locator(f'[data-channel="{name}:{index}"]')
    view.wait_for(state="visible")
    assert view.evaluate("e => e.tagName") == "DIALOG"
    assert view.locator(".cv-id").inner_text() == f"{name}:{index}"
    assert view.locator(".cv-rank-mean").inner_text() == \
        f"{entry['ranking']['mean'].index(index) + 1} of {len(entry['ranking']['mean'])}"
    # the enlarged map, the heat map over the input and the filter all show something
    for part in (".cv-pixels", ".cv-heat", ".cv-filter-pixels"):
        size = view.locator(part).bounding_box()
        assert size["width"] >= 24 and size["height"] >= 24, part
        assert view.locator(part).get_attribute("aria-label")
    assert view.locator(".cv-stage img").evaluate("i => i.naturalWidth") == 224
    assert watch.problems == []


def test_index_deep_link_goes_to_the_layer_page(context, server, manifest):
    entry = layer_page(manifest, SMALL_LAYER)
    page = context.new_page()
    page.goto(f"{server}index.html#{SMALL_LAYER}:7")
    page.locator(f'[data-channel="{SMALL_LAYER}:7"]').wait_for(state="visible")
    assert page.url.endswith(f"{entry['page']}#{SMALL_LAYER}:7")


@pytest.mark.parametrize("key", ["mean", "max"])
def test_sorting_puts_the_most_active_channel_first(context, server, manifest, key):
    entry = layer_page(manifest, SMALL_LAYER)
    values = entry["channels"][f"channel_{key}"]
    page = context.new_page()
    page.goto(server + entry["page"])
    page.get_by_role("radio", name=key.capitalize()).check()
    order = page.locator(".tiles .tile").evaluate_all("ts => ts.map(t => +t.dataset.index)")
    assert order[0] == max(range(len(values)), key=lambda k: (values[k], -k))
    assert order == entry["ranking"][key]
    assert all(values[a] >= values[b] for a, b in zip(order, order[1:], strict=False))
    page.get_by_role("radio", name="Index").check()
    order = page.locator(".tiles .tile").evaluate_all("ts => ts.map(t => +t.dataset.index)")
    assert order == list(range(len(values)))


def test_escape_closes_the_channel_view(context, server, manifest):
    entry = layer_page(manifest, LAYER)
    page = context.new_page()
    page.goto(server + entry["page"])
    page.locator(".tile").nth(3).click()
    view = page.locator(f'[data-channel="{LAYER}:3"]')
    view.wait_for(state="visible")
    assert page.url.endswith(f"#{LAYER}:3")
    page.keyboard.press("ArrowRight")  # next channel
    page.locator(f'[data-channel="{LAYER}:4"]').wait_for(state="visible")
    page.keyboard.press("Escape")
    page.locator("dialog.channel-view").wait_for(state="hidden")
    # the dialog's "close" event (which clears the id and the address) is a queued task
    page.wait_for_function("!document.querySelector('[data-channel]') && !location.hash")
    assert page.locator("[data-channel]").count() == 0
    assert "#" not in page.url
    assert page.evaluate("document.activeElement.dataset.index") == "4"


def test_keyboard_alone_reaches_and_opens_a_channel(context, server, manifest):
    entry = layer_page(manifest, LAYER)
    page = context.new_page()
    page.goto(server + entry["page"])
    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.className") == "skip"
    page.keyboard.press("Enter")  # skip the navigation
    for _ in range(30):
        page.keyboard.press("Tab")
        if page.evaluate("document.activeElement.classList.contains('tile')"):
            break
    else:
        pytest.fail("Tab never reached a channel tile")
    assert page.evaluate("getComputedStyle(document.activeElement).outlineStyle") != "none"
    page.keyboard.press("ArrowRight")
    page.keyboard.press("ArrowDown")  # one row down in the tiles as laid out
    focused = int(page.evaluate("document.activeElement.dataset.index"))
    assert focused > 1
    page.keyboard.press("Enter")
    page.locator(f'[data-channel="{LAYER}:{focused}"]').wait_for(state="visible")
    page.keyboard.press("Escape")
    page.keyboard.press("n")  # next layer
    page.wait_for_url(f"**/{manifest['layers'][1]['page']}")


def test_layer_filter_and_structure(context, server, manifest):
    page = context.new_page()
    page.goto(server + manifest["layers"][0]["page"])
    groups = page.locator(".toc-group-name").all_inner_texts()
    assert groups[:3] == ["features", "features.1", "features.2"]
    page.keyboard.press("/")
    assert page.evaluate("document.activeElement.id") == "toc-filter"
    page.keyboard.type("18.0")
    visible = page.locator(".toc a[data-layer]:visible").evaluate_all(
        "links => links.map(a => a.dataset.layer)")
    assert visible == [SMALL_LAYER]
    page.keyboard.press("Enter")
    page.wait_for_url(f"**/{layer_page(manifest, SMALL_LAYER)['page']}")
    current = page.locator('.toc a[aria-current="page"]')
    assert current.get_attribute("data-layer") == SMALL_LAYER
    # input and top-5 predictions stay at hand on every layer page
    assert page.locator(".context img").is_visible()
    assert page.locator(".top5 li").count() == 5
    assert "espresso" in page.locator(".top5 li").first.inner_text()


def test_shortcut_help_lists_what_the_keys_do_on_the_page(context, server, manifest):
    """One table drives the keys and the "?" list: the overview, with no channels, lists no
    channel keys; a layer page lists its own sort orders, which "s" goes through."""
    page = context.new_page()
    page.goto(server + "index.html")
    page.keyboard.press("?")
    assert page.locator("details.keys").evaluate("d => d.open")
    overview = shortcut_help(page)
    assert "n p" in overview and not {"j k", "s", "Esc"} & overview.keys()
    page.keyboard.press("n")
    page.wait_for_url(f"**/{manifest['layers'][0]['page']}")
    help = shortcut_help(page)
    assert {"j k", "→ ←", "n p", "s", "/", "Esc", "?"} <= help.keys()
    sorts = page.locator('.sort input[type="radio"]').evaluate_all("rs => rs.map(r => r.value)")
    assert help["s"] == "sort channels: " + ", ".join(sorts)
    for key in sorts[1:] + sorts[:1]:
        page.keyboard.press("s")
        assert page.locator('.sort input[type="radio"]:checked').get_attribute("value") == key


def test_overview_table_fits_a_1400_px_window(browser, server):
    """Its last columns needed horizontal scrolling at 1,400 px: headers wrap between words
    and layer names after a dot before that, which leaves room for other fonts."""
    context = browser.new_context(viewport={"width": 1400, "height": 900})
    page = context.new_page()
    page.goto(server + "index.html")
    width, room = page.locator("#layers .table-wrap").evaluate(
        "w => [w.scrollWidth, w.clientWidth]")
    context.close()
    assert width <= room


def _luminance(rgb: tuple[float, float, float]) -> float:
    def channel(value: float) -> float:
        value /= 255
        return value / 12.92 if value <= 0.03928 else ((value + 0.055) / 1.055) ** 2.4
    r, g, b = (channel(v) for v in rgb)
    return 0.2126 * r + 0.7152 * g + 0.0722 * b


def _contrast(fg: str, bg: str) -> float:
    a, b = (_luminance(tuple(float(v) for v in re.findall(r"[\d.]+", c)[:3])) for c in (fg, bg))
    return (max(a, b) + 0.05) / (min(a, b) + 0.05)


@pytest.mark.parametrize("scheme", ["light", "dark"])
def test_text_contrast(browser, server, manifest, scheme):
    context = browser.new_context(color_scheme=scheme)
    page = context.new_page()
    page.goto(server + layer_page(manifest, LAYER)["page"])
    pairs = page.evaluate("""() => {
      const bg = e => { for (; e; e = e.parentElement) {
                            const c = getComputedStyle(e).backgroundColor;
                            if (c !== 'rgba(0, 0, 0, 0)') return c; }
                          return 'rgb(255, 255, 255)'; };
      return ['body', '.caption', '.spec', '.pager a', '.toc-shape',
              '.toc a[aria-current] .toc-name', '.tile .n', '.sort label:has(input:checked)',
              'figcaption', '.footer']
        .map(s => document.querySelector(s)).filter(Boolean)
        .map(e => [e.className || e.tagName, getComputedStyle(e).color, bg(e)]);
    }""")
    context.close()
    assert len(pairs) >= 9
    for name, fg, bg in pairs:
        assert _contrast(fg, bg) >= 4.5, f"{scheme}: {name} {fg} on {bg}"


SHOT_LAYER = "features.10.conv.1.0"  # 14x14 maps: the heat map over the input reads well
SHOTS = [("index", "light", (1280, 800), False), ("channel", "light", (1280, 800), True),
         ("index-dark", "dark", (1280, 800), False), ("channel-dark", "dark", (1280, 800), True),
         ("phone-layer", "light", (390, 844), False), ("phone-channel", "dark", (390, 844), True),
         ("4k-layer", "light", (3840, 2160), False)]


@pytest.mark.parametrize("name, scheme, viewport, channel", SHOTS, ids=[s[0] for s in SHOTS])
def test_screenshots(browser, server, manifest, name, scheme, viewport, channel):
    """Written to test-artifacts/ for a person to look at; no page may scroll sideways."""
    width, height = viewport
    context = browser.new_context(viewport={"width": width, "height": height},
                                  color_scheme=scheme)
    page = context.new_page()
    watch = Watch(page, server)
    entry = layer_page(manifest, SHOT_LAYER)
    url = server + ("index.html" if name.startswith("index") else entry["page"])
    channel_id = f"{SHOT_LAYER}:{entry['ranking']['max'][0]}"
    if channel:
        url += f"#{channel_id}"
    page.goto(url)
    _load_all_images(page)
    page.evaluate("window.scrollTo(0, 0); "
                  "document.querySelectorAll('dialog').forEach(d => d.scrollTop = 0)")
    if channel:
        page.locator(f'[data-channel="{channel_id}"]').wait_for(state="visible")
    assert page.evaluate("document.documentElement.scrollWidth") <= width
    ARTIFACTS.mkdir(exist_ok=True)
    path = ARTIFACTS / f"screenshot-{name}.png"
    page.screenshot(path=str(path))
    context.close()
    assert Image.open(path).size == (width, height)
    assert watch.problems == []


def test_several_layers_in_one_document(context, report, manifest):
    """What a single-file report does: articles side by side, each found by data-layer."""
    first, second = layer_page(manifest, LAYER), layer_page(manifest, SMALL_LAYER)
    page_a = (report.site_dir / first["page"]).read_text(encoding="utf-8")
    page_b = (report.site_dir / second["page"]).read_text(encoding="utf-8")
    article_b = page_b[page_b.index('<article class="layer"'):page_b.index("</article>") + 10]
    combined = report.site_dir / "zz-combined-test.html"
    combined.write_text(page_a.replace("</article>", "</article>\n" + article_b, 1),
                        encoding="utf-8")
    try:
        page = context.new_page()
        watch = Watch(page, report.site_dir.as_uri() + "/")
        page.goto(f"{combined.as_uri()}#{SMALL_LAYER}:9")
        page.locator(f'[data-channel="{SMALL_LAYER}:9"]').wait_for(state="visible")
        assert page.locator("article.layer").count() == 2
        tiles = first["grid"]["channels"] + second["grid"]["channels"]
        assert page.locator(".tile").count() == tiles
        page.keyboard.press("j")
        page.locator(f'[data-channel="{SMALL_LAYER}:10"]').wait_for(state="visible")
        page.keyboard.press("Escape")
        page.locator(".tile").nth(2).click()
        page.locator(f'[data-channel="{LAYER}:2"]').wait_for(state="visible")
        assert watch.problems == []
    finally:
        combined.unlink()
