"""Publication figures: real values, vector text without Type 3 fonts, right dpi, stable bytes."""
from __future__ import annotations

import os
import shutil
import subprocess
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from PIL import Image

import reportgen
from conftest import IdentityNet, TinyNet, hooks_left
from reportgen.cli import cli
from reportgen.errors import ReportError
from reportgen.inputs.preprocess import Preprocessing
from reportgen.publish.figure import Selection, make_figure, parse_width

needs_pdffonts = pytest.mark.skipif(shutil.which("pdffonts") is None and not os.environ.get("CI"),
                                    reason="pdffonts (poppler-utils) is not installed")
SVG = "{http://www.w3.org/2000/svg}"


def tiny_figure(path: Path, image: np.ndarray, **options) -> reportgen.publish.figure.Figure:
    torch.manual_seed(0)
    options.setdefault("select", ["stem:0,3,5", "body.5"])
    return make_figure(path, model=TinyNet(), weights=None, image=image, **options)


def test_maps_are_the_real_conv_output_even_with_an_inplace_relu(tmp_path, gradient_image):
    net = IdentityNet()  # conv copies each input channel, then ReLU(inplace=True)
    net.train()
    made = make_figure(tmp_path / "f.png", ["conv"], model=net, image=gradient_image)
    batch = Preprocessing.from_preset(None)(reportgen.inputs.images.load_image(gradient_image).rgb)
    panel = made.panels[0]
    assert panel.channels == [0, 1, 2] and panel.shape == (3, 224, 224)
    for channel, values in zip(panel.channels, panel.maps, strict=True):
        np.testing.assert_allclose(values, batch[0, channel].numpy(), atol=1e-6)
    assert min(float(m.min()) for m in panel.maps) < 0  # pre-ReLU values survived
    # layer normalisation: one robust range over the whole layer (numpy, independently)
    low, high = robust_range(batch[0].numpy())
    assert set(panel.low) == {low} and set(panel.high) == {high}
    assert panel.layer_min == float(batch.min()) and panel.layer_max == float(batch.max())
    assert hooks_left(net) == [] and net.training


def robust_range(maps: np.ndarray) -> tuple[float, float]:
    """1st and 99th nearest-rank percentiles of (C, H, W) maps without their outermost ring."""
    interior = maps[..., 1:-1, 1:-1] if min(maps.shape[-2:]) >= 8 else maps
    low, high = np.percentile(interior, [1, 99], method="inverted_cdf")
    return float(low), float(high)


def test_channel_normalisation_gives_each_channel_its_range(tmp_path, gradient_image):
    made = tiny_figure(tmp_path / "f.png", gradient_image, normalize="channel")
    panel = made.panels[0]
    ranges = [robust_range(m) for m in panel.maps]
    assert panel.low == pytest.approx([r[0] for r in ranges], rel=1e-6)
    assert panel.high == pytest.approx([r[1] for r in ranges], rel=1e-6)
    exact = tiny_figure(tmp_path / "g.png", gradient_image, normalize="minmax").panels[0]
    assert exact.low == [float(m.min()) for m in exact.maps]
    assert exact.high == [float(m.max()) for m in exact.maps]


def test_default_channels_are_the_most_active_sorted(tmp_path, gradient_image):
    made = tiny_figure(tmp_path / "f.png", gradient_image, select=["stem", "shared@2"])
    stem, shared = made.panels
    assert len(stem.channels) == 8 and stem.channels == sorted(stem.channels)  # all 8 < 16
    assert shared.layer == "shared@2" and shared.shape[0] == 6


@needs_pdffonts
def test_pdf_text_is_truetype_never_type3(tmp_path, gradient_image):
    made = tiny_figure(tmp_path / "f.pdf", gradient_image)
    assert made.path.read_bytes().startswith(b"%PDF")
    fonts = subprocess.run(["pdffonts", str(made.path)], capture_output=True, text=True,
                           check=True).stdout
    rows = fonts.strip().splitlines()[2:]
    assert rows, fonts
    assert all("Type 3" not in row for row in rows), fonts
    assert any("TrueType" in row for row in rows), fonts


def test_svg_parses_with_a_text_label_per_channel(tmp_path, gradient_image):
    made = tiny_figure(tmp_path / "f.svg", gradient_image)
    root = ET.parse(made.path).getroot()
    assert root.tag == f"{SVG}svg"
    texts = {"".join(node.itertext()).strip() for node in root.iter(f"{SVG}text")}
    assert {"stem:0", "stem:3", "stem:5"} <= texts  # channel ids as vector text, not outlines
    assert any(text.startswith("stem") for text in texts)
    images = list(root.iter(f"{SVG}image"))
    assert len(images) >= 3 + 6  # the maps (stem 3 + body.5 6), plus colorbars


@pytest.mark.parametrize("width, dpi", [("3.5in", 150), ("7in", 100), ("89mm", 200)])
def test_png_has_the_dpi_and_width_asked_for(tmp_path, gradient_image, width, dpi):
    made = tiny_figure(tmp_path / "f.png", gradient_image, width=width, dpi=dpi)
    with Image.open(made.path) as png:
        assert tuple(round(value) for value in png.info["dpi"]) == (dpi, dpi)
        assert abs(png.width - parse_width(width) * dpi) <= 1
        assert abs(png.height - made.height * dpi) <= 1


def white_edges(picture: np.ndarray, band: int) -> tuple[bool, bool]:
    """Whether the right and the bottom ``band`` pixels of an RGB(A) picture are all white."""
    grey = np.asarray(Image.fromarray(picture).convert("L"))
    return bool((grey[:, -band:] == 255).all()), bool((grey[-band:, :] == 255).all())


def rasterised(pdf: Path, dpi: int) -> np.ndarray:
    """The PDF's page as poppler draws it (what a reader sees), not as matplotlib planned it."""
    subprocess.run(["pdftoppm", "-r", str(dpi), "-png", "-singlefile", str(pdf),
                    str(pdf.with_suffix(""))], check=True)
    return np.asarray(Image.open(pdf.with_suffix(".png")))


@needs_pdffonts
@pytest.mark.parametrize("name, width, channels", [
    ("f.png", "7in", "0,1,2,3,4,5,6,7"), ("f.pdf", "7in", "0,1,2,3,4,5,6,7"),
    ("f.pdf", "3.5in", "0,1,2,3"), ("f.png", "3.5in", "0,3")])
def test_single_row_figures_keep_their_text_inside(tmp_path, gradient_image, name, width,
                                                   channels):
    """The colour bar's label (and the title at 3.5 in) was cut at the right and bottom."""
    made = tiny_figure(tmp_path / name, gradient_image, select=[f"stem:{channels}"],
                       width=width, dpi=600, rectify=True)
    picture = (np.asarray(Image.open(made.path)) if made.format == "png"
               else rasterised(made.path, 600))
    assert abs(picture.shape[1] - parse_width(width) * 600) <= 2
    assert white_edges(picture, band=12) == (True, True)  # 0.02 in of white on both sides
    if made.format == "pdf":
        page = subprocess.run(["pdftotext", "-bbox", str(made.path), "-"], capture_output=True,
                              text=True, check=True).stdout
        root = ET.fromstring(page.replace(' xmlns="http://www.w3.org/1999/xhtml"', ""))
        edge = float(root.find(".//page").get("width"))
        words = root.iter("word")
        assert all(float(w.get("xMin")) >= 0 and float(w.get("xMax")) <= edge for w in words)


def test_one_small_map_makes_a_small_figure(tmp_path, gradient_image):
    """One channel at the default 7 in width was a 7 x 7 in map; now it is panel-sized."""
    made = tiny_figure(tmp_path / "f.png", gradient_image, select=["stem:1"], dpi=100)
    with Image.open(made.path) as png:
        assert png.width == 700 and png.height < 150  # under 1.5 in tall
    assert made.height < 1.5


@pytest.mark.parametrize("suffix", [".pdf", ".svg", ".png"])
def test_two_builds_give_identical_bytes(tmp_path, gradient_image, suffix, monkeypatch):
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "1700000000")
    first = tiny_figure(tmp_path / f"a{suffix}", gradient_image).path.read_bytes()
    second = tiny_figure(tmp_path / f"b{suffix}", gradient_image).path.read_bytes()
    assert first == second
    if suffix == ".pdf":
        assert b"D:20231114221320Z" in first  # the SOURCE_DATE_EPOCH date, not now
    if suffix == ".svg":
        assert b"2023-11-14T22:13:20Z" in first


def test_no_date_at_all_without_source_date_epoch(tmp_path, gradient_image, monkeypatch):
    monkeypatch.delenv("SOURCE_DATE_EPOCH", raising=False)
    made = tiny_figure(tmp_path / "f.pdf", gradient_image)
    assert b"CreationDate" not in made.path.read_bytes()


def test_selection_syntax():
    assert Selection.parse("features.28:447,12,5") == Selection("features.28", (447, 12, 5))
    assert Selection.parse("features.0") == Selection("features.0")
    assert Selection.parse("layer1.0.conv1@2:1") == Selection("layer1.0.conv1@2", (1,))
    for bad in ("features.0:a", "features.0:", ":3", "x:-1"):
        with pytest.raises(ReportError):
            Selection.parse(bad)


def test_widths():
    assert parse_width("3.5in") == 3.5 and parse_width("7in") == 7.0
    assert parse_width("50.8mm") == pytest.approx(2.0)
    assert parse_width("252pt") == pytest.approx(3.5)
    for bad in ("wide", "0.5in", "100cm"):
        with pytest.raises(ReportError):
            parse_width(bad)


@pytest.mark.parametrize("select, message", [
    (["stemm"], "did you mean stem"),
    (["stem:8"], "channel 8 does not exist; the layer has 8 channels"),
    (["shared@3"], "not called that many times"),
    ([], "--select"),
])
def test_bad_selections_are_explained(tmp_path, gradient_image, select, message):
    with pytest.raises(ReportError, match=message):
        tiny_figure(tmp_path / "f.pdf", gradient_image, select=select)
    assert not (tmp_path / "f.pdf").exists()


def test_unknown_format_is_refused_before_any_work(tmp_path):
    with pytest.raises(ReportError, match=r"\.pdf, \.svg or \.png"):
        make_figure(tmp_path / "f.jpg", ["stem"], model="no-such-model")


def test_the_dataset_range_is_refused_before_any_work(tmp_path):
    """A figure has no dataset: --normalize dataset is one line, exit 2, not a KeyError."""
    with pytest.raises(ReportError, match="cannot use the normalisation 'dataset'"):
        make_figure(tmp_path / "f.pdf", ["stem"], model="no-such-model", normalize="dataset")
    result = CliRunner().invoke(cli, ["figure", "-o", str(tmp_path / "f.pdf"), "--normalize",
                                      "dataset"])
    assert result.exit_code == 2 and "'dataset' is not one of" in result.output
    assert not (tmp_path / "f.pdf").exists()


def build_small_report(site: Path, image: object) -> reportgen.Report:
    return reportgen.build_report("mobilenet_v2", "none", image, site, size=64, seed=3,
                                  layers="features.0.0,features.1.conv.1", rectify=True)


def test_from_a_report_rebuilds_its_input(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    build_small_report(tmp_path / "site", "coffee")
    runner = CliRunner()
    result = runner.invoke(cli, ["figure", "--from", "site", "-s", "features.0.0:1,2",
                                 "-o", "from.png", "--dpi", "100"])
    assert result.exit_code == 0, result.output
    assert "from.png (PNG" in result.output
    direct = runner.invoke(cli, ["figure", "-m", "mobilenet_v2", "-w", "none", "--seed", "3",
                                 "-i", "coffee", "--size", "64", "--rectify", "-s",
                                 "features.0.0:1,2", "-o", "direct.png", "--dpi", "100"])
    assert direct.exit_code == 0, direct.output
    assert (tmp_path / "from.png").read_bytes() == (tmp_path / "direct.png").read_bytes()


def test_from_a_report_whose_image_file_moved(tmp_path, monkeypatch, gradient_image):
    photo = tmp_path / "photos" / "cup.png"
    photo.parent.mkdir()
    Image.fromarray(gradient_image).save(photo)
    build_small_report(tmp_path / "site", photo)
    monkeypatch.chdir(tmp_path)
    runner = CliRunner()
    missing = runner.invoke(cli, ["figure", "--from", "site", "-s", "features.0.0",
                                  "-o", "f.svg"])
    assert missing.exit_code == 2
    assert "image 'cup.png'" in missing.output and "-i PATH" in missing.output
    assert "Traceback" not in missing.output
    found = runner.invoke(cli, ["figure", "--from", "site/manifest.json", "-i", str(photo),
                                "-s", "features.0.0", "-o", "f.svg"])
    assert found.exit_code == 0, found.output
    assert ET.parse(tmp_path / "f.svg").getroot().tag == f"{SVG}svg"


def test_from_refuses_model_and_size(tmp_path, gradient_image):
    build_small_report(tmp_path / "site", gradient_image)
    result = CliRunner().invoke(cli, ["figure", "--from", str(tmp_path / "site"), "-m", "vgg16",
                                      "-s", "features.0.0", "-o", str(tmp_path / "f.png")])
    assert result.exit_code == 2 and "leave out --model" in result.output


def test_from_a_report_of_an_in_memory_image_asks_for_the_file(tmp_path, gradient_image):
    build_small_report(tmp_path / "site", gradient_image)
    with pytest.raises(ReportError, match="in-memory image.*-i PATH"):
        make_figure(tmp_path / "f.png", ["features.0.0"], source=tmp_path / "site")


def test_from_a_report_of_a_checkpoint_finds_or_asks_for_it(tmp_path, monkeypatch):
    import torchvision

    torch.manual_seed(0)
    checkpoint = tmp_path / "runs" / "best.pth"
    checkpoint.parent.mkdir()
    torch.save(torchvision.models.squeezenet1_1(weights=None).state_dict(), checkpoint)
    reportgen.build_report("squeezenet1_1", checkpoint, "camera", tmp_path / "site", size=64,
                           layers="features.0")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    with pytest.raises(ReportError, match=r"checkpoint 'best\.pth'.*-w PATH"):
        make_figure("f.png", ["features.0:0"], source=tmp_path / "site")
    made = make_figure("f.png", ["features.0:0"], source=tmp_path / "site", weights=checkpoint,
                       dpi=72)
    assert made.panels[0].shape[0] == 64
    monkeypatch.chdir(checkpoint.parent)  # found by its base name in the current folder
    assert make_figure("g.png", ["features.0:0"], source=tmp_path / "site", dpi=72).panels


def test_from_a_report_shows_the_values_the_report_measured(tmp_path):
    report = build_small_report(tmp_path / "site", "coffee")
    made = make_figure(tmp_path / "f.png", ["features.1.conv.1"], source=tmp_path / "site",
                       dpi=72)
    stats = report.manifest["layers"][1]["stats"]
    assert report.manifest["layers"][1]["name"] == "features.1.conv.1"
    assert made.panels[0].layer_min == pytest.approx(stats["min"], rel=1e-5, abs=1e-6)
    assert made.panels[0].layer_max == pytest.approx(stats["max"], rel=1e-5)
    assert stats["min"] <= made.panels[0].low[0] < made.panels[0].high[0] <= stats["max"]
    assert stats["min"] >= 0  # the report was rectified, and so is the figure
