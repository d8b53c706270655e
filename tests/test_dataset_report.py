"""A dataset in the report: top examples per channel, statistics, percentiles, skipped files.

The dataset is made from skimage's photos and LFW faces, with junk (tests/dataset_helpers.py);
the report's examples and percentiles are checked against every image run on its own.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from PIL import Image

from dataset_helpers import (  # noqa: F401
    Reference,
    brute_force,
    expected_top,
    make_dataset,
    one_torch_thread,
    random_resnet18,
)
from reportgen import build_report
from reportgen.cli import cli
from reportgen.dataset import list_dataset
from reportgen.errors import ReportError
from reportgen.inputs.preprocess import Preprocessing
from reportgen.options import BuildOptions

LAYERS = ["layer1.0.conv1", "layer4.1.conv2"]
SIZE = 64


def net() -> torch.nn.Module:
    return random_resnet18(num_classes=10)


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_dataset(tmp_path_factory.mktemp("data") / "photos-and-faces", faces=12)


@pytest.fixture(scope="module")
def report(dataset: Path, tmp_path_factory: pytest.TempPathFactory):
    site = tmp_path_factory.mktemp("site") / "site"
    return build_report(net(), None, "coffee", site, size=SIZE, layers=LAYERS,
                        dataset=dataset, top_k=4, batch_size=5, workers=0)


@pytest.fixture(scope="module")
def reference(report, dataset) -> Reference:
    """Every dataset image run on its own, with the report's own preprocessing."""
    files = list_dataset(dataset)
    preprocessing = Preprocessing.from_description(report.manifest["preprocessing"])
    return brute_force(net(), [files.path(i) for i in range(len(files))], preprocessing,
                       LAYERS)


def test_manifest_describes_the_dataset_and_the_skipped_files(report, dataset):
    summary = report.manifest["dataset"]
    assert summary["root"] == "photos-and-faces"
    assert summary["top_k"] == 4 and summary["score"] == "spatial max of the shown map"
    skipped = {item["path"]: item["reason"] for item in summary["skipped"]}
    assert set(skipped) == {"junk/notes.png", "junk/empty.jpg", "junk/truncated.png",
                            "junk/broken.jpg"}
    assert "empty" in skipped["junk/empty.jpg"] and "truncated" in skipped["junk/truncated.png"]
    assert summary["images"] == summary["files"] - 4 == 27  # 15 photos, 12 faces
    assert str(dataset) not in json.dumps(report.manifest)  # no full path published
    index = (report.site_dir / "index.html").read_text(encoding="utf-8")
    assert "4 skipped" in index and "junk/broken.jpg" in index


def test_examples_equal_a_brute_force_pass(report, dataset, reference):
    files = list_dataset(dataset)
    for layer in report.manifest["layers"]:
        entries = json.loads((report.site_dir / layer["examples"]).read_text())
        assert len(entries) == layer["grid"]["channels"]
        width = layer["grid"]["map_width"]
        for channel in (0, 7, len(entries) - 1):
            want = expected_top(reference, layer["name"], channel, 4)
            got = entries[channel]
            assert [e["image"] for e in got] == [files.paths[i] for i, _, _ in want]
            assert np.allclose([e["score"] for e in got], [s for _, s, _ in want],
                               rtol=1e-4, atol=1e-5)
            assert [e["y"] * width + e["x"] for e in got] == [w for _, _, w in want]
            for entry in got:  # every crop lies inside its sprite sheet
                crop = entry["crop"]
                sheet = Image.open(report.site_dir / crop["src"])
                assert crop["x"] + crop["width"] <= sheet.width
                assert crop["y"] + crop["height"] <= sheet.height
        stats = layer["dataset_stats"]
        assert stats["count"] == 27 and len(stats["p99"]) == len(entries)


def test_the_image_is_placed_against_the_dataset(report, reference):
    for layer in report.manifest["layers"]:
        scores = reference.scores[layer["name"]]
        decoded = scores  # one row per image that decoded
        for channel in (0, 3, 9):
            mine = layer["channels"]["channel_max"][channel]
            below = 100.0 * float((decoded[:, channel] < mine).float().mean())
            assert layer["image_percentile"][channel] == pytest.approx(below, abs=0.01)


def test_without_an_image_the_first_dataset_image_is_shown(dataset, tmp_path):
    report = build_report(net(), None, None, tmp_path / "s", size=SIZE, layers=LAYERS[:1],
                          dataset=dataset, top_k=2, workers=0, normalize="dataset")
    assert report.manifest["image"]["source"] == "face000.png"  # faces/group0/ sorts first
    assert report.manifest["normalization"]["mode"] == "dataset"
    layer = report.manifest["layers"][0]
    p99 = layer["dataset_stats"]["p99"]
    for channel in range(4):  # white is the channel's dataset p99 peak, black 0
        if p99[channel] > 0:
            assert layer["channels"]["shown_high"][channel] == pytest.approx(p99[channel],
                                                                             rel=1e-4)
            assert layer["channels"]["shown_low"][channel] == 0.0


def test_the_library_without_an_image_shows_the_first_dataset_image_as_the_cli_does(
        dataset, tmp_path):
    """build_report(..., dataset=...) with no image: the dataset's first, not the astronaut;
    without a dataset the astronaut stays the default picture."""
    options = dict(size=SIZE, layers=LAYERS[:1], workers=0)
    report = build_report(net(), None, site_dir=tmp_path / "s", dataset=dataset, top_k=2,
                          limit=2, **options)
    assert report.manifest["image"]["source"] == "face000.png"
    assert build_report(net(), None, site_dir=tmp_path / "t", **options).manifest["image"][
        "source"] == "astronaut"


def test_decoding_on_the_device_gives_the_same_report(report, dataset, tmp_path):
    """--decode device (what --device cuda does by default), run on the CPU: the same files
    used and skipped, with the same reasons, and the same best examples up to near-ties
    (torchvision's tensor resize is within a grey level of Pillow's)."""
    on_device = build_report(net(), None, "coffee", tmp_path / "s", size=SIZE, layers=LAYERS,
                             dataset=dataset, top_k=4, batch_size=5, workers=0,
                             decode="device")
    assert on_device.manifest["dataset"] == report.manifest["dataset"]
    for ours, theirs in zip(on_device.manifest["layers"], report.manifest["layers"],
                            strict=True):
        best = [[e["image"] for e in channel[:1]] for channel in
                json.loads((on_device.site_dir / ours["examples"]).read_text())]
        expected = [[e["image"] for e in channel[:1]] for channel in
                    json.loads((report.site_dir / theirs["examples"]).read_text())]
        same = sum(a == b for a, b in zip(best, expected, strict=True))
        assert same >= 0.9 * len(expected)


def test_cli_refuses_a_missing_dataset_in_one_line(tmp_path):
    result = CliRunner().invoke(cli, ["build", "-m", "resnet18", "-w", "none", "--dataset",
                                      str(tmp_path / "nowhere"), "-d", str(tmp_path / "s")])
    assert result.exit_code == 2
    assert len(result.output.strip().splitlines()) == 1
    assert "nowhere" in result.output and not (tmp_path / "s").exists()


@pytest.mark.browser
def test_channel_view_shows_the_top_examples(browser, report):
    layer = report.manifest["layers"][1]
    page = browser.new_page(viewport={"width": 1300, "height": 900})
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.goto((report.site_dir / layer["page"]).as_uri() + f"#{layer['name']}:5")
    page.locator(f'[data-channel="{layer["name"]}:5"]').wait_for(state="visible")
    assert page.locator(".cv-examples li").count() == 4
    sentence = page.locator(".cv-percentile").inner_text()
    assert f"more than {layer['image_percentile'][5]:.1f}% of the dataset" in sentence
    page.keyboard.press("Escape")
    page.get_by_label("Top dataset example").check()
    tile = page.locator(".tiles .tile .px").first
    assert "img/dataset/" in tile.evaluate("e => e.style.backgroundImage")
    assert errors == []
    page.close()


@pytest.mark.parametrize("decode", ["cpu", "device"])
def test_a_grey_model_mines_a_colour_dataset(dataset, tmp_path, decode):
    """A 1-channel model: every image goes grey, and the receptive fields (measured before
    the pass) are taken on one channel."""
    torch.manual_seed(0)
    grey = torch.nn.Sequential(torch.nn.Conv2d(1, 4, 3, padding=1), torch.nn.ReLU(),
                               torch.nn.Conv2d(4, 4, 3, stride=2), torch.nn.Flatten(),
                               torch.nn.LazyLinear(3)).eval()
    grey(torch.zeros(1, 1, 32, 32))
    report = build_report(grey, None, None, tmp_path / "s", dataset=dataset, workers=0,
                          top_k=2, size=32, decode=decode)
    assert report.manifest["preprocessing"]["channels"] == 1
    assert report.manifest["dataset"]["images"] == 27
    assert [list(layer["receptive_field"]["size"]) for layer in report.manifest["layers"]] == \
        [[3, 3], [5, 5]]


def test_sheets_keep_their_size_when_the_dataset_is_smaller_than_k(dataset, tmp_path):
    """Two images and k = 4: each channel has two crops in a four-column sheet. The page must
    give the sheet's real size, or the browser scales it and shows the wrong pixels."""
    import html
    import re

    report = build_report(net(), None, "coffee", tmp_path / "s", size=SIZE, layers=LAYERS[:1],
                          dataset=dataset, top_k=4, limit=2, workers=0)
    page = (report.site_dir / report.manifest["layers"][0]["page"]).read_text(encoding="utf-8")
    data = json.loads(html.unescape(re.search(r"data-channels='([^']*)'", page).group(1)))
    sheets = data["dataset"]["sheets"]
    assert sheets and all(len(rows) == 2 for rows in data["dataset"]["examples"])
    for sheet in sheets:
        assert (sheet["width"], sheet["height"]) == Image.open(report.site_dir /
                                                               sheet["src"]).size


@pytest.mark.parametrize(("given", "recorded"), [(".", "."), ("/data/photos/", "photos"),
                                                 ("photos", "photos")])
def test_the_dataset_is_recorded_by_base_name_and_reproducible(given, recorded):
    """`--dataset .` was recorded as '' and dropped from the Reproduce command, which then
    kept --normalize dataset without a dataset."""
    options = BuildOptions(dataset=given, normalize="dataset")
    assert options.recorded()["dataset"] == recorded
    words = options.command_words(False)
    assert words[words.index("--dataset") + 1] == recorded


@pytest.mark.parametrize(("options", "message"), [
    ({"feature_vis": "layer1.0.conv1:64"}, "out of range|has channels"),
    ({"feature_vis": "nothing.here:0"}, "matches no conv layer"),
    ({"explain": "no such label"}, "Unknown class 'no such label'"),
])
def test_bad_explanation_options_fail_before_the_dataset_pass(dataset, tmp_path, monkeypatch,
                                                               options, message):
    """A spec that cannot work is refused before hours of mining, not after them."""
    import reportgen.build

    def no_mining(*args, **kwargs):
        raise AssertionError("the dataset pass ran before the options were checked")

    monkeypatch.setattr(reportgen.build, "mine_for_report", no_mining)
    with pytest.raises(ReportError, match=message):
        build_report(net(), None, "coffee", tmp_path / "s", size=SIZE, layers=LAYERS,
                     dataset=dataset, workers=0, **options)
