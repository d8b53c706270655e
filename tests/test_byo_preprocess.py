"""Preprocessing you control: channels from the first conv, --mean/--std, --resize, --no-crop,
and preprocess=False for a tensor that already is the model's input."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from PIL import Image
from torch import nn

from conftest import IdentityNet, TinyNet
from reportgen import ReportError, build_report
from reportgen.cli import cli
from reportgen.inputs.preprocess import Preprocessing
from reportgen.options import BuildOptions


class GreyNet(nn.Module):
    """An MNIST-style net: one input channel, ten classes."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(1, 4, 3, padding=1)
        self.conv2 = nn.Conv2d(4, 8, 3, stride=2)
        self.fc = nn.Linear(8, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.relu(self.conv2(torch.relu(self.conv1(x)))).mean(dim=(2, 3)))


class FourChannelNet(nn.Module):
    """RGB plus near-infrared, say."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(4, 5, 3, padding=1)
        self.head = nn.Linear(5, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.stem(x).mean(dim=(2, 3)))


def png(path) -> np.ndarray:
    with Image.open(path) as opened:
        return np.asarray(opened.convert("RGB"))


def inputs_seen(module: nn.Module) -> list[torch.Tensor]:
    """The exact tensors the model is called with, from now on."""
    seen: list[torch.Tensor] = []
    module.register_forward_pre_hook(lambda _, args: seen.append(args[0].detach().clone()))
    return seen


def test_one_channel_net_on_an_rgb_file(tmp_path):
    photo = tmp_path / "photo.png"
    rgb = np.zeros((40, 50, 3), np.uint8)
    rgb[..., 0], rgb[..., 1] = 200, np.arange(50, dtype=np.uint8)[None, :] * 4
    Image.fromarray(rgb).save(photo)
    net = GreyNet()
    seen = inputs_seen(net)
    report = build_report(net, None, photo, tmp_path / "s", size=28)
    assert seen[0].shape == (1, 1, 28, 28)
    preprocessing = report.manifest["preprocessing"]
    assert preprocessing["channels"] == 1 and len(preprocessing["mean"]) == 1
    assert "grey (1 channel)" in preprocessing["summary"]
    assert any("takes 1 channel: the image was made grey" in note for note in report.record.notes)
    picture = png(report.site_dir / "img" / "input.png")
    assert picture.shape == (28, 28, 3)
    assert (picture[..., 0] == picture[..., 1]).all() and (picture[..., 1] == picture[..., 2]).all()
    expected = Preprocessing(28, 28, (0.449,), (0.226,), channels=1)(
        Image.open(photo).convert("RGB"))
    assert torch.allclose(seen[0], expected)
    assert "grey (1 channel)" in (report.site_dir / "index.html").read_text()


def test_one_channel_net_from_the_cli_with_its_mean_and_std(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "mnist.py").write_text(
        "from torch import nn\nimport torch\n"
        "class Net(nn.Module):\n"
        "    def __init__(self):\n"
        "        super().__init__()\n"
        "        self.conv = nn.Conv2d(1, 3, 5)\n"
        "    def forward(self, x):\n"
        "        return self.conv(x).mean(dim=(2, 3))\n")
    Image.new("RGB", (30, 30), (10, 200, 30)).save(tmp_path / "digit.png")
    result = CliRunner().invoke(cli, ["build", "-m", "mnist.py:Net", "-w", "none",
                                      "-i", "digit.png", "-d", "s", "--size", "28",
                                      "--mean", "0.1307", "--std", "0.3081"])
    assert result.exit_code == 0, result.output
    manifest = json.loads((tmp_path / "s" / "manifest.json").read_text())
    assert manifest["preprocessing"]["mean"] == [0.1307]
    assert manifest["preprocessing"]["std"] == [0.3081]
    assert manifest["options"]["mean"] == [0.1307]
    assert "--mean 0.1307 --std 0.3081" in manifest["command"]
    bad = CliRunner().invoke(cli, ["build", "-m", "mnist.py:Net", "-w", "none", "-i",
                                   "digit.png", "-d", "t", "--mean", "0.5,0.5,0.5"])
    assert bad.exit_code == 2
    assert "--mean has 3 values but the model takes 1 input channel" in bad.output


def test_preprocess_false_gives_exactly_the_models_logits(tmp_path):
    torch.manual_seed(0)
    net = TinyNet(classes=6).eval()
    tensor = torch.randn(1, 3, 20, 28) * 3 + 1  # already normalised, any range, not square
    with torch.inference_mode():
        expected = net(tensor).softmax(dim=1)[0]
    seen = inputs_seen(net)
    report = build_report(net, None, tensor, tmp_path / "s", preprocess=False)
    assert len(seen) == 1 and torch.equal(seen[0], tensor)  # bit for bit: nothing re-done
    for prediction in report.predictions:
        assert prediction.probability == pytest.approx(float(expected[prediction.index]),
                                                       abs=1e-7)
    assert report.predictions[0].index == int(expected.argmax())
    recorded = report.manifest["preprocessing"]
    assert recorded["applied"] is False and "as given (preprocess=False)" in recorded["summary"]
    assert report.manifest["image"]["kind"] == "tensor"
    assert report.manifest["image"]["width"] == 28 and report.manifest["image"]["height"] == 20
    assert any("exactly as given" in note for note in report.record.notes)
    assert png(report.site_dir / "img" / "input.png").shape == (20, 28, 3)
    page = (report.site_dir / "index.html").read_text()
    assert 'width="28" height="20"' in page and "preprocess=False" in page
    assert report.manifest["layers"][0]["output_shape"] == [1, 8, 20, 28]


def test_preprocess_false_checks_the_shape(tmp_path):
    net = TinyNet()
    cases = [(torch.zeros(1, 1, 8, 8), "the tensor has 1 channels"),
             (torch.zeros(2, 3, 8, 8), "pass one input as"),
             (torch.zeros(8, 8), "pass one input as"),
             ([torch.zeros(1, 3, 8, 8), torch.zeros(1, 3, 9, 9)], "different shapes"),
             (torch.zeros(1, 3, 8, 8, dtype=torch.uint8), "is uint8"),
             (torch.full((1, 3, 8, 8), float("nan")), "NaN"),
             ("coffee", "not str")]
    for given, fragment in cases:
        with pytest.raises(ReportError, match=fragment):
            build_report(net, None, given, tmp_path / "s", preprocess=False)
    assert not (tmp_path / "s").exists()


def test_other_channel_counts_need_the_input_to_have_them(tmp_path):
    with pytest.raises(ReportError, match="takes 4 input channels, and from a picture "
                                          "reportgen makes 1 \\(grey\\) or 3 \\(RGB\\)"):
        build_report(FourChannelNet(), None, "coffee", tmp_path / "s", size=16)
    report = build_report(FourChannelNet(), None, np.random.rand(4, 12, 12).astype("float32"),
                          tmp_path / "s", preprocess=False)
    assert report.manifest["image"]["channels"] == 4
    assert png(report.site_dir / "img" / "input.png").shape == (12, 12, 3)


def test_no_crop_keeps_a_panorama_whole(tmp_path):
    panorama = np.zeros((60, 300, 3), np.uint8)
    panorama[:, :20] = (255, 0, 0)  # the ends would be cut off by a centre crop
    panorama[:, -20:] = (0, 0, 255)
    net = IdentityNet()
    seen = inputs_seen(net)
    report = build_report(net, None, panorama, tmp_path / "s", size=50, crop=False)
    batch = seen[0]
    assert batch.shape == (1, 3, 50, 50)
    assert torch.equal(batch[..., :20, :], torch.zeros(1, 3, 20, 50))  # padding: the mean
    picture = png(report.site_dir / "img" / "input.png")
    assert tuple(picture[25, 1]) == pytest.approx((255, 0, 0), abs=2)  # both ends are there
    assert tuple(picture[25, -2]) == pytest.approx((0, 0, 255), abs=2)
    assert tuple(picture[2, 25]) == pytest.approx((124, 116, 104), abs=1)  # mean colour
    assert report.manifest["preprocessing"]["pad"] is True
    assert "pad to 50×50 with the mean" in report.manifest["preprocessing"]["summary"]
    assert not any("centre crop keeps" in note for note in report.record.notes)
    cropped = build_report(IdentityNet(), None, panorama, tmp_path / "c", size=50)
    assert any("centre crop keeps" in note for note in cropped.record.notes)


def test_mean_std_and_resize(tmp_path, gradient_image):
    net = IdentityNet()
    seen = inputs_seen(net)
    report = build_report(net, None, gradient_image, tmp_path / "s", size=32, resize=40,
                          mean=0.0, std=(1.0, 1.0, 1.0))
    assert float(seen[0].min()) >= 0.0 and float(seen[0].max()) <= 1.0  # only scaled to [0, 1]
    recorded = report.manifest["preprocessing"]
    assert recorded["resize"] == 40 and recorded["crop"] == 32
    assert recorded["mean"] == [0.0, 0.0, 0.0] and recorded["std"] == [1.0, 1.0, 1.0]
    assert "mean, std, resize from the options" in recorded["source"]
    shown = png(report.site_dir / "img" / "input.png")
    expected = Preprocessing(40, 32, (0.0,) * 3, (1.0,) * 3)
    assert np.array_equal(shown, expected.to_picture(expected(Image.fromarray(gradient_image))))


@pytest.mark.parametrize("options, fragment", [
    ({"mean": "a,b"}, "is not a list of numbers"),
    ({"std": "0.2,0,0.2"}, "--std must be positive"),
    ({"mean": (0.1, 0.2), "std": (0.1, 0.2, 0.3)}, "--mean has 2 values and --std 3"),
    ({"resize": 20, "size": 32}, "--resize 20 is smaller than --size 32"),
    ({"resize": 300, "crop": False}, "with --no-crop the long side is resized"),
])
def test_preprocessing_options_are_checked_first(options, fragment):
    with pytest.raises(ReportError, match=fragment):
        BuildOptions(**options)


def test_wrong_mean_count_for_the_model(tmp_path):
    with pytest.raises(ReportError, match="--mean has 2 values but the model takes 3 input "
                                          "channels"):
        build_report(TinyNet(), None, "coffee", tmp_path / "s", size=16, mean=(0.5, 0.5))
    with pytest.raises(ReportError, match="--resize 100 is smaller than the crop \\(224\\)"):
        build_report(TinyNet(), None, "coffee", tmp_path / "s", resize=100)


def test_no_crop_from_the_cli_is_recorded(tmp_path):
    result = CliRunner().invoke(cli, ["build", "-m", "resnet18", "-w", "none", "-i", "coffee",
                                      "-d", str(tmp_path / "s"), "--size", "32", "--no-crop",
                                      "--layers", "conv1"])
    assert result.exit_code == 0, result.output
    manifest = json.loads((tmp_path / "s" / "manifest.json").read_text())
    assert manifest["command"].endswith("--layers conv1 --size 32 --no-crop")
    assert manifest["options"]["crop"] is False
    page = (tmp_path / "s" / "index.html").read_text()
    assert "--no-crop" in page.split('id="reproduce"')[1]
