"""Several images side by side: one report, one shared range per channel, a row per channel."""
from __future__ import annotations

import json

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from conftest import IdentityNet
from reportgen import ReportError, build_report
from reportgen.cli import cli


def tile(site, layer: dict, activation: str, channel: int) -> np.ndarray:
    grid = np.asarray(Image.open(site / activation)).astype(int)
    spec = layer["grid"]
    row, col = divmod(channel, spec["cols"])
    x, y = col * (spec["tile_width"] + spec["gap"]), row * (spec["tile_height"] + spec["gap"])
    return grid[y:y + spec["tile_height"], x:x + spec["tile_width"]]


def test_images_share_one_range_per_channel(tmp_path, gradient_image):
    dim = (gradient_image * 0.5).astype(np.uint8)
    report = build_report(IdentityNet(), None, [gradient_image, dim, gradient_image],
                          tmp_path / "s", size=32)
    manifest = report.manifest
    assert len(manifest["inputs"]) == 3
    assert [view["input"] for view in manifest["inputs"]] == [
        "img/input.png", "img/input-2.png", "img/input-3.png"]
    layer = manifest["layers"][0]
    pictures = [view["activation"] for view in layer["images"]]
    assert pictures[0] == layer["activation"] and len(set(pictures)) == 3
    for channel in range(3):
        bright, darker, again = (tile(report.site_dir, layer, png, channel) for png in pictures)
        assert np.array_equal(bright, again)  # the same image gives the same picture
        assert darker.mean() < bright.mean() - 20  # on a shared range, darker stays darker
    # the numbers are each image's own
    means = [view["channel_mean"][0] for view in layer["images"]]
    assert means[1] < means[0] == pytest.approx(means[2])


def test_cli_takes_repeated_images_and_records_them(tmp_path):
    result = CliRunner().invoke(cli, ["build", "-m", "mobilenet_v2", "-w", "none", "-i", "coffee",
                                      "-i", "chelsea", "--size", "32", "--layers",
                                      "features.0.0", "-d", str(tmp_path / "s")])
    assert result.exit_code == 0, result.output
    manifest = json.loads((tmp_path / "s" / "manifest.json").read_text())
    assert [view["image"]["source"] for view in manifest["inputs"]] == ["coffee", "chelsea"]
    assert "--image coffee --image chelsea" in manifest["command"]
    index = (tmp_path / "s" / "index.html").read_text(encoding="utf-8")
    assert "2 images, side by side" in index and 'src="img/input-2.png"' in index


def test_more_than_sixteen_images_is_one_clear_error(tmp_path, gradient_image):
    with pytest.raises(ReportError, match="at most 16"):
        build_report(IdentityNet(), None, [gradient_image] * 17, tmp_path / "s", size=16)
    assert not (tmp_path / "s").exists()


@pytest.mark.browser
def test_channel_view_shows_every_image_side_by_side(browser, tmp_path):
    site = tmp_path / "site"
    build_report("mobilenet_v2", "none", ["coffee", "chelsea", "astronaut"], site, size=64,
                 layers="features.1.conv.0.0")
    page = browser.new_page(viewport={"width": 1300, "height": 900})
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.goto((site / "layer-features.1.conv.0.0.html").as_uri() + "#features.1.conv.0.0:3")
    page.locator('[data-channel="features.1.conv.0.0:3"]').wait_for(state="visible")
    row = page.locator(".cv-image-row li")
    assert row.count() == 3
    labels = row.evaluate_all("items => items.map(i => i.textContent)")
    assert [label.split(" ·")[0] for label in labels] == ["1. coffee", "2. chelsea",
                                                         "3. astronaut"]
    sources = row.locator(".cv-image-px").evaluate_all(
        "els => els.map(e => e.style.backgroundImage)")
    assert len(set(sources)) == 3 and all("act" in s for s in sources)
    # switching the image swaps the tiles' grid and keeps the channel view on the same channel
    page.keyboard.press("Escape")
    page.get_by_label("2. chelsea").check()
    grid = page.locator(".tiles").evaluate("b => b.style.getPropertyValue('--grid')")
    assert "act-2.png" in grid
    assert errors == []
    page.close()


@pytest.mark.browser
def test_switching_images_keeps_attribution_and_labels_the_percentile(browser, tmp_path):
    """Attribution (and a dataset's percentile) belong to the first image: after switching to
    another image, the channel view still opens and sorts by contribution without an error."""
    site = tmp_path / "site"
    build_report("mobilenet_v2", "none", ["coffee", "chelsea"], site, size=64,
                 layers="features.1.conv.0.0", explain="top")
    page = browser.new_page(viewport={"width": 1300, "height": 900})
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.goto((site / "layer-features.1.conv.0.0.html").as_uri())
    page.get_by_label("2. chelsea").check()
    page.locator('input[type="radio"][value="contribution"]').check()
    page.goto((site / "layer-features.1.conv.0.0.html").as_uri() + "#features.1.conv.0.0:3")
    page.locator('[data-channel="features.1.conv.0.0:3"]').wait_for(state="visible")
    page.keyboard.press("Escape")
    page.get_by_label("2. chelsea").check()
    page.locator('.tile[data-index="5"]').click()
    page.locator('[data-channel="features.1.conv.0.0:5"]').wait_for(state="visible")
    assert "rank" in page.locator(".cv-contribution").text_content()
    assert errors == []
    page.close()
