"""Several images side by side: one report, one shared range per channel, a row per channel."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from PIL import Image
from torch import nn

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
    report = build_report("mobilenet_v2", "none", ["coffee", "chelsea", "astronaut"], site,
                          size=64, layers="features.1.conv.0.0")
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
    # the sidebar and the top bar show the chosen image and its predictions
    chosen = report.manifest["inputs"][1]
    assert page.locator(".context-input img").get_attribute("src") == chosen["input"]
    assert page.locator(".context-input img").evaluate("i => i.complete && i.naturalWidth") > 0
    labels = page.locator(".top5 .label").all_inner_texts()
    assert labels == [p["label"] for p in chosen["predictions"]]
    best = chosen["predictions"][0]
    assert page.locator(".topbar .top1").inner_text() == \
        f"{best['label']} {100 * best['probability']:.1f}%"
    assert errors == []
    page.close()


class NearTies(nn.Module):
    """Three constant channels: 1.00001 and 1.00002 differ only past the 4 digits a page's
    numbers keep, so ranking the page's numbers puts channel 0 first; the manifest puts 1."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 3, 1)
        with torch.no_grad():
            self.conv.weight.zero_()
            self.conv.bias.copy_(torch.tensor([1.00001, 1.00002, 0.5]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x).mean(dim=(2, 3))


@pytest.mark.browser
def test_another_image_sorts_by_the_manifests_rankings(browser, tmp_path, gradient_image):
    """The page ranked the second image's channels itself, from rounded numbers: ties fell
    in index order where the manifest's full-precision ranking had none."""
    report = build_report(NearTies(), None, [gradient_image, gradient_image[::-1]],
                          tmp_path / "site", size=16)
    layer = report.manifest["layers"][0]
    assert [view["ranking"] for view in layer["images"]] == [layer["ranking"]] * 2
    assert layer["ranking"]["mean"] == [1, 0, 2]
    page = browser.new_page()
    page.goto((report.site_dir / layer["page"]).as_uri())
    page.locator('.image-choice input[value="1"]').check()
    for key in ("mean", "max"):
        page.locator(f'.sort input[value="{key}"]').check()
        order = page.locator(".tiles .tile").evaluate_all("ts => ts.map(t => +t.dataset.index)")
        assert order == layer["images"][1]["ranking"][key]
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
