"""Pages with layers that are not convolutions, and a non-square tensor input, in Chromium:
no console error, the channel view opens (without a filter), axe-core and the Nu validator
find nothing. Opened from file://, as a reader double-clicking index.html would."""
from __future__ import annotations

from typing import Any

import pytest
import torch

from conftest import TinyNet
from reportgen import build_report
from test_accessibility import _axe, _vnu, checkers  # noqa: F401 - checkers is a fixture

pytestmark = pytest.mark.browser


@pytest.fixture(scope="module")
def blocks_report(tmp_path_factory: pytest.TempPathFactory) -> Any:
    site = tmp_path_factory.mktemp("blocks") / "site"
    return build_report("resnet18", "none", "coffee", site, size=64, layers="conv1,layer4.?")


def _errors(page: Any) -> list[str]:
    problems: list[str] = []
    page.on("console", lambda m: m.type == "error" and problems.append(m.text))
    page.on("pageerror", lambda e: problems.append(str(e)))
    return problems


def test_a_block_page_and_its_channel_view(browser, blocks_report, checkers):  # noqa: F811
    axe, vnu = checkers
    block = next(layer for layer in blocks_report.layers if not layer.is_conv)
    site = blocks_report.site_dir
    context = browser.new_context(viewport={"width": 1440, "height": 900})
    page = context.new_page()
    try:
        found = {}
        for name in ("index.html", block.page):
            page.goto((site / name).as_uri())
            page.wait_for_load_state("load")
            found[name] = _axe(page, axe)
        page = context.new_page()  # axe itself fetches the stylesheets, which file:// refuses
        problems = _errors(page)
        page.goto(f"{(site / block.page).as_uri()}#{block.name}:7")
        view = page.locator(f'[data-channel="{block.name}:7"]')
        view.wait_for(state="visible")
        assert view.locator(".cv-filter").is_hidden()  # no filters for a block
        assert view.locator(".cv-pixels").bounding_box()["width"] >= 24
        assert problems == []
        found["channel view"] = _axe(page, axe)
    finally:
        context.close()
    assert {name: issues for name, issues in found.items() if issues} == {}
    assert _vnu(vnu, [site / "index.html", site / block.page]) == []


def test_a_non_square_tensor_input(browser, tmp_path):
    torch.manual_seed(0)
    report = build_report(TinyNet(), None, torch.randn(1, 3, 20, 28), tmp_path / "s",
                          preprocess=False)
    layer = report.layers[0]
    context = browser.new_context(viewport={"width": 1440, "height": 900})
    page = context.new_page()
    problems = _errors(page)
    try:
        page.goto(f"{(report.site_dir / layer.page).as_uri()}#{layer.name}:2")
        view = page.locator(f'[data-channel="{layer.name}:2"]')
        view.wait_for(state="visible")
        stage = view.locator(".cv-stage img")
        assert stage.evaluate("i => [i.naturalWidth, i.naturalHeight]") == [28, 20]
        assert view.locator(".cv-heat").bounding_box()["width"] >= 24
    finally:
        context.close()
    assert problems == []
