"""--model timm:NAME: random weights, pretrained weights from the local Hugging Face cache (a
fake one here: nothing is downloaded in the tests), timm's data config, clear messages."""
from __future__ import annotations

import json
import os
import sys

import pytest
import torch
from click.testing import CliRunner

from reportgen import ReportError, build_report
from reportgen.cli import cli
from reportgen.inputs import timmzoo

if os.environ.get("CI"):  # the test extra installs timm: in CI its absence is a failure
    import timm
else:
    timm = pytest.importorskip("timm")


@pytest.fixture
def hub_cache(tmp_path, monkeypatch):
    """An empty Hugging Face cache, and no network: a download attempt fails at once."""
    cache = tmp_path / "hf-cache"
    cache.mkdir()
    monkeypatch.setattr(timmzoo, "hub_cache_dir", lambda: str(cache))

    def offline(hub_id: str, file: str):
        raise OSError("network is unreachable")

    monkeypatch.setattr(timmzoo, "download_from_hub", offline)
    return cache


def cache_file(cache, hub_id: str, file: str):
    """Where huggingface_hub keeps a file: models--ORG--NAME/snapshots/COMMIT/FILE."""
    commit = "0123456789abcdef0123456789abcdef01234567"
    folder = cache / f"models--{hub_id.replace('/', '--')}"
    (folder / "refs").mkdir(parents=True)
    (folder / "refs" / "main").write_text(commit)
    snapshot = folder / "snapshots" / commit
    snapshot.mkdir(parents=True)
    return snapshot / file


def test_timm_with_random_weights_from_the_cli(tmp_path):
    site = tmp_path / "s"
    result = CliRunner().invoke(cli, ["build", "-m", "timm:resnet18", "-w", "none", "-i",
                                      "coffee", "-d", str(site), "--size", "64",
                                      "--layers", "conv1,layer1.*"])
    assert result.exit_code == 0, result.output
    manifest = json.loads((site / "manifest.json").read_text())
    assert manifest["model"]["name"] == "timm:resnet18" and manifest["model"]["kind"] == "timm"
    assert manifest["weights"]["name"] == "none"
    assert [layer["name"] for layer in manifest["layers"]][:2] == ["conv1", "layer1.0.conv1"]
    preprocessing = manifest["preprocessing"]  # timm's data config: bicubic, crop_pct 0.95
    assert preprocessing["interpolation"] == "bicubic"
    assert preprocessing["source"].startswith("timm's data config")
    assert preprocessing["crop"] == 64 and preprocessing["resize"] == round(64 * 235 / 224)
    assert manifest["command"].startswith("reportgen build --model timm:resnet18 --weights none")


def test_timm_model_args_and_seed(tmp_path):
    first = build_report("timm:resnet18", "none", "coffee", tmp_path / "a", size=32, seed=4,
                         layers="conv1", model_args={"num_classes": 7})
    again = build_report("timm:resnet18", "none", "coffee", tmp_path / "b", size=32, seed=4,
                         layers="conv1", model_args={"num_classes": 7})
    assert len(first.predictions) == 5 and {p.index for p in first.predictions} < set(range(7))
    assert first.manifest["layers"] == again.manifest["layers"]


def test_pretrained_weights_come_from_the_local_hugging_face_cache(tmp_path, hub_cache):
    from safetensors.torch import save_file

    torch.manual_seed(5)
    source = timm.create_model("resnet18")
    path = cache_file(hub_cache, "timm/resnet18.a1_in1k", "model.safetensors")
    save_file({k: v.contiguous() for k, v in source.state_dict().items()}, str(path))
    report = build_report("timm:resnet18", "DEFAULT", "coffee", tmp_path / "s", size=32,
                          layers="conv1")
    weights = report.record.weights
    assert weights["source"] == "Hugging Face cache" and weights["tag"] == "a1_in1k"
    assert weights["hub_id"] == "timm/resnet18.a1_in1k" and len(weights["sha256"]) == 64
    assert report.predictions[0].label == report.predictions[0].label.split(",")[0]
    assert not report.predictions[0].label.startswith("class ")  # ImageNet names
    index = (report.site_dir / "index.html").read_text()
    assert "--weights a1_in1k" in index  # the tag that was used, not DEFAULT


def test_missing_cache_is_a_clear_message(tmp_path, hub_cache):
    with pytest.raises(ReportError) as caught:
        build_report("timm:resnet18", "DEFAULT", "coffee", tmp_path / "s", size=32)
    message = caught.value.message
    for fragment in ("timm/resnet18.a1_in1k", "not in the Hugging Face cache", str(hub_cache),
                     "timm.create_model('resnet18', pretrained=True)", "--weights none"):
        assert fragment in message, message
    with pytest.raises(ReportError, match="Unknown weights 'in22k' for timm:resnet18; "
                                          "choose DEFAULT, none, a1_in1k"):
        build_report("timm:resnet18", "in22k", "coffee", tmp_path / "s", size=32)


def test_unknown_timm_names_and_missing_timm(tmp_path, monkeypatch):
    result = CliRunner().invoke(cli, ["build", "-m", "timm:resnt18", "-w", "none",
                                      "-d", str(tmp_path / "s")])
    assert result.exit_code == 2
    assert "Unknown timm model 'resnt18'. Did you mean timm:resnet18" in result.output
    assert "Loading" not in result.output
    monkeypatch.setitem(sys.modules, "timm", None)  # as if it were not installed
    with pytest.raises(ReportError, match=r"needs timm, which is not installed: pip install "
                                          r"'reportgen\[timm\]'"):
        build_report("timm:resnet18", "none", "coffee", tmp_path / "s")


def test_timm_checkpoint_of_a_fine_tune(tmp_path):
    torch.manual_seed(1)
    tuned = timm.create_model("resnet18", num_classes=3)
    torch.save({"state_dict": tuned.state_dict(), "epoch": 9}, tmp_path / "tuned.pth")
    report = build_report("timm:resnet18", tmp_path / "tuned.pth", "coffee", tmp_path / "s",
                          size=32, layers="conv1")
    assert {p.index for p in report.predictions} == {0, 1, 2}
    assert report.record.weights["file"] == "tuned.pth"
