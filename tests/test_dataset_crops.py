"""Crops show the receptive field of the peak: a planted bright-square detector's crops
contain the square; sprite sheets hold every crop at the rectangle its example names."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

from dataset_helpers import make_dataset, one_torch_thread, random_resnet18  # noqa: F401
from reportgen.dataset.crops import (
    OUTLINE,
    SHEET_CHANNELS,
    crop_window,
    cut_crop,
    write_crops,
)
from reportgen.dataset.files import list_dataset
from reportgen.dataset.mine import MineOptions, MineResult, mine
from reportgen.dataset.receptive import Box, ReceptiveField, receptive_fields
from reportgen.inputs.preprocess import Preprocessing
from reportgen.sitelayout import CROP_DIR

SIDE, SQUARE = 48, 6
PRE = Preprocessing(SIDE, SIDE)


class SquareDetector(nn.Module):
    """Brightness summed over a 7x7 window every 2 pixels, then two copies of it."""

    def __init__(self) -> None:
        super().__init__()
        self.window = nn.Conv2d(3, 1, 7, stride=2, padding=3, bias=False)
        self.copy = nn.Conv2d(1, 2, 1, bias=False)
        with torch.no_grad():
            self.window.weight.fill_(1.0)
            self.copy.weight.fill_(1.0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.copy(self.window(x))
        return out


@pytest.fixture(scope="module")
def squares(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, tuple[int, int]]]:
    """Dark images with one bright square each (one at the border), and where it is."""
    root = tmp_path_factory.mktemp("squares")
    generator = np.random.default_rng(0)
    where = {}
    for index in range(12):
        top, left = (int(v) for v in generator.integers(0, SIDE - SQUARE, size=2))
        if index == 5:
            top, left = 0, SIDE - SQUARE  # touching two borders
        picture = np.full((SIDE, SIDE, 3), 20, dtype=np.uint8)
        picture[top:top + SQUARE, left:left + SQUARE] = 255
        name = f"set{index % 2}/square{index:02d}.png"
        (root / name).parent.mkdir(exist_ok=True)
        Image.fromarray(picture).save(root / name)
        where[name] = (top, left)
    return root, where


@pytest.fixture(scope="module")
def mined(squares: tuple[Path, dict[str, tuple[int, int]]]) -> MineResult:
    return mine(SquareDetector(), list_dataset(squares[0]), PRE, MineOptions(k=4),
                batch_size=5, progress=False)


def test_planted_field_is_known() -> None:
    fields = receptive_fields(SquareDetector())
    assert fields["window"] == ReceptiveField((7, 7), (2, 2), (-3, -3)) == fields["copy"]


def test_crops_contain_the_square(mined: MineResult,
                                  squares: tuple[Path, dict[str, tuple[int, int]]],
                                  tmp_path: Path) -> None:
    fields = receptive_fields(SquareDetector())
    layers = write_crops(mined, fields, tmp_path, crop_size=28)
    assert list(layers) == ["window", "copy"]
    crops = layers["window"]
    assert crops.sheets == [f"{CROP_DIR}/window-000.png"]
    sheet = np.asarray(Image.open(tmp_path / crops.sheets[0]).convert("RGB"))
    assert sheet.shape == (1 * 28, 2 * 4 * 28, 3)  # k top, then k most inhibiting
    (examples,) = crops.examples
    assert len(examples) == 4
    for rank, example in enumerate(examples):
        top, left = squares[1][example.image]
        window = crop_window(fields["window"], example.y, example.x, SIDE, SIDE)
        square = Box(top, left, top + SQUARE, left + SQUARE)
        assert (window.top <= square.top and window.left <= square.left
                and square.bottom <= window.bottom and square.right <= window.right)
        ref = example.crop
        assert (ref.src, ref.x, ref.y, ref.width, ref.height) == (crops.sheets[0], rank * 28, 0,
                                                                  28, 28)
        piece = sheet[ref.y:ref.y + ref.height, ref.x:ref.x + ref.width]
        # 6 of the window's 7 pixels per side are white: most of the crop is bright.
        bright = (piece.min(axis=2) > 200).mean()
        assert bright > 0.5, (example, bright)
        assert (piece == np.array(OUTLINE)).all(axis=2).any()  # the cell is outlined
        entry = example.to_json()
        assert entry["image"] == example.image and json.dumps(entry)


def test_a_crop_at_the_border_is_padded_with_the_mean_colour() -> None:
    picture = np.full((SIDE, SIDE, 3), 200, dtype=np.uint8)
    field = ReceptiveField((7, 7), (2, 2), (-3, -3))
    window = crop_window(field, 0, 0, SIDE, SIDE)
    assert window == Box(-3, -3, 4, 4)  # the field's in-image part is 4x4, padded to the field
    crop = cut_crop(picture, field, 0, 0, 7, fill=(1, 2, 3))
    assert (crop[0, 6] == (1, 2, 3)).all() and (crop[6, 6] == 200).all()
    # A field larger than the image shows the whole image, centred where it can be.
    huge = ReceptiveField((101, 101), (32, 32), (-50, -50))
    assert crop_window(huge, 0, 0, SIDE, SIDE) == Box(0, 0, SIDE, SIDE)


def test_sheets_split_channels_and_chunks_change_nothing(tmp_path: Path) -> None:
    root = make_dataset(tmp_path / "data", faces=6)
    model = random_resnet18()
    result = mine(model, list_dataset(root), PRE, MineOptions(("layer2.0.conv1",), k=3),
                  batch_size=8, progress=False)
    fields = receptive_fields(model, ["layer2.0.conv1"])
    whole = write_crops(result, fields, tmp_path / "a", crop_size=16)
    chunked = write_crops(result, fields, tmp_path / "b", crop_size=16, memory_budget=1,
                          workers=2, batch_size=3)
    crops = whole["layer2.0.conv1"]
    assert len(crops.sheets) == 128 // SHEET_CHANNELS and len(crops.examples) == 128
    for path in crops.sheets:
        assert (tmp_path / "a" / path).read_bytes() == (tmp_path / "b" / path).read_bytes()
        assert Image.open(tmp_path / "a" / path).size == (2 * 3 * 16, SHEET_CHANNELS * 16)
    assert [[e.to_json() for e in channel] for channel in crops.examples] == [
        [e.to_json() for e in channel] for channel in chunked["layer2.0.conv1"].examples]
    second = crops.examples[SHEET_CHANNELS + 1][2]
    assert second.crop.src == crops.sheets[1] and (second.crop.x, second.crop.y) == (32, 16)
    low = crops.inhibiting[SHEET_CHANNELS + 1][0]  # after the channel's k top crops
    assert low.crop.src == crops.sheets[1] and (low.crop.x, low.crop.y) == (48, 16)
