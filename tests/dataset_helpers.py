"""Small datasets and a brute-force reference for the tests/test_dataset_*.py files.

Kept out of conftest.py so the dataset tests stay self-contained while the rest of the suite
changes around them.
"""
from __future__ import annotations

import io
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import skimage
import skimage.data
import torch
import torchvision
from PIL import Image
from torch import nn

from reportgen.errors import ReportError
from reportgen.forward.hooks import ConvHooks, record_name
from reportgen.inputs.images import load_image
from reportgen.inputs.preprocess import Preprocessing

#: Files that must be reported as skipped, each with a reason.
JUNK = ("junk/notes.png", "junk/empty.jpg", "junk/truncated.png", "junk/broken.jpg")
#: Files that must not be listed at all.
HIDDEN = (".hidden.png", "faces/.cache/face.png")


def _save(picture: np.ndarray, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(picture).save(path)


def _small(picture: np.ndarray, side: int) -> np.ndarray:
    image = Image.fromarray(picture)
    image.thumbnail((side, side), Image.Resampling.BILINEAR)
    return np.asarray(image)


def make_dataset(root: Path, faces: int = 24) -> Path:
    """skimage photos (crops, flips, scales) and LFW faces in nested folders, plus junk."""
    photos = {name: getattr(skimage.data, name)() for name in
              ("astronaut", "coffee", "chelsea", "rocket", "camera")}
    for name, picture in photos.items():
        _save(_small(picture, 96), root / "photos" / f"{name}.png")
        _save(np.ascontiguousarray(_small(picture, 80)[:, ::-1]), root / "photos" / "flipped" /
              f"{name}.png")
        height, width = picture.shape[:2]
        crop = picture[height // 4: 3 * height // 4, width // 4: 3 * width // 4]
        _save(_small(crop, 72), root / "photos" / "crops" / f"{name}.jpg")
    lfw = np.load(Path(os.path.dirname(skimage.__file__)) / "data" / "lfw_subset.npy")
    for index in range(faces):
        face = (lfw[index] * 255).round().astype(np.uint8)
        _save(face, root / "faces" / f"group{index % 3}" / f"face{index:03d}.png")
    junk = root / "junk"
    junk.mkdir()
    (junk / "notes.png").write_text("not an image\n")
    (junk / "empty.jpg").write_bytes(b"")
    whole = io.BytesIO()
    Image.fromarray(photos["coffee"][:64, :64]).save(whole, format="PNG")
    (junk / "truncated.png").write_bytes(whole.getvalue()[: len(whole.getvalue()) // 2])
    (junk / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0" + b"\x00garbage" * 40)
    _save(photos["camera"][:32, :32], root / HIDDEN[0])
    _save(photos["camera"][:32, :32], root / HIDDEN[1])
    return root


def random_resnet18(seed: int = 0, **kwargs: object) -> nn.Module:
    """torchvision's ResNet-18 with seeded random weights, in eval mode: the dataset tests'
    model (the same seed gives the same weights in every file)."""
    torch.manual_seed(seed)
    built: nn.Module = torchvision.models.get_model("resnet18", weights=None, **kwargs)
    return built.eval()


@dataclass
class Reference:
    """Per layer, (N, C) maxima and flat argmax positions, and the minima of the conv output
    and their flat argmin positions; ``ok[i]`` is False for junk."""

    scores: dict[str, torch.Tensor]
    positions: dict[str, torch.Tensor]
    ok: list[bool]
    troughs: dict[str, torch.Tensor]
    low_positions: dict[str, torch.Tensor]


def brute_force(model: nn.Module, paths: list[Path], preprocessing: Preprocessing,
                layers: list[str], rectify: bool = False) -> Reference:
    """Every image on its own, every map kept: what a top-k must agree with."""
    scores: dict[str, list[torch.Tensor]] = {}
    positions: dict[str, list[torch.Tensor]] = {}
    troughs: dict[str, list[torch.Tensor]] = {}
    low_positions: dict[str, list[torch.Tensor]] = {}
    ok = []
    calls: dict[str, int] = {}

    def keep(name: str, call: int, module: nn.Module, output: torch.Tensor) -> None:
        calls[name] = calls.get(name, 0) + 1
        shown = output.float().clamp_min(0) if rectify else output.float()
        flat = shown[0].flatten(1)
        recorded = record_name(name, calls[name])
        scores.setdefault(recorded, []).append(flat.max(dim=1).values)
        positions.setdefault(recorded, []).append(flat.argmax(dim=1))
        raw = output.float()[0].flatten(1)  # inhibition is read from the conv output itself
        troughs.setdefault(recorded, []).append(raw.min(dim=1).values)
        low_positions.setdefault(recorded, []).append(raw.argmin(dim=1))

    model.eval()
    with ConvHooks(model, keep, layers):
        for path in paths:
            try:
                batch = preprocessing(load_image(path).rgb)
            except ReportError:
                ok.append(False)
                continue
            ok.append(True)
            calls.clear()
            with torch.no_grad():
                model(batch.contiguous(memory_format=torch.channels_last))
    return Reference(*({k: torch.stack(v) for k, v in found.items()}
                       for found in (scores, positions)), ok,
                     *({k: torch.stack(v) for k, v in found.items()}
                       for found in (troughs, low_positions)))


def expected_top(reference: Reference, layer: str, channel: int,
                 k: int) -> list[tuple[int, float, int]]:
    """(image index, score, flat position) best first; ties to the lower image index; none
    when every image peaks at the same value (nothing ranks above anything)."""
    decoded = [index for index, ok in enumerate(reference.ok) if ok]
    scores = reference.scores[layer][:, channel].tolist()
    where = reference.positions[layer][:, channel].tolist()
    if len(decoded) > 1 and len(set(scores)) == 1:
        return []
    ranked = sorted(range(len(decoded)), key=lambda row: (-scores[row], decoded[row]))[:k]
    return [(decoded[row], scores[row], where[row]) for row in ranked]


def expected_bottom(reference: Reference, layer: str, channel: int,
                    k: int) -> list[tuple[int, float, int]]:
    """(image index, minimum, flat position) of the k most inhibiting images, lowest first,
    among those whose map goes below zero; ties to the lower image index."""
    decoded = [index for index, ok in enumerate(reference.ok) if ok]
    lows = reference.troughs[layer][:, channel].tolist()
    where = reference.low_positions[layer][:, channel].tolist()
    below = [row for row in range(len(decoded)) if lows[row] < 0]
    ranked = sorted(below, key=lambda row: (lows[row], decoded[row]))[:k]
    return [(decoded[row], lows[row], where[row]) for row in ranked]


@pytest.fixture(autouse=True, scope="module")
def one_torch_thread() -> Iterator[None]:
    """One intra-op thread: on 2 shared cores, OpenMP's spinning threads made a batch-of-one
    ResNet-18 forward 18x slower (0.25 s against 0.014 s) whenever other work was running."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
