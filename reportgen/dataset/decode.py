"""Decode and preprocess the dataset's images in DataLoader worker processes.

Decoding JPEGs and resizing them costs as much CPU as a small model's forward pass, so it runs
in ``workers`` processes beside the model. Each file goes through exactly what ``--image``
does (:func:`reportgen.inputs.images.load_image`, then the report's :class:`Preprocessing`), so a
channel's top images look to the model as they would in a single-image report. A file that
does not decode is not fatal in a folder of thousands: it comes back as a :class:`Skipped`
with the one-line reason the single-image report would have printed.
"""
from __future__ import annotations

import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch.utils.data import DataLoader, Dataset

from reportgen.dataset.files import DatasetFiles
from reportgen.dataset.remote import read_location
from reportgen.errors import ReportError
from reportgen.inputs.images import load_image_bytes
from reportgen.inputs.preprocess import Preprocessing


@dataclass(frozen=True)
class Skipped:
    """A file that could not be used, and why (the same sentence ``--image`` would print)."""

    index: int
    path: str
    reason: str


@dataclass(frozen=True)
class Decoded:
    """One dataset item: a (3, H, W) tensor, or ``None`` with the reason it was skipped."""

    index: int
    tensor: torch.Tensor | None
    reason: str = ""


@dataclass(frozen=True)
class Batch:
    """The decoded images of consecutive dataset indices, and the ones that failed.

    ``indices[i]`` is the global index (position in :class:`DatasetFiles`) of ``images[i]``;
    ``count`` is how many files the batch accounts for, decoded or skipped, so a run knows
    which files are done even when a whole batch was junk.
    """

    indices: torch.Tensor  # (n,) int64
    images: torch.Tensor  # (n, 3, H, W) float32, n may be 0
    skipped: tuple[Skipped, ...]
    count: int


class ImageDataset(Dataset[Decoded]):
    """``dataset[i]`` is the file at ``indices[i]``, decoded and preprocessed (picklable)."""

    def __init__(self, files: DatasetFiles, preprocessing: Preprocessing,
                 indices: Sequence[int] | None = None) -> None:
        self.files = files
        self.preprocessing = preprocessing
        self.indices = list(range(len(files)) if indices is None else indices)

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, position: int) -> Decoded:
        index = self.indices[position]
        return decode_file(index, self.files.location(index), self.preprocessing)


def decode_file(index: int, location: str, preprocessing: Preprocessing) -> Decoded:
    """One file (a local path or a URL) as the model sees it, or why it cannot be used (every
    engine decodes here, so a skipped file gets the same reason whichever engine ran)."""
    try:
        data, shown = read_location(location)
    except ReportError as error:
        return Decoded(index, None, error.message)
    return decode_bytes(index, data, shown, preprocessing)


def decode_bytes(index: int, data: bytes, shown: str, preprocessing: Preprocessing) -> Decoded:
    """:func:`decode_file` for a file already read (``shown`` names it in the reason)."""
    try:
        tensor = preprocessing(load_image_bytes(data, shown).rgb)[0]
    except ReportError as error:
        return Decoded(index, None, error.message)
    return Decoded(index, tensor)


def collate(items: list[Decoded]) -> tuple[list[Decoded], torch.Tensor | None]:
    """Stack in the worker, so only one tensor per batch crosses the process boundary."""
    tensors = [item.tensor for item in items if item.tensor is not None]
    stacked = torch.stack(tensors) if tensors else None
    return [Decoded(item.index, None, item.reason) for item in items], stacked


def quiet_loader(dataset: Dataset[Any], **settings: Any) -> Iterator[Any]:
    """Iterate a DataLoader without torch's warning that its workers outnumber the CPUs
    (shown twice, in logs too, with the default --workers 2 on one CPU): extra workers cost
    little, and they help a dataset read over the network."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="This DataLoader will create",
                                category=UserWarning)
        iterator = iter(DataLoader(dataset, **settings))
    yield from iterator


def batches(files: DatasetFiles, preprocessing: Preprocessing, indices: Sequence[int], *,
            batch_size: int, workers: int) -> Iterator[Batch]:
    """Batches in index order, whatever the number of workers (the DataLoader keeps order)."""
    if batch_size < 1:
        raise ReportError(f"--batch-size must be at least 1, not {batch_size}.")
    if workers < 0:
        raise ReportError(f"--workers must be 0 or more, not {workers}.")
    dataset = ImageDataset(files, preprocessing, indices)
    size = preprocessing.crop
    for items, stacked in quiet_loader(dataset, batch_size=batch_size, shuffle=False,
                                       num_workers=workers, collate_fn=collate,
                                       prefetch_factor=2 if workers else None):
        decoded = [item.index for item in items if not item.reason]
        skipped = tuple(Skipped(item.index, files.paths[item.index], item.reason)
                        for item in items if item.reason)
        images = stacked if stacked is not None else torch.empty(0, 3, size, size)
        yield Batch(torch.tensor(decoded, dtype=torch.int64), images, skipped,
                    len(items))
