"""The channel view says what its colours mean: a colour bar drawn in the report's colormap,
between the values the channel's picture shows at its two ends (the manifest's shown_low and
shown_high), in Chromium."""
from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import matplotlib
import numpy as np
import pytest
from PIL import Image

from conftest import needs_offline_weights
from reportgen import build_report

pytestmark = pytest.mark.browser


def _open_channel(browser: Any, url: str, channel: str) -> tuple[Any, list[str]]:
    """The page at ``url`` with ``channel``'s view open, and the list its errors go to."""
    page = browser.new_page(viewport={"width": 1300, "height": 900})
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.goto(f"{url}#{channel}")
    page.locator(f'[data-channel="{channel}"]').wait_for(state="visible")
    return page, errors


def _check_scale(page: Any, layer: dict[str, Any], k: int, table: np.ndarray) -> None:
    """The scale's numbers are the manifest's (to the 3 digits shown), and its strip runs
    through ``table`` (256 RGB colours, low to high) from left to right."""
    scale = page.locator(".cv-scale")
    for end in ("low", "high"):
        shown = float(scale.locator(f".cv-{end}").inner_text())
        assert shown == pytest.approx(layer["channels"][f"shown_{end}"][k], rel=5e-3, abs=1e-9)
    strip = np.asarray(Image.open(io.BytesIO(scale.locator(".cv-colorbar").screenshot()))
                       .convert("RGB")).astype(int)
    row = strip[strip.shape[0] // 2]
    width = len(row)
    assert width >= 64
    for x in range(width):
        at = min(255, int((x + 0.5) * 256 / width))
        near = table[max(0, at - 1):at + 2].astype(int)  # the edge pixel may round either way
        assert np.abs(near - row[x]).max(axis=1).min() <= 2, (x, row[x], table[at])


def test_the_scale_follows_the_colormap(browser, tmp_path, tiny_net, gradient_image):
    report = build_report(tiny_net, None, gradient_image, tmp_path / "site", size=32,
                          cmap="viridis")
    layer = report.manifest["layers"][0]
    page, errors = _open_channel(browser, (report.site_dir / layer["page"]).as_uri(),
                         f"{layer['name']}:3")
    viridis = matplotlib.colormaps["viridis"](np.linspace(0, 1, 256), bytes=True)[:, :3]
    _check_scale(page, layer, 3, viridis)
    page.keyboard.press("j")  # the next channel has its own numbers
    page.locator(f'[data-channel="{layer["name"]}:4"]').wait_for(state="visible")
    _check_scale(page, layer, 4, viridis)
    assert errors == []
    page.close()


@needs_offline_weights
def test_the_default_report_scale_is_black_to_white(browser, report, manifest):
    layer = next(layer for layer in manifest["layers"] if layer["name"] == "features.18.0")
    page, errors = _open_channel(browser, (Path(report.site_dir) / layer["page"]).as_uri(),
                         "features.18.0:1279")
    grey = np.repeat(np.round(np.linspace(0, 255, 256)).astype(np.uint8)[:, None], 3, axis=1)
    _check_scale(page, layer, 1279, grey)
    assert errors == []
    page.close()
