"""The report's core promises: what is captured, where each tile sits, what the pixels are."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

from conftest import TinyNet, hooks_left, needs_offline_weights
from reportgen import build_report
from reportgen.errors import ReportError
from reportgen.forward.hooks import ConvHooks
from reportgen.inputs.preprocess import Preprocessing
from reportgen.pictures.grids import GridLayout, tile
from reportgen.pictures.ranges import display_range, grey_levels


def png(site: Path, relative: str) -> np.ndarray:
    return np.asarray(Image.open(site / relative))


def robust_expected(plane: np.ndarray) -> np.ndarray:
    """The default picture of a map, computed independently with numpy: the 1st..99th
    nearest-rank percentiles of the map without its outermost ring, clipped outside."""
    interior = plane[1:-1, 1:-1] if min(plane.shape) >= 8 else plane
    low, high = np.percentile(interior, [1, 99], method="inverted_cdf")
    return ((plane - low) / (high - low) * 255).clip(0, 255).round()


@pytest.mark.parametrize("normalize", ["minmax", "channel"])
def test_identity_kernel_tiles_equal_normalised_input(tmp_path, identity_net, gradient_image,
                                                      normalize):
    report = build_report(identity_net, None, gradient_image, tmp_path / "site", size=40,
                          normalize=normalize)
    site = report.site_dir
    layer = report.manifest["layers"][0]
    grid = png(site, layer["activation"])
    batch = Preprocessing.from_preset(None, 40)(Image.fromarray(gradient_image))[0]
    layout = GridLayout(**{k: layer["grid"][k] for k in
                           ("channels", "rows", "cols", "tile_height", "tile_width", "gap")})
    assert grid.shape == (layout.height, layout.width)
    for channel in range(3):
        x, y = layout.origin(channel)
        tile = grid[y:y + 40, x:x + 40].astype(int)
        plane = batch[channel].numpy()
        if normalize == "minmax":
            expected = ((plane - plane.min()) / (plane.max() - plane.min()) * 255).round()
        else:
            expected = robust_expected(plane)
        assert np.abs(tile - expected).max() <= 1, channel
    # channel k sits at row k // cols, column k % cols; gaps and empty cells are white
    assert (layout.rows, layout.cols) == (2, 2)
    assert (grid[40, :] == 255).all() and (grid[:, 40] == 255).all()
    assert (grid[41:, 41:] == 255).all()  # the fourth cell is empty


def test_tile_position_row_major(tmp_path):
    """A net whose channel k is the constant k: tile k must carry value k (layer-normalised)."""

    class Ramp(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv = nn.Conv2d(3, 10, 1)
            with torch.no_grad():
                self.conv.weight.zero_()
                self.conv.bias.copy_(torch.arange(10.0))

        def forward(self, x):
            return self.conv(x)

    report = build_report(Ramp(), None, np.zeros((32, 32, 3), np.uint8), tmp_path / "s",
                          size=8, normalize="layer")
    layer = report.manifest["layers"][0]
    grid = png(report.site_dir, layer["activation"])
    cols = layer["grid"]["cols"]
    assert (layer["grid"]["rows"], cols) == (3, 4)
    for k in range(10):
        row, col = divmod(k, cols)
        tile = grid[row * 9: row * 9 + 8, col * 9: col * 9 + 8]
        assert (tile == round(k * 255 / 9)).all(), k



@pytest.mark.parametrize("channels", [1, 10, 12, 64])
def test_tiles_are_cut_from_any_layout_without_changing_a_pixel(channels):
    """tile() writes each map straight into its cell, from float grey levels in the
    channels-last layout of torchvision's outputs or from a strided uint8 view (the filter
    planes), and gives what a plain numpy tiling gives: gaps and empty cells white."""
    torch.manual_seed(0)
    maps = torch.randn(1, channels, 7, 5).contiguous(memory_format=torch.channels_last)[0]
    levels = grey_levels(maps, *display_range(maps, "channel"))
    layout = GridLayout.for_channels(channels, 7, 5)
    expected = np.full((layout.height, layout.width), 255, np.uint8)
    for k, plane in enumerate(levels.numpy().astype(np.uint8)):
        x, y = layout.origin(k)
        expected[y:y + 7, x:x + 5] = plane
    strided = levels.to(torch.uint8).permute(0, 2, 1).contiguous().permute(0, 2, 1)
    for source in (levels, strided):
        grid = tile(source, layout)
        assert grid.dtype == np.uint8 and grid.flags.c_contiguous
        assert np.array_equal(grid, expected)

def test_constant_channel_is_flat_not_nan(tmp_path):
    class Flat(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv = nn.Conv2d(3, 2, 3)
            nn.init.zeros_(self.conv.weight)
            nn.init.constant_(self.conv.bias, 3.0)

        def forward(self, x):
            return self.conv(x)

    report = build_report(Flat(), None, "camera", tmp_path / "s", size=16)
    grid = png(report.site_dir, report.manifest["layers"][0]["activation"])
    assert (grid[:14, :14] == 0).all()
    assert report.manifest["layers"][0]["stats"]["max"] == 3.0


def test_inplace_relu_does_not_change_what_is_shown(tmp_path, tiny_net, gradient_image):
    """Every conv in TinyNet is followed by ReLU(inplace=True); the report keeps negatives."""
    report = build_report(tiny_net, None, gradient_image, tmp_path / "a", size=32)
    assert report.manifest["layers"][0]["stats"]["min"] < 0
    assert "before any activation" in report.manifest["shown"]
    rectified = build_report(tiny_net, None, gradient_image, tmp_path / "b", size=32, rectify=True)
    assert rectified.manifest["layers"][0]["stats"]["min"] == 0.0
    assert "rectify" in rectified.manifest["shown"]


def test_every_call_of_every_conv_is_recorded(tmp_path, tiny_net, gradient_image):
    report = build_report(tiny_net, None, gradient_image, tmp_path / "s", size=32)
    names = [layer["name"] for layer in report.manifest["layers"]]
    assert names == ["stem", "body.1", "body.3", "body.5", "shared", "shared@2"]
    pages = {layer["page"] for layer in report.manifest["layers"]}
    assert len(pages) == 6
    views = {layer["name"]: layer["filter_view"] for layer in report.manifest["layers"]}
    assert views == {"stem": "rgb", "body.1": "strongest-input", "body.3": "grey",
                     "body.5": "heatmap", "shared": "strongest-input",
                     "shared@2": "strongest-input"}
    both = [layer for layer in report.manifest["layers"] if layer["module"] == "shared"]
    assert both[0]["filters"] == both[1]["filters"]
    assert both[0]["stats"] != both[1]["stats"]


def test_filter_figures_have_the_promised_shapes(tmp_path, tiny_net, gradient_image):
    report = build_report(tiny_net, None, gradient_image, tmp_path / "s", size=32)
    layers = {layer["name"]: layer for layer in report.manifest["layers"]}
    rgb = png(report.site_dir, layers["stem"]["filters"])
    assert rgb.ndim == 3 and rgb.shape[2] == 3
    heat = png(report.site_dir, layers["body.5"]["filters"])
    assert heat.ndim == 3
    scale = heat.shape[0] // 6
    assert heat.shape[:2] == (6 * scale, 8 * scale)  # out x in
    strongest = layers["body.1"]["strongest_input"]
    weight = tiny_net.body[1].weight.detach()
    assert strongest == weight.pow(2).sum(dim=(2, 3)).argmax(dim=1).tolist()
    grey = png(report.site_dir, layers["body.3"]["filters"])
    assert grey.ndim == 2
    # symmetric around 0: a zero weight is mid-grey
    kernel = tiny_net.body[3].weight.detach()[0, 0]
    scale = layers["body.3"]["filter_grid"]["scale"]
    value = kernel / kernel.abs().max() * 0.5 + 0.5
    assert abs(int(grey[0, 0]) - round(float(value[0, 0]) * 255)) <= 1
    assert layers["stem"]["weight_stats"]["count"] == 8 * 3 * 9


def test_hooks_removed_and_mode_restored(tmp_path, tiny_net, gradient_image):
    tiny_net.train()
    build_report(tiny_net, None, gradient_image, tmp_path / "s", size=32)
    assert hooks_left(tiny_net) == []
    assert tiny_net.training


def test_hooks_removed_after_a_failure(tmp_path, gradient_image):
    class Boom(TinyNet):
        def forward(self, x):
            self.stem(x)
            raise RuntimeError("boom")

    net = Boom()
    net.train()
    with pytest.raises(RuntimeError, match="boom"):
        build_report(net, None, gradient_image, tmp_path / "s", size=32)
    assert hooks_left(net) == []
    assert net.training
    assert not (tmp_path / "s").exists()
    assert list(tmp_path.iterdir()) == []


def test_conv_hooks_remove_twice_is_safe(tiny_net):
    hooks = ConvHooks(tiny_net, lambda *args: None)
    with hooks:
        assert hooks_left(tiny_net)
    hooks.remove()
    assert hooks_left(tiny_net) == []


def test_layers_glob_limits_layers(tmp_path, tiny_net, gradient_image):
    report = build_report(tiny_net, None, gradient_image, tmp_path / "s", size=32,
                          layers="body.*,stem")
    assert [layer["name"] for layer in report.manifest["layers"]] == [
        "stem", "body.1", "body.3", "body.5"]
    with pytest.raises(ReportError, match="matches no conv layer; the layers are stem, body.1"):
        build_report(tiny_net, None, gradient_image, tmp_path / "t", size=32, layers="nope*")


def test_tile_cap_shrinks_big_maps_and_says_so(tmp_path, identity_net, gradient_image):
    report = build_report(identity_net, None, gradient_image, tmp_path / "s", size=64,
                          tile_cap=16)
    grid = report.manifest["layers"][0]["grid"]
    assert (grid["tile_height"], grid["tile_width"], grid["shrunk"]) == (16, 16, True)
    assert (grid["map_height"], grid["map_width"]) == (64, 64)
    page = (report.site_dir / report.manifest["layers"][0]["page"]).read_text()
    assert "area-averaged from 64×64 to 16×16" in page


def test_colormap_grid_is_rgb_with_white_gaps(tmp_path, identity_net, gradient_image):
    report = build_report(identity_net, None, gradient_image, tmp_path / "s", size=16,
                          cmap="viridis")
    grid = png(report.site_dir, report.manifest["layers"][0]["activation"])
    assert grid.shape == (33, 33, 3)
    assert (grid[16] == 255).all()
    import matplotlib

    low = np.array(matplotlib.colormaps["viridis"](0.0, bytes=True)[:3])
    assert (grid[:16, :16].reshape(-1, 3) == low).all(axis=1).any()


@pytest.mark.slow
@pytest.mark.parametrize("name, convs", [("vgg16", 13), ("resnet18", 20)])
def test_every_conv2d_of_torchvision_models_is_captured(tmp_path, name, convs):
    report = build_report(name, "none", "astronaut", tmp_path / name, layers=None)
    assert len(report.layers) == convs
    assert [layer["name"] for layer in report.manifest["layers"]][:1] == (
        ["features.0"] if name == "vgg16" else ["conv1"])
    if name == "resnet18":  # not only `features`: downsample convs too
        assert "layer2.0.downsample.0" in [layer.name for layer in report.layers]
    assert report.manifest["weights"] == {"name": "none", "seed": 0,
                                          "note": "random initialisation"}
    for layer in report.manifest["layers"]:
        assert (report.site_dir / layer["activation"]).is_file()
        assert (report.site_dir / layer["filters"]).is_file()


@needs_offline_weights
def test_mobilenet_v2_offline_weights_predict_espresso_for_coffee(tmp_path):
    report = build_report("mobilenet_v2", "IMAGENET1K_V1", "coffee", tmp_path / "s")
    top = report.manifest["predictions"][0]
    assert top["label"] == "espresso" and top["probability"] > 0.5
    weights = report.manifest["weights"]
    assert weights["file"] == "mobilenet_v2-b0353104.pth"
    assert weights["sha256"].startswith("b0353104")
    assert report.manifest["preprocessing"]["source"] == "the weights' transforms()"
    assert len(report.manifest["layers"]) == 52


@needs_offline_weights
def test_preprocessing_matches_torchvision_transforms():
    from torchvision.models import MobileNet_V2_Weights

    from reportgen.inputs.images import load_image

    weights = MobileNet_V2_Weights.IMAGENET1K_V1
    picture = load_image("chelsea").rgb
    ours = Preprocessing.from_preset(weights.transforms())(picture)
    theirs = weights.transforms()(picture).unsqueeze(0)
    assert torch.allclose(ours, theirs, atol=1e-6)


def test_input_png_is_the_tensor_the_model_saw(tmp_path, identity_net, gradient_image):
    report = build_report(identity_net, None, gradient_image, tmp_path / "s", size=40)
    shown = png(report.site_dir, "img/input.png")
    preprocessing = Preprocessing.from_preset(None, 40)
    expected = preprocessing.to_picture(preprocessing(Image.fromarray(gradient_image)))
    assert shown.shape == (40, 40, 3)
    assert np.array_equal(shown, expected)


def test_manifest_records_what_was_built(tmp_path, tiny_net, gradient_image):
    report = build_report(tiny_net, None, gradient_image, tmp_path / "s", size=32,
                          categories=["a", "b", "c", "d"])
    manifest = json.loads((report.site_dir / "manifest.json").read_text())
    assert manifest["schema_version"] == 4 and manifest["generator"] == "reportgen"
    assert set(manifest["versions"]) >= {"reportgen", "torch", "torchvision"}
    assert manifest["image"]["source"] == "array" and len(manifest["image"]["sha256"]) == 64
    assert [p["label"] for p in manifest["predictions"]] != []
    assert {p["label"] for p in manifest["predictions"]} <= {"a", "b", "c", "d"}
    assert abs(sum(p["probability"] for p in manifest["predictions"]) - 1) < 1e-4
    for layer in manifest["layers"]:
        assert {"name", "page", "activation", "filters", "output_shape", "stats"} <= set(layer)
        assert layer["output_shape"][0] == 1
        ranking = layer["ranking"]["mean"]
        means = layer["channels"]["channel_mean"]
        assert means[ranking[0]] == max(means)
    assert (report.site_dir / ".nojekyll").is_file()
