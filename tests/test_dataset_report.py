"""A dataset in the report: top examples per channel, statistics, percentiles, skipped files.

The dataset is made from skimage's photos and LFW faces, with junk (tests/dataset_helpers.py);
the report's examples and percentiles are checked against every image run on its own.
"""
from __future__ import annotations

import json
import math
import os
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from PIL import Image

from dataset_helpers import (  # noqa: F401
    Reference,
    brute_force,
    expected_bottom,
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
            for side, expected in (("top", expected_top), ("inhibiting", expected_bottom)):
                want = expected(reference, layer["name"], channel, 4)
                got = entries[channel][side]
                assert [e["image"] for e in got] == [files.paths[i] for i, _, _ in want]
                assert np.allclose([e["score"] for e in got], [s for _, s, _ in want],
                                   rtol=1e-4, atol=1e-5)
                assert [e["y"] * width + e["x"] for e in got] == [w for _, _, w in want]
            got = entries[channel]["top"] + entries[channel]["inhibiting"]
            assert len({e["crop"]["x"] for e in got}) == len(got)  # one cell each
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
    options = dict(size=SIZE, layers=LAYERS[:1])
    report = build_report(net(), None, site_dir=tmp_path / "s", dataset=dataset, top_k=2,
                          limit=2, workers=0, **options)
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
        best = [[e["image"] for e in channel["top"][:1]] for channel in
                json.loads((on_device.site_dir / ours["examples"]).read_text())]
        expected = [[e["image"] for e in channel["top"][:1]] for channel in
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
    entries = json.loads((report.site_dir / layer["examples"]).read_text())
    assert page.locator(".cv-lows li").count() == len(entries[5]["inhibiting"]) > 0
    sentence = page.locator(".cv-percentile").inner_text()
    shown = math.floor(layer["image_percentile"][5] * 10 + 1e-9) / 10  # never rounded up
    assert f"more than {shown:.1f}% of the dataset" in sentence
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


def test_an_absolute_list_file_publishes_no_absolute_path(dataset, tmp_path):
    """A list naming files by absolute path, inside its folder and elsewhere: pages, JSON and
    the single file show them relative to the list's folder or by name, never the full path."""
    elsewhere = tmp_path / "private" / "holiday"
    elsewhere.mkdir(parents=True)
    (elsewhere / "chelsea.png").write_bytes((dataset / "photos" / "chelsea.png").read_bytes())
    listing = dataset / "photos" / "absolute.txt"
    listing.write_text(f"{dataset / 'photos' / 'coffee.png'}\n{dataset / 'photos/crops/rocket.jpg'}"
                       f"\n{elsewhere / 'chelsea.png'}\n{dataset / 'faces/group1/face001.png'}\n")
    try:
        report = build_report(net(), None, None, tmp_path / "s", size=SIZE, layers=LAYERS[:1],
                              dataset=listing, top_k=4, workers=0, self_contained=True)
    finally:
        listing.unlink()
    examples = json.loads((report.site_dir / report.manifest["layers"][0]["examples"])
                          .read_text(encoding="utf-8"))
    assert {entry["image"] for channel in examples for entry in channel["top"]} == {
        "coffee.png", "crops/rocket.jpg", "chelsea.png", "face001.png"}
    # every published file, the single file included; the state file is gone
    published = [path for path in (tmp_path / "s").rglob("*") if path.is_file()]
    assert report.single_file in published
    for path in published:
        data = path.read_bytes()
        for private in (str(tmp_path), str(dataset), os.path.join(Path.home(), "")):
            assert private.encode() not in data, (path.name, private)


@pytest.fixture(scope="module")
def rectified(dataset: Path, tmp_path_factory: pytest.TempPathFactory):
    """A deep layer shown rectified: some channels never go above 0 on the dataset."""
    site = tmp_path_factory.mktemp("rectified") / "site"
    return build_report(net(), None, "coffee", site, size=SIZE, layers=["layer3.0.conv1"],
                        rectify=True, dataset=dataset, top_k=3, workers=0)


def test_dead_and_tied_channels_make_no_ranking_claim(rectified, dataset):
    """Where every image peaks at 0 there is no "top 3" (it was the first three files) and no
    percentile; ties inside a top-k are said; no percentile is above 100."""
    files = list_dataset(dataset)
    preprocessing = Preprocessing.from_description(rectified.manifest["preprocessing"])
    reference = brute_force(net(), [files.path(i) for i in range(len(files))], preprocessing,
                            ["layer3.0.conv1"], rectify=True)
    published = json.loads((rectified.site_dir / "manifest.json").read_text())
    layer = published["layers"][0]
    entries = json.loads((rectified.site_dir / layer["examples"]).read_text())
    scores = reference.scores["layer3.0.conv1"]
    dead = tied = 0
    for channel, entry in enumerate(entries):
        column = sorted(scores[:, channel].tolist(), reverse=True)
        if column[0] == column[-1] == 0:
            dead += 1
            assert entry["top"] == [] and layer["image_percentile"][channel] is None
            assert entry["top_note"].startswith("Never above 0 on this dataset: all 27 images")
            continue
        assert 0 <= layer["image_percentile"][channel] <= 100
        assert [e["image"] for e in entry["top"]] == [
            files.paths[i] for i, _, _ in expected_top(reference, layer["name"], channel, 3)]
        if len(set(column[:4])) < 4:  # two of the top 3, or the 3rd and the 4th, tie
            tied += 1
            assert "tie" in entry["top_note"] and "not ranked" in entry["top_note"]
        else:
            assert entry["top_note"] is None
    assert dead and tied


@pytest.mark.browser
def test_channel_view_of_a_dead_channel_claims_no_rank(browser, rectified):
    layer = rectified.manifest["layers"][0]
    entries = json.loads((rectified.site_dir / layer["examples"]).read_text())
    channel = next(c for c, entry in enumerate(entries) if not entry["top"])
    page = browser.new_page(viewport={"width": 1300, "height": 900})
    page.goto((rectified.site_dir / layer["page"]).as_uri() + f"#{layer['name']}:{channel}")
    page.locator(f'[data-channel="{layer["name"]}:{channel}"]').wait_for(state="visible")
    assert page.locator(".cv-examples li").count() == 0
    assert page.locator(".cv-percentile").inner_text() == ""
    assert page.locator(".cv-dataset .cv-note").first.inner_text().startswith(
        "Never above 0 on this dataset")
    page.close()


def test_no_bar_and_no_torch_worker_warning_when_stderr_is_not_a_terminal(tmp_path,
                                                                          monkeypatch):
    """A pipe or a log file gets the build's lines, not tqdm's redraws, nor torch's warning
    (twice) that the DataLoader's workers outnumber the CPUs."""
    from PIL import Image

    photos = tmp_path / "photos"
    photos.mkdir()
    for number in range(3):
        Image.new("RGB", (20, 20), (number * 80, 40, 200)).save(photos / f"{number}.png")
    (tmp_path / "tiny.py").write_text("from conftest import TinyNet\n")
    monkeypatch.chdir(tmp_path)
    workers = len(os.sched_getaffinity(0)) + 1
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = CliRunner().invoke(cli, ["build", "-m", "tiny.py:TinyNet", "-w", "none",
                                          "--dataset", "photos", "--workers", str(workers),
                                          "--size", "16", "-d", "s"])
    assert result.exit_code == 0, result.output
    assert not [str(w.message) for w in caught if "DataLoader will create" in str(w.message)]
    assert "img/s" not in result.output and "\r" not in result.output
    assert result.output.strip().splitlines()[-1].startswith("Report of ")
