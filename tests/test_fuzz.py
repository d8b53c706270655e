"""Property-based tests: any image, any small conv net -> a consistent report or a ReportError.

Never another exception, never a half-written site. Example counts are modest so the suite
stays quick on two cores.
"""
from __future__ import annotations

import io
import json
import shutil
import tempfile
from pathlib import Path

import numpy as np
import torch
from hypothesis import HealthCheck, assume, event, given, settings
from hypothesis import strategies as st
from PIL import Image
from torch import nn

from conftest import IdentityNet, hooks_left
from reportgen import ReportError, build_report
from reportgen.inputs.images import load_image

FUZZ = settings(max_examples=30, deadline=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


def check_site(site: Path, report) -> dict:
    """The manifest agrees with the files: every page, every PNG and its pixel size."""
    manifest = json.loads((site / "manifest.json").read_text())
    assert [layer["name"] for layer in manifest["layers"]] == [r.name for r in report.layers]
    assert (site / "index.html").is_file() and (site / "img" / "input.png").is_file()
    for layer in manifest["layers"]:
        assert (site / layer["page"]).is_file()
        with Image.open(site / layer["activation"]) as picture:
            assert picture.size == (layer["grid"]["width"], layer["grid"]["height"])
        channels = layer["output_shape"][1]
        assert channels == layer["conv"]["out_channels"]
        assert len(layer["channels"]["channel_mean"]) == channels
        assert sorted(layer["ranking"]["mean"]) == list(range(channels))
        grid = layer["grid"]
        assert grid["rows"] * grid["cols"] >= channels
        assert (site / layer["filters"]).is_file()
    leftovers = [p.name for p in site.parent.iterdir() if ".tmp-" in p.name or ".old-" in p.name]
    assert leftovers == []
    return manifest


# ---------------------------------------------------------------- images

MODES = ["1", "L", "LA", "P", "PA", "RGB", "RGBA", "CMYK", "I", "I;16", "F", "YCbCr", "HSV"]


@st.composite
def pil_images(draw) -> Image.Image:
    width = draw(st.integers(1, 70))
    height = draw(st.integers(1, 70))
    mode = draw(st.sampled_from(MODES))
    seed = draw(st.integers(0, 2**16))
    rng = np.random.default_rng(seed)
    rgb = Image.fromarray(rng.integers(0, 256, (height, width, 3), dtype=np.uint8))
    if mode in ("I", "I;16", "F"):
        top = {"I": 2**20, "I;16": 65535, "F": 1.0}[mode]
        values = rng.uniform(0, top, (height, width))
        if mode == "F":
            return Image.fromarray(values.astype(np.float32), "F")
        return Image.fromarray(values.astype(np.uint16 if mode == "I;16" else np.int32))
    if mode == "P":
        return rgb.quantize(colors=draw(st.integers(1, 16)))
    if mode == "PA":
        return rgb.convert("RGBA").convert("PA")
    return rgb.convert(mode)


@FUZZ
@given(picture=pil_images(), fmt=st.sampled_from([None, "PNG", "TIFF", "GIF", "WEBP", "BMP",
                                                  "JPEG"]))
def test_any_image_mode_builds_or_fails_clearly(picture, fmt):
    with tempfile.TemporaryDirectory() as folder:
        source = picture
        if fmt is not None:
            stream = io.BytesIO()
            try:
                picture.save(stream, format=fmt)
            except (OSError, ValueError, KeyError):
                assume(False)  # Pillow cannot write this mode in this format: not our input
            path = Path(folder) / f"picture.{fmt.lower()}"
            path.write_bytes(stream.getvalue())
            source = path
        try:
            report = build_report(IdentityNet(), None, source, Path(folder) / "site", size=8)
        except ReportError as error:
            event(f"ReportError: {error.message[:40]}")
            assert "\n" not in error.message
            return
        manifest = check_site(Path(folder) / "site", report)
        assert manifest["image"]["width"] == picture.width
        assert manifest["image"]["height"] == picture.height
        with Image.open(Path(folder) / "site" / "img" / "input.png") as seen:
            assert seen.mode == "RGB" and seen.size == (8, 8)


@st.composite
def arrays(draw) -> np.ndarray:
    dtype = draw(st.sampled_from([np.uint8, np.uint16, np.int32, np.float32, np.float64, bool]))
    shape = draw(st.sampled_from(["hw", "hwc", "chw", "nchw"]))
    height, width = draw(st.integers(1, 40)), draw(st.integers(1, 40))
    channels = draw(st.sampled_from([1, 3, 4]))
    dims = {"hw": (height, width), "hwc": (height, width, channels),
            "chw": (channels, height, width), "nchw": (1, channels, height, width)}[shape]
    rng = np.random.default_rng(draw(st.integers(0, 2**16)))
    if dtype is bool:
        return rng.random(dims) > 0.5
    if np.issubdtype(dtype, np.floating):
        scale = draw(st.sampled_from([1.0, 255.0, -3.0]))
        return (rng.random(dims) * scale).astype(dtype)
    top = {np.uint8: 256, np.uint16: 65536, np.int32: 1000}[dtype]
    return rng.integers(0, top, dims).astype(dtype)


@FUZZ
@given(array=arrays(), as_tensor=st.booleans())
def test_any_array_builds_or_fails_clearly(array, as_tensor):
    image = torch.from_numpy(np.ascontiguousarray(array)) if as_tensor else array
    try:
        source = load_image(image)
    except ReportError as error:
        assert "\n" not in error.message
        return
    assert source.rgb.mode == "RGB" and min(source.rgb.size) >= 1
    with tempfile.TemporaryDirectory() as folder:
        report = build_report(IdentityNet(), None, image, Path(folder) / "site", size=8)
        check_site(Path(folder) / "site", report)


# ---------------------------------------------------------------- conv nets


@st.composite
def conv_specs(draw, in_channels: int) -> dict:
    groups_options = [g for g in (1, 2, 3, 4) if in_channels % g == 0]
    groups = draw(st.sampled_from(groups_options))
    depthwise = draw(st.booleans()) and groups == in_channels
    out_channels = in_channels * draw(st.integers(1, 2)) if depthwise else \
        groups * draw(st.integers(1, 3))
    kernel = draw(st.sampled_from([1, 1, 2, 3, 5, (1, 3), (3, 2)]))
    stride = draw(st.sampled_from([1, 1, 2, 3, (2, 1)]))
    dilation = draw(st.sampled_from([1, 1, 2]))
    mode = draw(st.sampled_from(["zeros", "reflect", "replicate", "circular"]))
    if stride == 1 and draw(st.booleans()):
        padding = draw(st.sampled_from(["same", "valid"]))
    else:
        padding = draw(st.sampled_from([0, 1, 2, (0, 1)]))
    return dict(in_channels=in_channels, out_channels=out_channels, kernel_size=kernel,
                stride=stride, padding=padding, dilation=dilation, groups=groups,
                padding_mode=mode, bias=draw(st.booleans()))


class FuzzNet(nn.Module):
    """A chain of convs; ``reuse`` names a conv (in == out) that runs a second time."""

    def __init__(self, specs: list[dict], reuse: int | None, relu: bool) -> None:
        super().__init__()
        self.convs = nn.ModuleList(nn.Conv2d(**spec) for spec in specs)
        self.reuse = reuse
        self.relu = relu
        self.calls = 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for position, conv in enumerate(self.convs):
            x = self._call(conv, x)
            if position == self.reuse:
                x = self._call(conv, x)
        return x.flatten(2).mean(-1)

    def _call(self, conv: nn.Conv2d, x: torch.Tensor) -> torch.Tensor:
        if not x.is_meta:
            self.calls += 1
        y = conv(x)
        return torch.relu_(y) if self.relu else y


@st.composite
def fuzz_nets(draw) -> FuzzNet:
    channels = 3
    specs = []
    for _ in range(draw(st.integers(1, 4))):
        spec = draw(conv_specs(channels))
        specs.append(spec)
        channels = spec["out_channels"]
    same_width = [i for i, s in enumerate(specs) if s["in_channels"] == s["out_channels"]]
    reuse = draw(st.sampled_from([None, *same_width]))
    torch.manual_seed(draw(st.integers(0, 1000)))
    return FuzzNet(specs, reuse, draw(st.booleans()))


@FUZZ
@given(net=fuzz_nets(), size=st.integers(1, 24), tile_cap=st.sampled_from([None, 8, 16]),
       normalize=st.sampled_from(["channel", "layer"]), rectify=st.booleans(),
       cmap=st.sampled_from(["gray", "viridis"]))
def test_any_small_conv_net_builds_a_consistent_report_or_fails_clearly(
        net, size, tile_cap, normalize, rectify, cmap):
    image = np.random.default_rng(size).integers(0, 256, (30, 26, 3), dtype=np.uint8)
    folder = Path(tempfile.mkdtemp())
    try:
        try:
            report = build_report(net, None, image, folder / "site", size=size,
                                  tile_cap=tile_cap, normalize=normalize, rectify=rectify,
                                  cmap=cmap)
        except ReportError as error:
            event("clear ReportError")
            assert "\n" not in error.message
            assert not (folder / "site").exists()
            assert "too small" in error.message or "cannot run" in error.message, error.message
            return
        event("report built")
        manifest = check_site(folder / "site", report)
        assert len(manifest["layers"]) == net.calls  # one record per conv call
        assert manifest["model"]["conv_layers"] == len(net.convs)
        names = [layer["name"] for layer in manifest["layers"]]
        assert len(set(names)) == len(names)
        if net.reuse is not None:
            assert f"convs.{net.reuse}@2" in names
        for layer, conv_index in zip(manifest["layers"], _call_order(net), strict=True):
            spec, conv = layer["conv"], net.convs[conv_index]
            assert spec["groups"] == conv.groups and spec["out_channels"] == conv.out_channels
        assert hooks_left(net) == []
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def _call_order(net: FuzzNet) -> list[int]:
    order = []
    for position in range(len(net.convs)):
        order.append(position)
        if position == net.reuse:
            order.append(position)
    return order
