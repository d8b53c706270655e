"""Cut each top example's receptive field out of its image and pack the crops in sprite sheets.

Only the winning images are decoded again (a top-k run keeps scores and positions, never
pixels). A crop is cut from the *preprocessed* image, the picture the model saw
(:meth:`Preprocessing.to_picture`), so it lines up with the map position exactly.

What a crop shows: the position's receptive field, as a square, at the same scale for every
crop of a layer and with the peak's cell at its centre. Where the field reaches past the image
border, the square is filled with the normalisation mean colour, which is what the model's
zero padding looks like in picture space. A field larger than the image (deep layers) is cut
down to an image-sized square that holds the field's in-image part, as centred on the field
as that allows, so deep layers show the whole image rather than a small picture in a wide
frame. The square is resized to ``crop_size`` pixels (box filter down, nearest neighbour up,
so small fields stay sharp pixels). The map cell itself (the stride-sized patch at the
field's centre, see :meth:`ReceptiveField.cell`) is outlined by a 1-pixel yellow frame drawn
just outside it, so the strongest area is marked without covering it.

MobileNetV2 has 17,056 channels: at k = 9 that is 153,504 crops, which cannot be separate
files. A sheet holds ``SHEET_CHANNELS`` channels of a layer, one row per channel and one
column per rank; each example records its sheet and rectangle. Sheets are filled in chunks
that fit ``memory_budget`` bytes, and each chunk decodes only the images it needs.
"""
from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from reportgen.dataset.decode import batches
from reportgen.dataset.mine import MineResult
from reportgen.dataset.receptive import Box, ReceptiveField
from reportgen.forward.recorder import slugify
from reportgen.pictures.pngio import IMAGE_DIR, PngWriter

log = logging.getLogger(__name__)
DEFAULT_CROP = 64
SHEET_CHANNELS = 64
CROP_DIR = f"{IMAGE_DIR}/dataset"
DEFAULT_MEMORY_BUDGET = 256 * 2 ** 20
OUTLINE = (255, 221, 0)
BACKGROUND = 32
#: Crops of one layer in one picture cut together (one resize serves them all).
CUT_AT_ONCE = 4096


@dataclass(frozen=True)
class CropRef:
    """Where an example's crop is: a site-relative sprite sheet and a rectangle in it."""

    src: str
    x: int
    y: int
    width: int
    height: int


@dataclass(frozen=True)
class CroppedExample:
    """One top example as the report will show it."""

    image: str  # dataset-relative path
    score: float
    y: int
    x: int
    crop: CropRef

    def to_json(self) -> dict[str, Any]:
        return {"image": self.image, "score": self.score, "y": self.y, "x": self.x,
                "crop": {"src": self.crop.src, "x": self.crop.x, "y": self.crop.y,
                         "width": self.crop.width, "height": self.crop.height}}


@dataclass
class LayerCrops:
    """A layer's examples per channel (best first) and the sheets that hold their crops."""

    name: str
    receptive_field: ReceptiveField
    sheets: list[str] = field(default_factory=list)
    examples: list[list[CroppedExample]] = field(default_factory=list)
    #: Each sheet's (width, height) in pixels: k columns wide even where a channel has fewer
    #: than k examples (a dataset smaller than k), so pages cannot tell it from the crops.
    sheet_sizes: dict[str, tuple[int, int]] = field(default_factory=dict)


@dataclass
class _Sheet:
    path: str
    rows: int
    columns: int
    pixels: np.ndarray | None = None


@dataclass
class _Slot:
    sheet: int
    image: int
    y: int
    x: int
    left: int
    top: int
    field: ReceptiveField


def write_crops(result: MineResult, fields: dict[str, ReceptiveField], site: Path, *,
                crop_size: int = DEFAULT_CROP, batch_size: int = 16, workers: int = 0,
                memory_budget: int = DEFAULT_MEMORY_BUDGET,
                writer: PngWriter | None = None) -> dict[str, LayerCrops]:
    """Write the sprite sheets under ``site/img/dataset/`` and describe every example.

    ``fields`` comes from :func:`reportgen.dataset.receptive.receptive_fields`; a layer
    without a field is left out. PNGs go through ``writer`` when given (the caller closes
    it), else through a writer of our own that is closed before returning.
    """
    (site / CROP_DIR).mkdir(parents=True, exist_ok=True)
    layers, sheets, slots = _plan(result, fields, crop_size)
    if writer is not None:
        _write(result, sheets, slots, site, crop_size, batch_size, workers, memory_budget,
               writer)
    else:
        with PngWriter() as own:
            _write(result, sheets, slots, site, crop_size, batch_size, workers,
                   memory_budget, own)
    return layers


def _write(result: MineResult, sheets: list[_Sheet], slots: list[_Slot], site: Path,
           crop_size: int, batch_size: int, workers: int, memory_budget: int,
           writer: PngWriter) -> None:
    for numbers, chunk in _chunks(sheets, slots, crop_size, memory_budget):
        _fill(result, numbers, chunk, sheets, slots, crop_size, batch_size, workers)
        for number in numbers:
            sheet = sheets[number]
            assert sheet.pixels is not None
            writer.submit(sheet.pixels, site / sheet.path)
            sheet.pixels = None


def _plan(result: MineResult, fields: dict[str, ReceptiveField],
          crop_size: int) -> tuple[dict[str, LayerCrops], list[_Sheet], list[_Slot]]:
    """Give every example a sheet and a cell, before any image is decoded."""
    layers: dict[str, LayerCrops] = {}
    sheets: list[_Sheet] = []
    slots: list[_Slot] = []
    taken: set[str] = set()
    for name, state in result.layers.items():
        if name not in fields:
            continue
        slug = slugify(name, taken)
        crops = layers[name] = LayerCrops(name, fields[name])
        examples = state.all_examples()
        for channel in range(state.channels):
            row = channel % SHEET_CHANNELS
            if row == 0:
                rows = min(SHEET_CHANNELS, state.channels - channel)
                sheets.append(_Sheet(f"{CROP_DIR}/{slug}-{len(crops.sheets):03d}.png", rows,
                                     state.top.k))
                crops.sheets.append(sheets[-1].path)
                crops.sheet_sizes[sheets[-1].path] = (state.top.k * crop_size, rows * crop_size)
            found = []
            for rank, example in enumerate(examples[channel]):
                left, top = rank * crop_size, row * crop_size
                slots.append(_Slot(len(sheets) - 1, example.image, example.y, example.x,
                                   left, top, fields[name]))
                found.append(CroppedExample(
                    result.files.paths[example.image], example.score, example.y, example.x,
                    CropRef(sheets[-1].path, left, top, crop_size, crop_size)))
            crops.examples.append(found)
    return layers, sheets, slots


def _chunks(sheets: list[_Sheet], slots: list[_Slot], crop_size: int,
            budget: int) -> Iterator[tuple[list[int], list[int]]]:
    """(sheet numbers, slot numbers): runs of whole sheets whose pixels fit the budget."""
    by_sheet: dict[int, list[int]] = {}
    for number, slot in enumerate(slots):
        by_sheet.setdefault(slot.sheet, []).append(number)
    chunk: list[int] = []
    used = 0
    for number, sheet in enumerate(sheets):
        size = sheet.rows * sheet.columns * crop_size * crop_size * 3
        if chunk and used + size > budget:
            yield chunk, [slot for sheet_number in chunk for slot in by_sheet.get(sheet_number, [])]
            chunk, used = [], 0
        chunk.append(number)
        used += size
    if chunk:
        yield chunk, [slot for sheet_number in chunk for slot in by_sheet.get(sheet_number, [])]


def _fill(result: MineResult, numbers: list[int], chunk: list[int], sheets: list[_Sheet],
          slots: list[_Slot], crop_size: int, batch_size: int, workers: int) -> None:
    for number in numbers:
        sheet = sheets[number]
        sheet.pixels = np.full((sheet.rows * crop_size, sheet.columns * crop_size, 3),
                               BACKGROUND, dtype=np.uint8)
    wanted: dict[int, list[_Slot]] = {}
    for i in chunk:
        wanted.setdefault(slots[i].image, []).append(slots[i])
    if not wanted:
        return
    preprocessing = result.preprocessing
    fill = tuple(int(round(255 * value)) for value in preprocessing.mean)
    for batch in batches(result.files, preprocessing, sorted(wanted), batch_size=batch_size,
                         workers=workers):
        for item in batch.skipped:
            log.warning("Image %s no longer decodes (%s); its crops stay blank.", item.path,
                        item.reason)
        for index, image in zip(batch.indices.tolist(), batch.images, strict=False):
            picture = preprocessing.to_picture(image[None])
            by_field: dict[ReceptiveField, list[_Slot]] = {}
            for slot in wanted[index]:
                by_field.setdefault(slot.field, []).append(slot)
            for field_slots in by_field.values():
                for start in range(0, len(field_slots), CUT_AT_ONCE):
                    group = field_slots[start:start + CUT_AT_ONCE]
                    crops = cut_crops(picture, group[0].field,
                                      [(slot.y, slot.x) for slot in group], crop_size, fill)
                    for slot, crop in zip(group, crops, strict=True):
                        pixels = sheets[slot.sheet].pixels
                        assert pixels is not None
                        pixels[slot.top:slot.top + crop_size,
                               slot.left:slot.left + crop_size] = crop


def crop_window(field: ReceptiveField, y: int, x: int, height: int, width: int) -> Box:
    """The square a crop shows, in image coordinates (it may reach past the border)."""
    box = field.box(y, x)
    inside = box.clipped(height, width)
    side = max(min(box.height, box.width, max(height, width)), inside.height, inside.width, 1)
    top = _place(box.top, box.height, inside.top, inside.bottom, side)
    left = _place(box.left, box.width, inside.left, inside.right, side)
    return Box(top, left, top + side, left + side)


def _place(start: int, extent: int, low: int, high: int, side: int) -> int:
    """Centred on the field, but covering all of its in-image part [low, high)."""
    centred = start + (extent - side) // 2
    return min(max(centred, high - side), low)


def cut_crop(picture: np.ndarray, field: ReceptiveField, y: int, x: int, crop_size: int,
             fill: tuple[int, ...] = (124, 116, 104)) -> np.ndarray:
    """The (crop_size, crop_size, 3) uint8 crop of map position (y, x), cell outlined."""
    height, width = picture.shape[:2]
    window = crop_window(field, y, x, height, width)
    side = window.height
    canvas = np.empty((side, side, 3), dtype=np.uint8)
    canvas[:] = np.array(fill, dtype=np.uint8)
    inside = window.clipped(height, width)
    canvas[inside.top - window.top:inside.bottom - window.top,
           inside.left - window.left:inside.right - window.left] = \
        picture[inside.top:inside.bottom, inside.left:inside.right]
    resample = Image.Resampling.BOX if side >= crop_size else Image.Resampling.NEAREST
    crop = np.asarray(Image.fromarray(canvas).resize((crop_size, crop_size), resample)).copy()
    _frame_cell(crop, field, window, y, x, crop_size / side)
    return crop


def cut_crops(picture: np.ndarray, field: ReceptiveField, positions: list[tuple[int, int]],
              crop_size: int, fill: tuple[int, ...] = (124, 116, 104)) -> np.ndarray:
    """:func:`cut_crop` for many positions of one layer in one picture, at once.

    All windows of one layer have the same side, so the picture is padded with ``fill`` and
    resized to the crops' scale once, and every crop is a slice of that: 119,088 crops of
    MobileNetV2 (27 layers, 39 images) took 77 s one by one, most of it a canvas and a resize
    per crop, although deep layers' windows are mostly the same whole picture. Slices start
    at the nearest whole pixel of the resized picture (under half a crop pixel off).
    """
    height, width = picture.shape[:2]
    windows = [crop_window(field, y, x, height, width) for y, x in positions]
    sides = {window.height for window in windows}
    if len(sides) > 1:  # a non-square field clipped differently: crop by crop
        return np.stack([cut_crop(picture, field, y, x, crop_size, fill) for y, x in positions])
    side = sides.pop()
    padded = np.empty((height + 2 * side, width + 2 * side, 3), dtype=np.uint8)
    padded[:] = np.array(fill, dtype=np.uint8)
    padded[side:side + height, side:side + width] = picture
    scale = crop_size / side
    resample = Image.Resampling.BOX if side >= crop_size else Image.Resampling.NEAREST
    size = (max(crop_size, round(padded.shape[1] * scale)),
            max(crop_size, round(padded.shape[0] * scale)))
    resized = np.asarray(Image.fromarray(padded).resize(size, resample))
    out = np.empty((len(windows), crop_size, crop_size, 3), dtype=np.uint8)
    for number, (window, (y, x)) in enumerate(zip(windows, positions, strict=True)):
        top = min(round((window.top + side) * scale), size[1] - crop_size)
        left = min(round((window.left + side) * scale), size[0] - crop_size)
        crop = out[number]
        crop[:] = resized[top:top + crop_size, left:left + crop_size]
        _frame_cell(crop, field, window, y, x, scale)
    return out


def _frame_cell(crop: np.ndarray, field: ReceptiveField, window: Box, y: int, x: int,
                scale: float) -> None:
    """Frame the peak's own cell (its stride-sized patch) just outside it, in crop pixels."""
    cell = field.cell(y, x)
    _outline(crop, int(np.floor((cell.top - window.top) * scale)) - 1,
             int(np.floor((cell.left - window.left) * scale)) - 1,
             int(np.ceil((cell.bottom - window.top) * scale)),
             int(np.ceil((cell.right - window.left) * scale)))


def _outline(crop: np.ndarray, top: int, left: int, bottom: int, right: int) -> None:
    """A 1-pixel frame on rows top/bottom and columns left/right, clipped to the crop."""
    size = crop.shape[0]
    colour = np.array(OUTLINE, dtype=np.uint8)
    rows = slice(max(top, 0), min(bottom, size - 1) + 1)
    columns = slice(max(left, 0), min(right, size - 1) + 1)
    for row in (top, bottom):
        if 0 <= row < size:
            crop[row, columns] = colour
    for column in (left, right):
        if 0 <= column < size:
            crop[rows, column] = colour
