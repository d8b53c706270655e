"""A notebook-first Report, and no silent last-one-wins on the command line."""
from __future__ import annotations

import json
import logging

import numpy as np
import pytest
from click.testing import CliRunner

from conftest import TinyNet
from reportgen import BuildOptions, ReportError, build_report
from reportgen.cli import cli


def test_repr_html_works_for_a_relative_site_folder(tmp_path, monkeypatch, tiny_net,
                                                    gradient_image):
    monkeypatch.chdir(tmp_path)
    report = build_report(tiny_net, None, gradient_image, "out", size=32)
    preview = report._repr_html_()
    assert len(preview.encode("utf-8")) < 50_000
    assert preview.count("data:image/jpeg;base64,") == 5  # the input and four layers
    assert (tmp_path / "out" / "index.html").as_uri() in preview
    for prediction in report.predictions:
        assert prediction.label in preview
    line = repr(report)
    assert "\n" not in line and len(line) < 200 and "TinyNet" in line


def test_layers_take_a_list_of_globs(tmp_path, tiny_net, gradient_image):
    report = build_report(tiny_net, None, gradient_image, tmp_path / "s", size=32,
                          layers=["stem", "body.*"])
    assert [layer.name for layer in report.layers] == ["stem", "body.1", "body.3", "body.5"]
    assert report.manifest["options"]["layers"] == "stem,body.*"
    with pytest.raises(ReportError, match="glob string"):
        BuildOptions(layers=3)  # type: ignore[arg-type]


def test_repeated_layers_flag_is_the_union(tmp_path):
    result = CliRunner().invoke(cli, ["build", "-m", "mobilenet_v2", "-w", "none", "-i", "coffee",
                                      "--size", "32", "--layers", "features.0.*",
                                      "--layers", "features.1.conv.0.*", "-d",
                                      str(tmp_path / "s")])
    assert result.exit_code == 0, result.output
    manifest = json.loads((tmp_path / "s" / "manifest.json").read_text())
    assert [layer["name"] for layer in manifest["layers"]] == ["features.0.0",
                                                              "features.1.conv.0.0"]
    # recorded as the one option it became (the same union when rebuilt)
    assert "--layers 'features.0.*,features.1.conv.0.*'" in manifest["command"]


def test_a_crop_that_discards_most_of_a_panorama_is_noted(tmp_path, tiny_net):
    panorama = np.zeros((500, 4000, 3), np.uint8)
    report = build_report(tiny_net, None, panorama, tmp_path / "s", size=32)
    notes = [note for note in report.manifest["notes"] if "centre crop keeps" in note]
    # resized to --size on the short side (256x32), then a 32x32 crop: 1024 / 8192 = 12 %
    assert notes and "keeps 12% of the 4000x500 image" in notes[0]
    # a square is resized to --size and kept whole: no note
    square = build_report(tiny_net, None, np.zeros((80, 80, 3), np.uint8), tmp_path / "q",
                          size=64)
    assert not [note for note in square.manifest["notes"] if "centre crop" in note]


def test_categories_of_the_wrong_length_warn(tmp_path, gradient_image, caplog):
    with caplog.at_level(logging.WARNING, logger="reportgen"):
        report = build_report(TinyNet(classes=4), None, gradient_image, tmp_path / "s",
                              size=32, categories=["a", "b", "c"])
    assert "categories has 3 names but the model has 4 outputs" in caplog.text
    assert all(p.label.startswith("class ") for p in report.predictions)
    assert any("3 names" in note for note in report.manifest["notes"])


def test_verbose_prints_each_stage_time(tmp_path):
    result = CliRunner().invoke(cli, ["build", "-v", "-m", "mobilenet_v2", "-w", "none", "-i",
                                      "coffee", "--size", "32", "--layers", "features.0.0",
                                      "-d", str(tmp_path / "s")])
    assert result.exit_code == 0, result.output
    for stage in ("image", "model", "forward", "grids", "png", "html"):
        assert f"  {stage} " in result.output
