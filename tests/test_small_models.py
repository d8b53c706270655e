"""A small, fixed-size, 1-channel network from a file, as a new user brings one (issue 19).

The network is PyTorch's MNIST example: its ``fc1`` takes 64x12x12 features, so it runs on
28x28 inputs only. Every part of reportgen that runs a model (the dataset's receptive-field
probe, feature visualisation, the figure, ``layers``, attribution) uses its own size and
channels, or says in one line which ``--size`` to pass; the README's MNIST command runs as
written and shows the model the digit itself, drawn with square pixels.
"""
from __future__ import annotations

import json
import shlex
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from click.testing import CliRunner
from PIL import Image

from reportgen import ReportError, build_report
from reportgen.cli import cli
from reportgen.dataset.receptive import ReceptiveField, receptive_fields
from reportgen.explain.featurevis import visualise
from reportgen.inputs.preprocess import Preprocessing

README = Path(__file__).resolve().parent.parent / "README.md"
MNIST_PY = '''\
import torch
from torch import nn
import torch.nn.functional as F


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 32, 3, 1)
        self.conv2 = nn.Conv2d(32, 64, 3, 1)
        self.dropout1 = nn.Dropout(0.25)
        self.fc1 = nn.Linear(9216, 128)
        self.fc2 = nn.Linear(128, 10)

    def forward(self, x):
        x = F.max_pool2d(F.relu(self.conv2(F.relu(self.conv1(x)))), 2)
        x = torch.flatten(self.dropout1(x), 1)
        return F.log_softmax(self.fc2(F.relu(self.fc1(x))), dim=1)
'''


def digit(shift: int = 0) -> np.ndarray:
    """A 28x28 grey "1" with a soft edge: any resize or crop changes its pixels."""
    picture = np.zeros((28, 28), np.uint8)
    picture[5:23, 12 + shift:16 + shift] = 255
    picture[5:23, 11 + shift] = picture[5:23, 16 + shift] = 96
    return picture


@pytest.fixture
def mnist(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A folder as the README's MNIST user has it: mnist.py, mnist.pth and digit.png."""
    (tmp_path / "mnist.py").write_text(MNIST_PY)
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    sys.modules.pop("mnist", None)
    import mnist as module

    torch.manual_seed(0)
    torch.save(module.Net().state_dict(), tmp_path / "mnist.pth")
    Image.fromarray(digit()).save(tmp_path / "digit.png")
    return tmp_path


def run(*args: str):
    return CliRunner().invoke(cli, list(args))


def readme_command(start: str) -> list[str]:
    """The README's command that starts with ``start``, as words, without ``reportgen``."""
    lines = [line for line in README.read_text(encoding="utf-8").splitlines()
             if line.startswith(start)]
    assert len(lines) == 1, f"the README has {len(lines)} lines starting with {start!r}"
    return shlex.split(lines[0].split("#")[0])[1:]


def grey_png(path: Path) -> np.ndarray:
    with Image.open(path) as opened:
        rgb = np.asarray(opened.convert("RGB"))
    assert (rgb[..., 0] == rgb[..., 1]).all() and (rgb[..., 1] == rgb[..., 2]).all()
    return rgb[..., 0]


def test_the_readme_mnist_command_shows_the_model_the_digit_itself(mnist):
    words = readme_command("reportgen build -m mnist.py:Net")
    result = run(*words)
    assert result.exit_code == 0, result.output
    site = mnist / "site"
    manifest = json.loads((site / "manifest.json").read_text())
    assert (manifest["preprocessing"]["resize"], manifest["preprocessing"]["crop"]) == (28, 28)
    assert manifest["preprocessing"]["mean"] == [0.1307]
    # The input picture is the model's input de-normalised: the digit, pixel for pixel (a
    # 256/224-style resize to 32 and crop of 28 would enlarge and cut it).
    assert np.array_equal(grey_png(site / "img" / "input.png"), digit())
    page = (site / "index.html").read_text()
    assert 'width="28" height="28" class="pixelated"' in page


def test_small_inputs_are_drawn_with_square_pixels(mnist, tmp_path, browser):
    build_report("mnist.py:Net", "mnist.pth", "digit.png", tmp_path / "small", size=28)
    page = browser.new_page()
    try:
        page.goto((tmp_path / "small" / "index.html").as_uri())
        rendering = page.eval_on_selector(".input img", "e => getComputedStyle(e).imageRendering")
        shown = page.eval_on_selector(".input img", "e => e.getBoundingClientRect().width")
    finally:
        page.close()
    assert rendering == "pixelated" and shown > 28 * 2  # enlarged, and not smoothed


def test_a_large_input_is_not_pixelated(tmp_path, tiny_net, gradient_image):
    build_report(tiny_net, None, gradient_image, tmp_path / "s", size=160)
    assert "pixelated" not in (tmp_path / "s" / "index.html").read_text()


def test_size_without_named_weights_resizes_to_that_size():
    assert (Preprocessing.from_preset(None, 28).resize, Preprocessing.from_preset(None, 28).crop
            ) == (28, 28)
    assert "resized to 28 by --size" in Preprocessing.from_preset(None, 28).summary
    # Named weights keep their own resize-to-crop ratio (the preset's 232/224 here).
    from torchvision.models import ResNet50_Weights

    preset = ResNet50_Weights.IMAGENET1K_V2.transforms()
    assert Preprocessing.from_preset(preset, 112).resize == 116


def test_dataset_mining_of_a_fixed_size_model(mnist, tmp_path):
    folder = mnist / "digits"
    folder.mkdir()
    for shift in range(-3, 4, 2):
        Image.fromarray(digit(shift)).save(folder / f"{shift + 3}.png")
    report = build_report("mnist.py:Net", "mnist.pth", "digit.png", tmp_path / "s", size=28,
                          dataset=folder, top_k=2, mean=(0.1307,), std=(0.3081,))
    assert report.record.dataset is not None
    assert all(layer.dataset is not None for layer in report.layers)
    with pytest.raises(ReportError, match="runs on 28x28: use --size 28."):
        build_report("mnist.py:Net", "mnist.pth", "digit.png", tmp_path / "t", dataset=folder)


def test_receptive_fields_of_a_model_whose_head_takes_one_size_only(mnist):
    import mnist as module

    # The probe's 32 px input makes fc1 fail; the convs ran before it, and that is enough.
    fields = receptive_fields(module.Net(), ["conv1", "conv2"], start=32)
    assert fields == {"conv1": ReceptiveField((3, 3), (1, 1), (0, 0)),
                      "conv2": ReceptiveField((5, 5), (1, 1), (0, 0))}


def test_feature_visualisation_of_a_one_channel_model(mnist):
    import mnist as module

    torch.manual_seed(0)
    net = module.Net()
    grey = Preprocessing(28, 28, (0.1307,), (0.3081,), channels=1)
    made = visualise(net, "conv1", [0, 5], preprocessing=grey, steps=3, size=24)
    for visualisation in made:
        picture = visualisation.picture
        assert picture.shape == (24, 24, 3)
        assert (picture[..., 0] == picture[..., 1]).all()  # shown as the model sees it: grey
        # Its objective, independently: the picture at 28 px, normalised, through conv1 (up
        # to luma weights that sum to 0.9999).
        plane = torch.from_numpy(picture[..., 0]).float()[None, None] / 255
        plane = F.interpolate(plane, size=(28, 28), mode="bilinear", align_corners=False,
                              antialias=True)
        with torch.no_grad():
            maps = net.conv1((plane - 0.1307) / 0.3081)
        assert visualisation.objective == pytest.approx(
            float(maps[0, visualisation.channel].mean()), rel=1e-3, abs=1e-4)


def test_wrong_sizes_say_in_one_line_which_size_works(mnist):
    for args in (["build", "-m", "mnist.py:Net", "-w", "mnist.pth", "-i", "digit.png",
                  "--size", "27"],
                 ["layers", "-m", "mnist.py:Net"],
                 ["figure", "-o", "f.png", "-s", "conv2", "-m", "mnist.py:Net",
                  "-w", "mnist.pth", "-i", "digit.png"]):
        result = run(*args)
        assert result.exit_code == 2, (args, result.output)
        errors = [line for line in result.output.splitlines() if line.startswith("Error")]
        assert len(errors) == 1 and "use --size 28." in errors[0], result.output
        assert "Traceback" not in result.output
    table = run("layers", "-m", "mnist.py:Net", "--size", "28")
    assert table.exit_code == 0 and "1x64x24x24" in table.output
    figure = run("figure", "-o", "f.png", "-s", "conv2", "-m", "mnist.py:Net", "-w",
                 "mnist.pth", "-i", "digit.png", "--size", "28")
    assert figure.exit_code == 0, figure.output
    assert Path("f.png").stat().st_size > 0


def test_attribution_of_a_one_channel_model(mnist, tmp_path):
    report = build_report("mnist.py:Net", "mnist.pth", "digit.png", tmp_path / "s", size=28,
                          explain="top")
    attributed = [layer for layer in report.layers if layer.attribution is not None]
    assert [layer.name for layer in attributed] == ["conv1", "conv2"]
