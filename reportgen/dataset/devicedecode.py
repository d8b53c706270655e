"""Decode the dataset's JPEGs where the model runs, many at a time (nvJPEG on a GPU).

With the model on a GPU, decoding in CPU processes is what limits a dataset pass: one core
decodes and preprocesses about 135 JPEGs a second (README, "Scaling out"), so feeding 2,000
images a second would take 15 cores. Here the DataLoader workers only read each file and look
at its header (Pillow reads no pixels for that); the JPEGs that the batched decoder takes as
``--image`` would (baseline or progressive, RGB or grey, at most ``MAX_SIDE`` pixels a side,
not a multi-picture file) go to :func:`torchvision.io.decode_jpeg` as one list on the
model's device, are turned by their EXIF orientation, and are resized, cropped and normalised
there by :meth:`Preprocessing.of_tensor`. Every other file (PNG, CMYK, huge, damaged) is
decoded in the worker exactly as the CPU path does, so a mixed folder works and a skipped
file gets the same reason. A batch the decoder refuses is decoded image by image, and an image
it refuses alone goes through the CPU path for its reason.

What differs from the CPU path: nvJPEG's inverse DCT and chroma upsampling are not
libjpeg-turbo's (on the CPU ``decode_jpeg`` gives Pillow's pixels exactly) and torchvision's
tensor resize is not Pillow's: inputs differ by a grey level or two, so scores can differ in
their last digits and near-ties can swap. The choice is part of a run's resume fingerprint.
"""
from __future__ import annotations

import io
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import torch
from PIL import ExifTags, Image
from torch.utils.data import Dataset

from reportgen.dataset.decode import Batch, Decoded, Skipped, decode_bytes, quiet_loader
from reportgen.dataset.files import DatasetFiles
from reportgen.dataset.remote import read_location
from reportgen.errors import ReportError
from reportgen.inputs.images import MAX_SIDE
from reportgen.inputs.preprocess import Preprocessing
from reportgen.options import DECODES

_JPEG_START = b"\xff\xd8"


def chosen_decode(decode: str, device: torch.device) -> str:
    """``auto`` (see :data:`reportgen.options.DECODES`) means the model's device on a GPU,
    where decoding in CPU processes is the bottleneck, else the worker processes."""
    if decode not in DECODES:
        raise ReportError(f"Unknown decode '{decode}'; use {', '.join(DECODES)}.")
    if decode == "auto":
        return "device" if device.type == "cuda" else "cpu"
    return decode


@dataclass(frozen=True)
class Encoded:
    """A file as a worker hands it over: JPEG bytes to decode on the device, or already
    decoded (or skipped) by the CPU path."""

    index: int
    data: torch.Tensor | None = None  # uint8 file bytes
    orientation: int = 1  # EXIF orientation, 1-8
    decoded: Decoded | None = None
    shown: str = ""  # the file's name in a skip reason


def device_orientation(data: bytes) -> int | None:
    """The EXIF orientation of a JPEG that the batched decoder takes as ``--image`` would, or
    ``None`` for a file the CPU path must decode (not a JPEG, CMYK, multi-picture, too large,
    or a header Pillow refuses)."""
    if not data.startswith(_JPEG_START):
        return None
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data)) as opened:
                if (opened.format != "JPEG" or opened.mode not in ("RGB", "L")
                        or max(opened.size) > MAX_SIDE):
                    return None
                orientation = opened.getexif().get(ExifTags.Base.Orientation, 1)
    except Exception:  # noqa: BLE001 - any header trouble: the CPU path says what it is
        return None
    return int(orientation) if orientation in range(2, 9) else 1


def read_encoded(index: int, location: str, preprocessing: Preprocessing) -> Encoded:
    """What a worker does for one file: read it, and decode it only when the device cannot."""
    try:
        data, shown = read_location(location)
    except ReportError as error:
        return Encoded(index, decoded=Decoded(index, None, error.message))
    orientation = device_orientation(data)
    if orientation is None:
        return Encoded(index, decoded=decode_bytes(index, data, shown, preprocessing))
    return Encoded(index, torch.frombuffer(bytearray(data), dtype=torch.uint8), orientation,
                   shown=shown)


class EncodedDataset(Dataset[Encoded]):
    """``dataset[i]`` is the file at ``indices[i]``, read (and decoded only if it must be)."""

    def __init__(self, files: DatasetFiles, preprocessing: Preprocessing,
                 indices: Sequence[int]) -> None:
        self.files = files
        self.preprocessing = preprocessing
        self.indices = list(indices)

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, position: int) -> Encoded:
        index = self.indices[position]
        return read_encoded(index, self.files.location(index), self.preprocessing)


def oriented(picture: torch.Tensor, orientation: int) -> torch.Tensor:
    """``picture`` (C, H, W) turned as Pillow's ``ImageOps.exif_transpose`` turns it."""
    if orientation == 2:
        return picture.flip(-1)
    if orientation == 3:
        return picture.flip(-1, -2)
    if orientation == 4:
        return picture.flip(-2)
    if orientation == 5:
        return picture.transpose(-1, -2)
    if orientation == 6:
        return picture.rot90(-1, dims=(-2, -1))
    if orientation == 7:
        return picture.transpose(-1, -2).flip(-1, -2)
    if orientation == 8:
        return picture.rot90(1, dims=(-2, -1))
    return picture


def decode_jpegs(items: list[Encoded], device: torch.device) -> list[torch.Tensor | None]:
    """uint8 (3, H, W) pictures on ``device``, oriented; ``None`` where the decoder refused."""
    from torchvision.io import ImageReadMode, decode_jpeg

    data = [item.data for item in items if item.data is not None]
    if len(data) != len(items):
        raise ValueError("decode_jpegs takes items that carry JPEG bytes")
    if not items:
        return []
    # torchvision 0.29 deprecates its image decoders for TorchCodec's; decode_jpeg is what the
    # pinned torchvision has, and moving is a change to this function only.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        try:
            pictures: list[torch.Tensor | None] = list(
                decode_jpeg(data, mode=ImageReadMode.RGB, device=device))
        except RuntimeError:  # one bad file fails the whole list: find it
            pictures = []
            for one in data:
                try:
                    pictures.append(decode_jpeg(one, mode=ImageReadMode.RGB, device=device))
                except RuntimeError:
                    pictures.append(None)
    return [None if picture is None else oriented(picture, item.orientation)
            for picture, item in zip(pictures, items, strict=True)]


def device_batches(files: DatasetFiles, preprocessing: Preprocessing, indices: Sequence[int],
                   *, batch_size: int, workers: int,
                   device: torch.device) -> Iterator[Batch]:
    """:func:`reportgen.dataset.decode.batches` with the JPEGs decoded on ``device``: batches
    in index order whose ``images`` live on ``device``."""
    if batch_size < 1:
        raise ReportError(f"--batch-size must be at least 1, not {batch_size}.")
    if workers < 0:
        raise ReportError(f"--workers must be 0 or more, not {workers}.")
    size = preprocessing.crop
    for items in quiet_loader(EncodedDataset(files, preprocessing, indices),
                              batch_size=batch_size, shuffle=False, num_workers=workers,
                              collate_fn=list, prefetch_factor=2 if workers else None):
        jpegs = [item for item in items if item.data is not None]
        pictures = dict(zip((item.index for item in jpegs), decode_jpegs(jpegs, device),
                            strict=True))
        indices_done: list[int] = []
        images: list[torch.Tensor] = []
        skipped: list[Skipped] = []
        for item in items:
            tensor = _model_input(item, pictures.get(item.index), files, preprocessing)
            if isinstance(tensor, str):
                skipped.append(Skipped(item.index, files.paths[item.index], tensor))
                continue
            indices_done.append(item.index)
            images.append(tensor.to(device))
        stacked = (torch.stack(images) if images else
                   torch.empty(0, preprocessing.channels, size, size, device=device))
        yield Batch(torch.tensor(indices_done, dtype=torch.int64), stacked, tuple(skipped),
                    len(items))


def _model_input(item: Encoded, picture: torch.Tensor | None, files: DatasetFiles,
                 preprocessing: Preprocessing) -> torch.Tensor | str:
    """The (C, crop, crop) input of one file, or why it is skipped."""
    if item.decoded is not None:
        return item.decoded.tensor if item.decoded.tensor is not None else item.decoded.reason
    if picture is not None:
        return preprocessing.of_tensor(picture)[0]
    # The device refused what Pillow's header accepted: the CPU path decodes the bytes the
    # worker read (no second read, no second fetch of a URL) or says why.
    assert item.data is not None
    fallback = decode_bytes(item.index, item.data.numpy().tobytes(), item.shown, preprocessing)
    return fallback.tensor if fallback.tensor is not None else fallback.reason
