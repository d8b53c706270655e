"""The single-file report: everything inlined, no request leaves the file, pages still work."""
from __future__ import annotations

import base64
import io
import json
import logging
import os
import re
import shutil
from concurrent.futures import ThreadPoolExecutor
from html.parser import HTMLParser

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image, ImageChops

import reportgen
from conftest import TinyNet
from reportgen.cli import cli
from reportgen.errors import ReportError
from reportgen.publish import singlefile
from reportgen.publish.singlefile import write_single_file

CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]


class Elements(HTMLParser):
    """Every start tag with its attributes, in order."""

    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str | None]]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))


def elements(text: str) -> list[tuple[str, dict[str, str | None]]]:
    parser = Elements()
    parser.feed(text)
    return parser.tags


@pytest.fixture(scope="module")
def tiny_report(tmp_path_factory: pytest.TempPathFactory) -> reportgen.Report:
    y, x = np.mgrid[0:48, 0:64]
    image = np.stack([x * 4, y * 5, (x + y) * 2], axis=-1).clip(0, 255).astype(np.uint8)
    site = tmp_path_factory.mktemp("single") / "site"
    return reportgen.build_report(TinyNet(), None, image, site, self_contained=True)


def test_build_writes_report_html_beside_the_site(tiny_report):
    single = tiny_report.single_file
    assert single == tiny_report.site_dir / "report.html" and single.is_file()
    assert (tiny_report.site_dir / "index.html").is_file()  # the site is still there


def test_everything_is_inlined(tiny_report):
    text = tiny_report.single_file.read_text(encoding="utf-8")
    tags = elements(text)
    sources = [attrs["src"] for tag, attrs in tags if tag in ("img", "script") and "src" in attrs]
    assert sources and all(src.startswith("data:") for src in sources)
    assert not [attrs for tag, attrs in tags if tag == "link" and attrs.get("rel") == "stylesheet"]
    assert not re.search(r"""(src|href)="(img|static)/""", text)
    for tag, attrs in tags:
        if "href" in attrs:
            assert attrs["href"].startswith(("#", "data:")), (tag, attrs)
    # every picture of the site is in the file exactly once, as the bytes on disk, and no
    # path to one is left anywhere (attributes, JSON for the script)
    pictures = sorted((tiny_report.site_dir / "img").iterdir())
    for picture in pictures:
        encoded = base64.b64encode(picture.read_bytes()).decode()
        assert text.count(encoded) == 1, picture.name
        assert f"img/{picture.name}" not in text
    # the manifest link downloads the real manifest
    manifest = next(attrs for tag, attrs in tags
                    if tag == "a" and attrs.get("download") == "manifest.json" and
                    (attrs.get("href") or "").startswith("data:"))
    data = base64.b64decode(manifest["href"].split(",", 1)[1])
    assert json.loads(data)["generator"] == "reportgen"


def test_one_page_per_site_page_with_unique_ids_and_resolving_links(tiny_report):
    text = tiny_report.single_file.read_text(encoding="utf-8")
    tags = elements(text)
    ids = [attrs["id"] for _, attrs in tags if attrs.get("id")]
    assert len(ids) == len(set(ids)), "duplicate ids"
    pages = [attrs["id"] for tag, attrs in tags if "rg-page" in (attrs.get("class") or "").split()]
    expected = ["rg-page-index"] + [f"rg-page-{layer.page[:-5]}" for layer in tiny_report.layers]
    assert pages == expected
    for _tag, attrs in tags:
        href = attrs.get("href") or ""
        if href.startswith("#") and len(href) > 1:
            fragment = href[1:]
            assert fragment in ids or re.fullmatch(r".+:\d+", fragment), href


def test_runtime_files_stay_out_of_the_multi_page_site(tiny_report):
    """templates/static/singlefile/ is read into report.html, never copied into the site."""
    text = tiny_report.single_file.read_text(encoding="utf-8")
    assert "reportgen single file: fill in pictures used more than once" in text
    assert "reportgen single file: one page at a time" in text
    static = list((tiny_report.site_dir / "static").rglob("*"))
    assert static and not [path for path in static if path.is_dir() or "runtime" in path.name]


def test_same_site_gives_the_same_bytes(tiny_report, tmp_path):
    again = write_single_file(tiny_report.site_dir, tmp_path / "again.html")
    assert again.path.read_bytes() == tiny_report.single_file.read_bytes()
    assert again.pages == len(tiny_report.layers) + 1


def test_generic_rewriting_of_a_hand_made_site(tmp_path):
    """Independent of reportgen's templates: ids shared by pages, fragments, JSON, CSS url()."""
    site = tmp_path / "site"
    (site / "img").mkdir(parents=True)
    (site / "static").mkdir()
    (site / "img" / "a.png").write_bytes(b"\x89PNG fake a")
    (site / "static" / "dot.svg").write_text("<svg xmlns='http://www.w3.org/2000/svg'/>")
    (site / "static" / "s.css").write_text("body{background:url(dot.svg)} .x{filter:url(#f)}")
    (site / "static" / "r.js").write_text("var s = '</script>';")
    (site / "manifest.json").write_text('{"generator": "reportgen", "layers": '
                                        '[{"page": "layer-b.html"}, {"page": "layer-a.html"}]}')
    shell = ('<!doctype html><html><head><title>{title}</title>'
             '<link rel="stylesheet" href="static/s.css"></head><body>'
             '<a href="index.html">home</a><main id="main">{main}</main>'
             '<script src="static/r.js"></script></body></html>')
    (site / "index.html").write_text(shell.format(title="Index", main=(
        '<img src="img/a.png"><a href="layer-a.html#stats">a stats</a>'
        '<a href="layer-b.html">b</a><p id="top">t</p><a href="manifest.json">m</a>')))
    long = "x" * 400  # a data attribute longer than any file name may be
    for name in ("a", "b"):
        (site / f"layer-{name}.html").write_text(shell.format(title=f"Layer {name}", main=(
            f'<article data-layer="{name}"><h2 id="stats">S</h2><a href="#stats">self</a>'
            f'<label for="stats">x</label><img src="img/a.png" alt="again">'
            f'<a href="index.html#top">up</a><a href="layer-{name}.html#{name}:3">ch</a>'
            '<script type="application/json">{"src": "img/a.png", "n": "img/none.png"}</script>'
            f'<div data-info=\'{{"grid": {{"src": "img/a.png"}}, "long": "{long}"}}\' '
            'data-src="img/a.png"></div>'
            '</article>')))
    made = write_single_file(site, tmp_path / "one.html")
    text = made.path.read_text()
    assert made.pages == 3 and made.assets == 5  # png, css, svg (from the css), js, manifest
    # pages in the manifest's order after the index
    assert [m for m in re.findall(r'id="(rg-page-[^"]+)"', text)] == \
        ["rg-page-index", "rg-page-layer-b", "rg-page-layer-a"]
    assert 'id="layer-a--stats"' in text and 'id="layer-b--stats"' in text
    assert 'href="#layer-a--stats">a stats' in text and 'for="layer-b--stats"' in text
    assert 'href="#rg-page-layer-b">b' in text and 'href="#top">up' in text
    assert 'href="#a:3"' in text  # a channel address stays for the page's script
    assert 'href="#rg-page-index">home' in text
    png = "data:image/png;base64," + base64.b64encode(b"\x89PNG fake a").decode()
    assert text.count(png) == 1  # once; the other uses point at it
    assert 'data-rg-src="a' in text and '"src": "rg-asset:a' in text
    assert '"n": "img/none.png"' in text  # not a file of the site: left alone
    assert 'data-info="{&quot;grid&quot;: {&quot;src&quot;: &quot;rg-asset:a' in text
    assert 'data-src="rg-asset:a' in text and text.count('data-rg-tokens=""') == 2
    assert "img/a.png" not in text
    assert "url(#f)" in text and "url(dot.svg)" not in text and "data:image/svg+xml" in text
    assert "<\\/script>" in text and "static/r.js" not in text


def test_no_report_no_file(tmp_path):
    with pytest.raises(ReportError, match="no index.html"):
        write_single_file(tmp_path)


def test_large_file_warns_and_suggests_layers(tiny_report, tmp_path, monkeypatch, caplog):
    monkeypatch.setattr(singlefile, "WARN_BYTES", 1000)
    with caplog.at_level(logging.WARNING, logger="reportgen"):
        made = write_single_file(tiny_report.site_dir, tmp_path / "big.html")
    assert made.too_large
    assert any("--layers" in record.getMessage() and record.levelno == logging.WARNING
               for record in caplog.records)


def test_cli_option_prints_the_size(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(cli, ["build", "-m", "mobilenet_v2", "-w", "none", "-i", "coffee",
                                      "--size", "32", "--layers", "features.0.0",
                                      "--self-contained"])
    assert result.exit_code == 0, result.output
    assert re.search(r"Single file: site/report\.html \(\d+\.\d MB\)", result.output)
    assert (tmp_path / "site" / "report.html").is_file()


# ------------------------------------------------------------------------------ browser
# Playwright's sync API allows one instance per thread, and other test modules may keep theirs
# open for the whole session; ours lives in a thread of its own, so the two never meet.

class BrowserThread:
    """Headless Chromium driven from one worker thread; ``run(fn)`` calls ``fn(browser)`` there."""

    def __init__(self, executable: str) -> None:
        self.pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="chromium")
        self.pool.submit(self._start, executable).result()

    def _start(self, executable: str) -> None:
        from playwright.sync_api import sync_playwright

        self.playwright = sync_playwright().start()
        self.browser = self.playwright.chromium.launch(executable_path=executable,
                                                       args=CHROMIUM_ARGS)

    def run(self, action):  # type: ignore[no-untyped-def]
        return self.pool.submit(action, self.browser).result()

    def close(self) -> None:
        def stop() -> None:
            self.browser.close()
            self.playwright.stop()

        self.pool.submit(stop).result()
        self.pool.shutdown()


@pytest.fixture(scope="module")
def browser():
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        chromium = None
    if chromium is None:
        if os.environ.get("CI"):
            pytest.fail("CI needs chromium and playwright (make browser)")
        pytest.skip("chromium or playwright is not installed")
    driver = BrowserThread(chromium)
    yield driver
    driver.close()


class Visit:
    """A page that records every request and console error."""

    def __init__(self, browser, url: str, javascript: bool = True) -> None:
        self.context = browser.new_context(java_script_enabled=javascript,
                                           viewport={"width": 1200, "height": 800})
        self.page = self.context.new_page()
        self.requests: list[str] = []
        self.errors: list[str] = []
        self.page.on("request", lambda request: self.requests.append(request.url))
        self.page.on("console", lambda message: self.errors.append(message.text)
                     if message.type == "error" else None)
        self.page.on("pageerror", lambda error: self.errors.append(str(error)))
        self.page.goto(url)
        self.page.wait_for_load_state("load")

    def shown_pages(self) -> list[str]:
        return self.page.evaluate("""Array.from(document.querySelectorAll('.rg-page'))
            .filter(p => getComputedStyle(p).display !== 'none').map(p => p.id)""")

    def broken_images(self) -> list[str]:
        """Images of the shown page that do not decode (lazy ones are loaded first)."""
        return self.page.evaluate("""async () => {
            const shown = Array.from(document.querySelectorAll('.rg-page'))
              .filter(p => getComputedStyle(p).display !== 'none');
            const images = shown.flatMap(p => Array.from(p.querySelectorAll('img')))
              .filter(i => i.closest('dialog') === null);
            const bad = [];
            for (const image of images) {
              image.loading = 'eager';
              try { await image.decode(); } catch (e) { bad.push(image.alt || 'image'); continue; }
              if (!image.naturalWidth) bad.push(image.alt || 'image');
            }
            return bad;
        }""")

    def close(self) -> None:
        self.context.close()


@pytest.mark.browser
def test_opens_offline_without_any_request_and_navigates(browser, tiny_report):
    url = tiny_report.single_file.as_uri()
    layer = tiny_report.layers[2]
    page_id = f"rg-page-{layer.page[:-5]}"

    def check(chromium) -> None:
        visit = Visit(chromium, url)
        try:
            assert visit.shown_pages() == ["rg-page-index"]
            assert visit.broken_images() == []
            unresolved = visit.page.evaluate("""Array.from(document.querySelectorAll('*'))
                .flatMap(e => Array.from(e.attributes).map(a => a.value)
                  .concat(e.matches('script[type="application/json"]') ? [e.textContent] : []))
                .filter(v => v.includes('rg-asset:')).length""")
            assert unresolved == 0
            visit.page.click(f'.rg-page:not([hidden]) a[href="#{page_id}"] >> nth=0')
            visit.page.wait_for_function(f"location.hash === '#{page_id}'")
            assert visit.shown_pages() == [page_id]
            assert layer.name in visit.page.title()
            assert visit.broken_images() == []
            # back to the overview, at this layer's row, by the page's own link
            visit.page.click('.rg-page:not([hidden]) a[href^="#"]:text("All layers")')
            visit.page.wait_for_function("!location.hash.startsWith('#rg-page-')")
            # the page switch runs on the queued hashchange event, after the address changed
            visit.page.wait_for_function("!document.getElementById('rg-page-index').hidden")
            assert visit.shown_pages() == ["rg-page-index"]
            # a channel address shows that layer's page
            visit.page.evaluate(f"location.hash = {json.dumps('#' + layer.name + ':1')}")
            visit.page.wait_for_function(
                f"!document.getElementById({json.dumps(page_id)}).hidden")
            assert visit.shown_pages() == [page_id]
            # the report's own script works on the inlined pictures too, whatever it draws:
            # every CSS background it sets is a data: URI, and a channel view opens
            backgrounds = visit.page.evaluate("""Array.from(document.querySelectorAll('*'))
                .map(e => e.style && e.style.backgroundImage).filter(b => b && b !== 'none')""")
            assert all(b.startswith('url("data:') for b in backgrounds), backgrounds[:3]
            if visit.page.locator(f'[id="{page_id}"] dialog').count():
                visit.page.wait_for_function("document.querySelector('dialog[open]') !== null")
            assert all(request.startswith("data:") or request.split("#")[0] == url
                       for request in visit.requests), sorted(set(visit.requests))
            assert visit.errors == []
        finally:
            visit.close()

    browser.run(check)


@pytest.mark.browser
def test_looks_like_the_site(browser, tiny_report):
    probe = """() => ({
        background: getComputedStyle(document.body).backgroundColor,
        font: getComputedStyle(document.body).fontFamily,
        main: Math.round(document.querySelector('main').getBoundingClientRect().width),
        input: Array.from(document.querySelectorAll('main img')).slice(0, 1)
          .map(i => [Math.round(i.getBoundingClientRect().width), i.naturalWidth]),
        tables: Array.from(document.querySelectorAll('main table'))
          .filter(t => t.offsetParent !== null).length,
        headings: Array.from(document.querySelectorAll('main h1, main h2'))
          .filter(h => h.offsetParent !== null).map(h => h.textContent.trim()),
    })"""

    layer = tiny_report.layers[1]

    def differing_pixels(one: bytes, two: bytes) -> float:
        first = Image.open(io.BytesIO(one)).convert("RGB")
        second = Image.open(io.BytesIO(two)).convert("RGB")
        assert first.size == second.size
        changed = np.asarray(ImageChops.difference(first, second).convert("L")) > 16
        return float(changed.mean())

    def check(chromium) -> None:
        site = Visit(chromium, (tiny_report.site_dir / "index.html").as_uri())
        single = Visit(chromium, tiny_report.single_file.as_uri())
        try:
            single.page.wait_for_function("document.documentElement.classList.contains('rg-js')")
            assert single.page.evaluate(probe) == site.page.evaluate(probe)
            site.page.wait_for_timeout(300)
            assert differing_pixels(site.page.screenshot(), single.page.screenshot()) < 0.005
            # a layer page, reached by its address in each
            site.page.goto((tiny_report.site_dir / layer.page).as_uri())
            single.page.goto(f"{tiny_report.single_file.as_uri()}#rg-page-{layer.page[:-5]}")
            for visit in (site, single):
                visit.page.wait_for_load_state("load")
                visit.page.wait_for_timeout(300)
            assert differing_pixels(site.page.screenshot(), single.page.screenshot()) < 0.005
        finally:
            site.close()
            single.close()

    browser.run(check)


@pytest.mark.browser
def test_without_javascript_pages_switch_by_css(browser, tiny_report):
    url = tiny_report.single_file.as_uri()
    layer = tiny_report.layers[0]

    def check(chromium) -> None:
        visit = Visit(chromium, url, javascript=False)
        try:
            assert visit.shown_pages() == ["rg-page-index"]
            visit.page.goto(f"{url}#rg-page-{layer.page[:-5]}")
            assert visit.shown_pages() == [f"rg-page-{layer.page[:-5]}"]
            assert visit.broken_images() == []
            assert all(request.startswith("data:") or request.split("#")[0] == url
                       for request in visit.requests)
        finally:
            visit.close()

    browser.run(check)


# ------------------------------------------------- a dataset, feature visualisation, two images
DATASET_LAYERS = ("conv1", "layer1.0.conv1")

#: Every picture the shown page uses (img sources and inline CSS backgrounds): how many, and
#: those that do not decode or (with ``pixels``) are one flat colour. file:// pictures of the
#: multi-page site cannot be read back from a canvas, so there only the count is taken.
PICTURES = """async ([root, pixels]) => {
  const scope = document.querySelector(root);
  const urls = new Set();
  for (const element of scope.querySelectorAll('*')) {
    const match = /^url\\("(.*)"\\)$/.exec(element.style.backgroundImage || '');
    if (match) urls.add(new URL(match[1], document.baseURI).href);
    if (element.tagName === 'IMG') urls.add(element.src);
  }
  const bad = [];
  for (const url of urls) {
    const image = new Image();
    image.src = url;
    try { await image.decode(); } catch (error) { bad.push(url.slice(0, 60)); continue; }
    if (!image.naturalWidth) { bad.push(url.slice(0, 60)); continue; }
    if (!pixels) continue;
    const canvas = document.createElement('canvas');
    canvas.width = image.naturalWidth;
    canvas.height = image.naturalHeight;
    const context = canvas.getContext('2d');
    context.drawImage(image, 0, 0);
    const data = context.getImageData(0, 0, canvas.width, canvas.height).data;
    let low = 255, high = 0;
    for (let i = 0; i < data.length; i += 4) {
      for (let c = 0; c < 3; c++) {
        low = Math.min(low, data[i + c]);
        high = Math.max(high, data[i + c]);
      }
    }
    if (high === low) bad.push('flat ' + url.slice(0, 60));
  }
  // a data: URI by its length and end: enough to tell the report's pictures apart
  return [Array.from(urls).map(url => url.startsWith('data:') ? url.length + url.slice(-32) : url),
          bad];
}"""


@pytest.fixture(scope="module")
def dataset_report(tmp_path_factory: pytest.TempPathFactory) -> reportgen.Report:
    from dataset_helpers import make_dataset, random_resnet18

    folder = tmp_path_factory.mktemp("single-dataset")
    data = make_dataset(folder / "data", faces=3)
    return reportgen.build_report(random_resnet18(num_classes=10), None, ["coffee", "astronaut"],
                                  folder / "site", size=48, layers=list(DATASET_LAYERS),
                                  dataset=data, top_k=3, workers=0, self_contained=True,
                                  feature_vis="layer1.0.conv1:0-1", feature_vis_steps=2,
                                  feature_vis_size=24)


def _shown_pictures(page, root: str, pixels: bool,
                    tiles: int = 3) -> tuple[list[object], list[str]]:
    """Open channel 0's view, then each tile mode, and take the pictures each shows: (every
    picture used, those that are missing or blank, element shots included)."""
    used: list[object] = []
    bad: list[str] = []

    def take(selector: str, count: int) -> None:
        found, broken = page.evaluate(PICTURES, [root, pixels])
        used.extend(item for item in found if item not in used)
        bad.extend(broken)
        if not pixels:
            return
        boxes = page.locator(f"{root} {selector}")
        for number in range(min(count, boxes.count())):
            shot = np.asarray(Image.open(io.BytesIO(boxes.nth(number).screenshot())).convert("L"))
            if shot[2:-2, 2:-2].std() == 0:
                bad.append(f"blank {selector} #{number}")

    page.locator(f"{root} dialog[open]").wait_for()
    take("dialog[open] [style*='background-image']", 20)
    page.keyboard.press("Escape")
    for mode, count in (("examples", tiles), ("featurevis", 2)):  # channels 0-1 have one
        radio = page.locator(f"{root} input[type=radio][value={mode}]")
        if radio.count():
            radio.check()
            take(".tiles .tile .px", count)
    return used, bad


@pytest.mark.browser
def test_single_file_with_a_dataset_shows_every_picture_the_site_shows(browser, dataset_report):
    """Dataset crops, sprite sheets, feature visualisations, tile modes and a second image:
    pictures only the page's script draws had ``rg-asset:`` addresses nothing filled in."""
    url = dataset_report.single_file.as_uri()

    def check(chromium) -> None:
        for layer in dataset_report.layers:
            site = Visit(chromium, (dataset_report.site_dir / layer.page).as_uri() +
                         f"#{layer.name}:0")
            single = Visit(chromium, f"{url}#{layer.name}:0")
            try:
                wanted, _ = _shown_pictures(site.page, "main", pixels=False)
                single.page.wait_for_function(
                    f"!document.getElementById('rg-page-{layer.page[:-5]}').hidden")
                used, bad = _shown_pictures(single.page, ".rg-page:not([hidden])", pixels=True)
                assert bad == [], (layer.name, bad)
                assert len(used) == len(wanted), (layer.name, wanted)
                assert single.errors == [] and all(
                    request.startswith("data:") or request.split("#")[0] == url
                    for request in single.requests)
            finally:
                site.close()
                single.close()

    assert dataset_report.layers[1].feature_vis is not None
    browser.run(check)
