"""Pictures that never lie: robust ranges, flat channels shown flat and named, readable figures.

A planted "conv" (an nn.Conv2d whose forward returns chosen maps) gives channels whose right
picture is known: numerical noise, a smooth gradient with one huge pixel, a constant, a
gradient that really fires, and a gradient framed by an extreme padding ring.
"""
from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch import nn

from conftest import needs_offline_weights
from reportgen import build_report
from reportgen.forward.hooks import conv_layers
from reportgen.inputs.models import load_model
from reportgen.pictures.ranges import display_range
from reportgen.publish.figure import make_figure

SIZE = 48
NOISE, SPIKE, CONSTANT, GRADIENT, RING = range(5)


class PlantedConv(nn.Conv2d):
    """Its output is planted, not computed: the report's hooks see exactly these maps."""

    def __init__(self) -> None:
        super().__init__(3, 5, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, _, h, w = x.shape
        rows, cols = torch.meshgrid(torch.arange(h), torch.arange(w), indexing="ij")
        gradient = (rows + cols).float() / (h + w - 2) * 10.0  # 0..10, smooth
        generator = torch.Generator().manual_seed(0)
        noise = torch.randn(h, w, generator=generator) * 1e-7
        spike = gradient.clone()
        spike[h // 2, w // 3] = 1000.0  # one huge pixel
        constant = torch.full((h, w), 0.5)
        ring = gradient.clone()
        ring[0, :], ring[-1, :], ring[:, 0], ring[:, -1] = -300.0, -300.0, 300.0, 300.0
        maps = torch.stack([noise, spike, constant, gradient, ring])
        return maps.unsqueeze(0).expand(n, -1, -1, -1).contiguous()


class PlantedNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.planted = PlantedConv()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.planted(x).mean(dim=(2, 3))


def tiles(site: Path, layer: dict) -> list[np.ndarray]:
    grid = np.asarray(Image.open(site / layer["activation"]))
    spec = layer["grid"]
    out = []
    for k in range(spec["channels"]):
        row, col = divmod(k, spec["cols"])
        x, y = col * (spec["tile_width"] + spec["gap"]), row * (spec["tile_height"] + spec["gap"])
        out.append(grid[y:y + spec["tile_height"], x:x + spec["tile_width"]].astype(int))
    return out


def build(tmp_path: Path, gradient_image: np.ndarray, **options: object):
    return build_report(PlantedNet(), None, gradient_image, tmp_path / "site", size=SIZE,
                        **options)


def test_flat_channels_are_marked_in_the_manifest_and_drawn_flat(tmp_path, gradient_image):
    report = build(tmp_path, gradient_image)
    layer = report.manifest["layers"][0]
    assert layer["channels"]["flat"] == [True, False, True, False, False]
    assert report.manifest["normalization"]["mode"] == "channel"
    assert report.manifest["schema_version"] == 4
    pictures = tiles(report.site_dir, layer)
    for k in (NOISE, CONSTANT):  # uniform tiles, not stretched noise
        assert pictures[k].max() - pictures[k].min() == 0, k
    # the rankings still include the flat channels
    assert sorted(layer["ranking"]["mean"]) == list(range(5))
    page = (report.site_dir / layer["page"]).read_text(encoding="utf-8")
    assert "2 of 5 channels are flat on this image" in page
    data = json.loads(page.split("data-channels='", 1)[1].split("'", 1)[0])
    assert data["images"][0]["flat"] == [1, 0, 1, 0, 0]


def test_a_huge_pixel_does_not_hide_the_gradient(tmp_path, gradient_image):
    report = build(tmp_path, gradient_image)
    layer = report.manifest["layers"][0]
    spike = tiles(report.site_dir, layer)[SPIKE]
    # the gradient shows across the grey levels, not a bright dot on black
    assert np.percentile(spike, 90) - np.percentile(spike, 10) > 150
    assert (spike == 255).mean() < 0.05
    # the true extremes are still what the statistics report
    assert layer["channels"]["channel_max"][SPIKE] == 1000.0
    assert layer["stats"]["max"] == 1000.0
    # the exact mode keeps the old min-max picture: almost everything black
    exact = build_report(PlantedNet(), None, gradient_image, tmp_path / "exact", size=SIZE,
                         normalize="minmax")
    spike_exact = tiles(exact.site_dir, exact.manifest["layers"][0])[SPIKE]
    assert np.percentile(spike_exact, 90) < 10


def test_the_padding_ring_does_not_wash_out_the_interior(tmp_path, gradient_image):
    report = build(tmp_path, gradient_image)
    ring = tiles(report.site_dir, report.manifest["layers"][0])[RING]
    interior = ring[1:-1, 1:-1]
    assert interior.max() - interior.min() >= 250  # the interior's full range is used
    low, high = (report.manifest["layers"][0]["channels"][key][RING]
                 for key in ("shown_low", "shown_high"))
    assert 0.0 <= low < high <= 10.0  # the range comes from the interior, not the ring


def test_layer_normalisation_is_robust_too(tmp_path, gradient_image):
    report = build(tmp_path, gradient_image, normalize="layer")
    layer = report.manifest["layers"][0]
    highs = layer["channels"]["shown_high"]
    flat = layer["channels"]["flat"]
    assert len(set(highs)) == 1 and len(set(layer["channels"]["shown_low"])) == 1
    assert max(highs) < 1000.0  # the single huge pixel is not the layer's white
    assert flat == [True, False, True, False, False]


def test_figure_picks_skip_flat_channels_and_use_the_robust_range(tmp_path, gradient_image):
    made = make_figure(tmp_path / "fig.png", ["planted"], model=PlantedNet(), weights=None,
                       image=gradient_image, size=SIZE, dpi=72)
    panel = made.panels[0]
    assert NOISE not in panel.channels and CONSTANT not in panel.channels
    assert panel.channels == [SPIKE, GRADIENT, RING]
    assert panel.high[0] < 1000.0  # layer-wide robust range: the spike is clipped
    chosen = make_figure(tmp_path / "all.png", ["planted:0,1,2"], model=PlantedNet(),
                         weights=None, image=gradient_image, size=SIZE, dpi=72)
    assert chosen.panels[0].flat == [True, False, True]


def test_few_panels_keep_a_full_rows_size_with_the_bar_beside_them(tmp_path, gradient_image):
    """Panels are sized for a row of the width (8 at 7 in): a few channels do not grow to fill
    the page (one map made a 7 x 7 in figure), and the colour bar stays right beside them."""
    options = dict(model=PlantedNet(), weights=None, image=gradient_image, size=SIZE, dpi=100,
                   width="7in")
    two = make_figure(tmp_path / "two.png", ["planted:1,3"], **options)
    five = make_figure(tmp_path / "five.png", ["planted:0,1,2,3,4"], **options)
    assert abs(two.height - five.height) < 0.05  # one row of (nearly) the
    assert two.height < 1.5  # same panels: the colour bar's label may take more room
    picture = np.asarray(Image.open(two.path).convert("L"))
    body = picture[int(0.6 * 100):]  # below the title: the panels and their colour bar
    ink = np.where((body < 250).any(axis=0))[0]
    assert ink.min() == 0 and ink.max() < 0.4 * picture.shape[1]  # two panels, then the bar


class SparseConv(nn.Conv2d):
    """Zero almost everywhere, a few values on the border and in the middle: the 1st and
    99th percentiles of its interior are both 0, and the layer's other channel is large
    enough that it is not flat."""

    def __init__(self) -> None:
        super().__init__(3, 2, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, _, h, w = x.shape
        sparse = torch.zeros(h, w)
        sparse[0, :] = 0.5
        sparse[h // 2, w // 2] = -0.5
        rows, cols = torch.meshgrid(torch.arange(h), torch.arange(w), indexing="ij")
        wide = (rows + cols).float()  # range about 90: sparse's 1.0 is 1 % of it, not flat
        return torch.stack([sparse, wide]).unsqueeze(0).expand(n, -1, -1, -1).contiguous()


class SparseNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.sparse = SparseConv()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.sparse(x).mean(dim=(2, 3))


def test_a_map_that_is_one_value_inside_keeps_its_few_other_pixels(tmp_path, gradient_image):
    report = build_report(SparseNet(), None, gradient_image, tmp_path / "site", size=SIZE)
    layer = report.manifest["layers"][0]
    assert layer["channels"]["flat"][0] is False
    sparse = tiles(report.site_dir, layer)[0]
    # the exact range is used: the zeros are mid-grey, the border white, the centre black
    assert sparse[0].min() == 255 and sparse[SIZE // 2, SIZE // 2] == 0
    assert 120 <= sparse[SIZE // 3, SIZE // 3] <= 135
    assert layer["channels"]["shown_low"][0] == -0.5 and layer["channels"]["shown_high"][0] == 0.5


def exact_range(maps: np.ndarray) -> tuple[float, float]:
    """The shown range by its definition, with numpy: the 1st/99th nearest-rank percentiles
    of the map(s) without the outermost ring, or the exact range where they coincide."""
    interior = maps[..., 1:-1, 1:-1] if min(maps.shape[-2:]) >= 8 else maps
    low, high = np.percentile(interior, [1, 99], method="inverted_cdf")
    return (float(maps.min()), float(maps.max())) if high <= low else (float(low), float(high))


@needs_offline_weights
def test_shown_range_is_the_exact_percentiles_on_the_default_report(tmp_path):
    """MobileNetV2 (ImageNet weights) on coffee, as the default report: every channel's shown
    low and high lie within one grey level of the exact percentiles of the very maps the
    build saw (caught by our own hooks, registered first), and display_range itself is
    exact on them."""
    module = load_model("mobilenet_v2", "DEFAULT").module
    maps: dict[str, torch.Tensor] = {}

    def keep(name: str) -> Callable[..., None]:
        def hook(_module: nn.Module, _inputs: object, output: torch.Tensor) -> None:
            maps[name] = output[0].clone()
        return hook

    for name, conv in conv_layers(module):
        conv.register_forward_hook(keep(name))
    report = build_report(module, None, "coffee", tmp_path / "site")
    assert len(maps) == len(report.manifest["layers"]) == 52
    for layer in report.manifest["layers"]:
        values = maps[layer["name"]].numpy()
        channels = layer["channels"]
        layer_range = exact_range(values)
        for k in range(values.shape[0]):
            low, high = layer_range if channels["flat"][k] else exact_range(values[k])
            grey = (high - low) / 255
            assert abs(channels["shown_low"][k] - low) <= grey, (layer["name"], k)
            assert abs(channels["shown_high"][k] - high) <= grey, (layer["name"], k)
        ours = np.stack([value.numpy() for value in display_range(maps[layer["name"]],
                                                                     "channel")], axis=1)
        assert np.array_equal(ours, [exact_range(plane) for plane in values]), layer["name"]
