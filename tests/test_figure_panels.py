"""Paper figures of channels: a row per channel with the map, the report's top dataset
examples, feature visualisation and Grad-CAM, labelled LAYER:INDEX, with text as text."""
from __future__ import annotations

import json
import subprocess
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

import reportgen
from dataset_helpers import make_dataset, one_torch_thread  # noqa: F401
from reportgen.cli import cli
from reportgen.errors import ReportError
from reportgen.publish.figure import LayerPanel, make_figure
from reportgen.publish.figurerows import ChannelRow
from reportgen.publish.figuresite import ReportPictures
from reportgen.report import manifest as manifests
from test_figure import needs_pdffonts, rasterised, white_edges

LAYERS = "features.0.0,features.1.conv.1"
ALL = "map,examples,featurevis,gradcam"


def build(site: Path, **extra: object) -> reportgen.Report:
    return reportgen.build_report("mobilenet_v2", "none", "coffee", site, size=64, seed=3,
                                  layers=LAYERS, rectify=True, **extra)


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A report with everything a row can show: dataset examples (k = 4), feature
    visualisations of features.0.0:1,2 and features.1.conv.1:3 (few steps), Grad-CAM of the
    top class."""
    root = tmp_path_factory.mktemp("panels")
    data = make_dataset(root / "data", faces=3)
    build(root / "site", dataset=data, top_k=4, workers=0, batch_size=8,
          feature_vis="features.0.0:1,2,features.1.conv.1:3", feature_vis_steps=4,
          feature_vis_size=32, explain="top")
    return root / "site"


@pytest.fixture(scope="module")
def plain_site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    site = tmp_path_factory.mktemp("plain") / "site"
    build(site)
    return site


def words(pdf: Path) -> tuple[float, list[tuple[str, float, float]]]:
    """The page width and each word pdftotext finds (text, xMin, xMax), in points."""
    page = subprocess.run(["pdftotext", "-bbox", str(pdf), "-"], capture_output=True, text=True,
                          check=True).stdout
    root = ET.fromstring(page.replace(' xmlns="http://www.w3.org/1999/xhtml"', ""))
    width = float(root.find(".//page").get("width"))
    return width, [(w.text or "", float(w.get("xMin")), float(w.get("xMax")))
                   for w in root.iter("word")]


@needs_pdffonts
@pytest.mark.parametrize("width", ["3.5in", "7in"])
def test_rows_are_labelled_with_ids_in_embedded_truetype_text(site, tmp_path, width):
    made = make_figure(tmp_path / "f.pdf", ["features.0.0:2,1", "features.1.conv.1:3"],
                       source=site, panels=ALL, width=width)
    assert made.kinds == ("map", "examples", "featurevis", "gradcam")
    fonts = subprocess.run(["pdffonts", str(made.path)], capture_output=True, text=True,
                           check=True).stdout.strip().splitlines()[2:]
    assert fonts and all("TrueType" in row and "Type 3" not in row and row.split()[-5] == "yes"
                         for row in fonts), fonts  # embedded TrueType (emb: yes), never Type 3
    page_width, found = words(made.path)
    assert page_width == pytest.approx(float(width[:-2]) * 72)
    ids = [text for text, _, _ in found if text.startswith("features.")]
    assert ids == ["features.0.0:2", "features.0.0:1", "features.1.conv.1:3"]  # row order
    assert all(low >= 0 and high <= page_width for _, low, high in found)
    assert {"map", "Grad-CAM", "examples"} <= {text for text, _, _ in found}
    assert white_edges(rasterised(made.path, 300), band=6) == (True, True)


def test_a_layer_without_channels_gets_rows_for_what_the_report_visualised(site, tmp_path):
    made = make_figure(tmp_path / "f.svg", ["features.0.0"], source=site,
                       panels="featurevis,map")
    texts = {"".join(node.itertext()).strip()
             for node in ET.parse(made.path).getroot().iter("{http://www.w3.org/2000/svg}text")}
    assert {"features.0.0:1", "features.0.0:2"} <= texts
    assert not any(text.startswith("features.0.0:") and text[13:] not in ("1", "2")
                   for text in texts)
    ranking = manifests.read(site).data["layers"][0]["ranking"]["mean"]
    assert made.panels[0].channels == [k for k in ranking if k in (1, 2)]  # most active first


def test_the_pictures_are_the_reports_own(site):
    """Crops straight from the sprite sheets the examples JSON and the manifest name."""
    data = json.loads((site / "manifest.json").read_text(encoding="utf-8"))
    layer = data["layers"][0]
    pictures = ReportPictures(manifests.read(site))
    listed = json.loads((site / layer["examples"]).read_text(encoding="utf-8"))[1]["top"]
    shown = pictures.examples("features.0.0", 1, 3)
    assert len(shown) == 3
    for picture, example in zip(shown, listed, strict=False):
        crop = example["crop"]
        sheet = np.asarray(Image.open(site / crop["src"]).convert("RGB"))
        expected = sheet[crop["y"]:crop["y"] + crop["height"],
                         crop["x"]:crop["x"] + crop["width"]]
        np.testing.assert_array_equal(picture, expected)
    vis = layer["feature_vis"]["channels"]["2"]["crop"]
    assert pictures.feature_vis("features.0.0", 2).shape == (vis["height"], vis["width"], 3)
    cam = pictures.grad_cam("features.0.0")
    saved = np.asarray(Image.open(site / layer["attribution"]["cam"]))
    np.testing.assert_allclose(cam.cam, saved / 65535.0, rtol=1e-6)
    assert cam.cam.max() == pytest.approx(1.0)
    assert cam.contribution == layer["attribution"]["contribution"]


def test_row_maps_are_the_real_values_of_the_layer_figure(site, tmp_path):
    rows = make_figure(tmp_path / "rows.png", ["features.0.0:1"], source=site,
                       panels="map,examples", dpi=72)
    block = make_figure(tmp_path / "block.png", ["features.0.0:1"], source=site, dpi=72)
    np.testing.assert_array_equal(rows.panels[0].maps[0], block.panels[0].maps[0])
    assert rows.panels[0].low == block.panels[0].low


def test_without_the_map_the_model_does_not_run(site, tmp_path, monkeypatch):
    def no_model(*args: object, **kwargs: object) -> None:
        raise AssertionError("the model was loaded")

    monkeypatch.setattr(reportgen.publish.figure, "load_model", no_model)
    made = make_figure(tmp_path / "f.png", ["features.0.0:1"], source=site,
                       panels="examples,featurevis,gradcam", width="3.5in", dpi=100)
    assert made.panels == [] and made.path.is_file()
    with Image.open(made.path) as png:
        assert png.width == 350


@pytest.mark.parametrize("where, panels, select, message", [
    ("plain", "map,examples", "features.0.0:1", r"no dataset examples of features\.0\.0; "
                                                r"build it with --dataset FOLDER"),
    ("plain", "gradcam", "features.0.0:1", "no Grad-CAM of features.0.0; build it with "
                                           "--explain"),
    ("rich", "featurevis", "features.0.0:5", "no feature visualisation of features.0.0:5; "
                                             "build it with --feature-vis features.0.0:5"),
    ("rich", "map,pictures", "features.0.0:1", "'pictures' is not a list of panels; use some "
                                               "of map, examples, featurevis, gradcam"),
    ("rich", "examples", "features.9:1", "no layer 'features.9'; its layers are"),
    ("rich", "examples", "features.0.0:32", "channel 32 does not exist"),
    (None, "examples", "features.0.0:1", "--from SITE"),
])
def test_panels_the_report_lacks_are_refused_in_one_line(site, plain_site, tmp_path, where,
                                                         panels, select, message):
    source = {"plain": plain_site, "rich": site, None: None}[where]
    with pytest.raises(ReportError, match=message):
        make_figure(tmp_path / "f.pdf", [select], source=source, panels=panels)
    arguments = ["figure", "-s", select, "--panels", panels, "-o", str(tmp_path / "f.pdf")]
    result = CliRunner().invoke(cli, arguments + (["--from", str(source)] if source else []))
    assert result.exit_code == 2 and "Traceback" not in result.output
    assert len(result.output.strip().splitlines()) == 1, result.output
    assert not (tmp_path / "f.pdf").exists()


def test_the_command_draws_rows(site, tmp_path):
    result = CliRunner().invoke(cli, ["figure", "--from", str(site), "-s", "features.0.0:1",
                                      "--panels", "map,examples,featurevis", "--width", "3.5in",
                                      "--dpi", "100", "-o", str(tmp_path / "f.png")])
    assert result.exit_code == 0, result.output
    with Image.open(tmp_path / "f.png") as png:
        assert png.width == 350 and png.height < 150


def test_a_flat_map_says_so_in_its_row_label():
    flat = np.zeros((4, 4), dtype=np.float32)
    panel = LayerPanel("conv", (2, 4, 4), [0, 1], [flat, flat + 1], [0.0, 0.0], [1.0, 1.0],
                       [True, False], 0.0, 1.0)
    assert ChannelRow("conv", 0, panel, 0).label() == "conv:0 (flat)"
    assert ChannelRow("conv", 1, panel, 1).label() == "conv:1"
