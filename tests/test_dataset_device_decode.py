"""Decoding on the model's device (nvJPEG with --device cuda) gives the CPU path's inputs.

CI has no GPU, so these run the same code with ``device="cpu"``: torchvision's batched
``decode_jpeg`` (libjpeg-turbo there, as in Pillow), the EXIF turns, the tensor resize and the
fall-backs. What only a GPU changes (nvJPEG's pixels) is documented in
reportgen/dataset/devicedecode.py.
"""
from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
import skimage.data
import torch
from PIL import Image, ImageOps
from torchvision.io import ImageReadMode, decode_jpeg

from dataset_helpers import make_dataset, one_torch_thread, random_resnet18  # noqa: F401
from reportgen.dataset.decode import Batch, batches
from reportgen.dataset.devicedecode import (
    chosen_decode,
    device_batches,
    device_orientation,
    oriented,
)
from reportgen.dataset.files import DatasetFiles, list_dataset
from reportgen.dataset.mine import MineOptions, mine
from reportgen.errors import ReportError
from reportgen.inputs.preprocess import Preprocessing
from reportgen.options import BuildOptions

CPU = torch.device("cpu")
PRESETS = (Preprocessing(256, 224), Preprocessing(64, 64), Preprocessing(96, 96, pad=True))


def _jpeg(picture: Image.Image, **options: object) -> bytes:
    out = io.BytesIO()
    picture.save(out, format="JPEG", **options)
    return out.getvalue()


def _with_orientation(picture: Image.Image, orientation: int) -> bytes:
    exif = Image.Exif()
    exif[0x0112] = orientation
    return _jpeg(picture, quality=95, exif=exif.tobytes())


@pytest.fixture(scope="module")
def jpeg_folder(tmp_path_factory: pytest.TempPathFactory) -> DatasetFiles:
    """JPEGs of every kind the device takes, and of every kind it hands back to the CPU."""
    root = tmp_path_factory.mktemp("jpegs")
    photo = Image.fromarray(skimage.data.astronaut()).resize((120, 90))
    (root / "baseline.jpg").write_bytes(_jpeg(photo, quality=90))
    (root / "progressive.jpg").write_bytes(_jpeg(photo, progressive=True))
    (root / "grey.jpg").write_bytes(_jpeg(Image.fromarray(skimage.data.camera()).resize((80, 100))))
    (root / "cmyk.jpg").write_bytes(_jpeg(photo.convert("CMYK")))
    (root / "wide.jpg").write_bytes(_jpeg(photo.resize((4200, 12))))  # > MAX_SIDE: CPU path
    for orientation in range(1, 9):
        (root / "turned" / f"o{orientation}.jpg").parent.mkdir(exist_ok=True)
        (root / "turned" / f"o{orientation}.jpg").write_bytes(
            _with_orientation(photo, orientation))
    (root / "photo.png").write_bytes(b"")  # empty
    photo.save(root / "real.png")
    whole = _jpeg(photo)
    (root / "truncated.jpg").write_bytes(whole[: len(whole) // 2])  # header fine, data cut
    (root / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0" + b"\x00garbage" * 40)
    (root / "notes.jpg").write_text("not an image\n")
    return list_dataset(root)


@pytest.mark.parametrize("orientation", range(1, 9))
def test_exif_turns_match_pillow(orientation: int) -> None:
    photo = Image.fromarray(skimage.data.chelsea()).resize((60, 40))
    data = _with_orientation(photo, orientation)
    assert device_orientation(data) == orientation
    with Image.open(io.BytesIO(data)) as opened:
        expected = np.asarray(ImageOps.exif_transpose(opened).convert("RGB"))
    decoded = decode_jpeg(torch.frombuffer(bytearray(data), dtype=torch.uint8),
                          mode=ImageReadMode.RGB)
    got = oriented(decoded, orientation).permute(1, 2, 0).numpy()
    assert got.shape == expected.shape
    assert np.array_equal(got, expected)


def test_only_plain_jpegs_go_to_the_device(jpeg_folder: DatasetFiles) -> None:
    taken = {path for index, path in enumerate(jpeg_folder.paths)
             if device_orientation(jpeg_folder.path(index).read_bytes()) is not None}
    assert taken == {"baseline.jpg", "progressive.jpg", "grey.jpg", "truncated.jpg",
                     *(f"turned/o{o}.jpg" for o in range(1, 9))}


def _all(found: list[Batch]) -> tuple[list[int], torch.Tensor, list[tuple[int, str, str]]]:
    indices = [i for batch in found for i in batch.indices.tolist()]
    images = torch.cat([batch.images for batch in found])
    skipped = [(s.index, s.path, s.reason) for batch in found for s in batch.skipped]
    return indices, images, skipped


@pytest.mark.parametrize("preprocessing", PRESETS, ids=["crop224", "crop64", "pad96"])
@pytest.mark.parametrize("workers", [0, 2])
def test_device_batches_equal_the_worker_path(jpeg_folder: DatasetFiles,
                                              preprocessing: Preprocessing,
                                              workers: int) -> None:
    order = range(len(jpeg_folder))
    cpu = list(batches(jpeg_folder, preprocessing, order, batch_size=5, workers=0))
    device = list(device_batches(jpeg_folder, preprocessing, order, batch_size=5,
                                 workers=workers, device=CPU))
    assert [b.count for b in device] == [b.count for b in cpu]
    cpu_indices, cpu_images, cpu_skipped = _all(cpu)
    indices, images, skipped = _all(device)
    assert indices == cpu_indices
    # Same files skipped, with the same one-line reasons (the truncated JPEG the decoder
    # refuses falls back to the CPU path, which says why).
    assert skipped == cpu_skipped
    assert {path for _, path, _ in skipped} == {"photo.png", "truncated.jpg", "broken.jpg",
                                                "notes.jpg"}
    # Pixels: the decode is libjpeg-turbo's both ways on the CPU; the resize is torchvision's
    # tensor resize instead of Pillow's, within one grey level.
    std = torch.tensor(preprocessing.std).view(1, -1, 1, 1)
    grey_levels = ((images - cpu_images) * std * 255).abs()
    assert float(grey_levels.max()) <= 1.01
    assert float(grey_levels.mean()) < 0.25


def test_a_mined_run_finds_the_same_examples(tmp_path: Path) -> None:
    root = make_dataset(tmp_path / "data", faces=6)
    for png in sorted((root / "photos").glob("*.png")):  # more JPEGs for the device
        Image.open(png).convert("RGB").save(png.with_suffix(".jpg"), quality=92)
    files = list_dataset(root)
    model = random_resnet18()
    options = MineOptions(("conv1", "layer2.0.conv1"), k=3)
    preprocessing = Preprocessing(64, 64)
    by_cpu = mine(model, files, preprocessing, options, batch_size=4, progress=False)
    by_device = mine(model, files, preprocessing, options, batch_size=4, progress=False,
                     decode="device", device="cpu")
    assert by_device.skipped == by_cpu.skipped and by_device.decoded == by_cpu.decoded
    for name, state in by_cpu.layers.items():
        other = by_device.layers[name]
        same_best = sum(state.examples(c)[0].image == other.examples(c)[0].image
                        for c in range(state.channels))
        assert same_best >= 0.9 * state.channels
        assert torch.allclose(state.stats.mean, other.stats.mean, rtol=0.02, atol=1e-3)


def test_auto_decodes_on_the_device_only_with_a_gpu() -> None:
    assert chosen_decode("auto", torch.device("cpu")) == "cpu"
    assert chosen_decode("auto", torch.device("cuda")) == "device"
    assert chosen_decode("device", torch.device("cpu")) == "device"
    with pytest.raises(ReportError, match="Unknown decode"):
        chosen_decode("gpu", CPU)


def test_decode_device_is_refused_on_ray() -> None:
    with pytest.raises(ReportError, match="--decode device works with --engine local"):
        BuildOptions(dataset="images", engine="ray", decode="device")
    with pytest.raises(ReportError, match="Unknown decode"):
        BuildOptions(decode="gpu")
