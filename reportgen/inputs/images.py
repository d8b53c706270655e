"""Turn whatever the user points at into one RGB picture, and remember where it came from.

Users hand us photos from phones (EXIF-rotated), scans (16-bit, CMYK), screenshots (RGBA,
palette) and numpy arrays from notebooks. All of them must reach the model as the RGB
picture a person would see, so the report shows what the model really looked at.
"""
from __future__ import annotations

import hashlib
import importlib.util
import io
import os
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from reportgen.errors import ReportError

#: skimage samples that ship inside the package (no download), 2-D grey or colour.
SKIMAGE_SAMPLES = (
    "astronaut", "brick", "camera", "cat", "cell", "checkerboard", "chelsea", "clock",
    "coffee", "coins", "colorwheel", "grass", "gravel", "horse", "hubble_deep_field",
    "immunohistochemistry", "logo", "microaneurysms", "moon", "page", "retina", "rocket",
    "shepp_logan_phantom", "text",
)
#: Samples that skimage reads unchanged from a PNG inside its package. Pillow opens that file
#: to the same pixels without importing skimage.io (and SciPy with it): 0.2 s of a ~1.5 s
#: MobileNetV2 report. tests/test_perf_behaviour.py checks the pixels against skimage.data.
PACKAGED_SAMPLE_FILES = {"astronaut": "astronaut.png", "camera": "camera.png",
                         "cat": "chelsea.png", "chelsea": "chelsea.png", "coffee": "coffee.png"}
#: Longest side we keep; larger (legal) images are downscaled before preprocessing,
#: which resizes to a few hundred pixels anyway.
MAX_SIDE = 4096
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp", ".webp", ".gif")


@dataclass(frozen=True)
class SourceImage:
    """The picture as RGB, plus what the report may say about its origin (never a full path)."""

    rgb: Image.Image
    name: str
    sha256: str
    kind: str  # "skimage", "file", "array"
    notes: tuple[str, ...] = field(default=())

    def describe(self) -> dict[str, Any]:
        return {
            "source": self.name,
            "kind": self.kind,
            "sha256": self.sha256,
            "width": self.rgb.width,
            "height": self.rgb.height,
            "notes": list(self.notes),
        }


def load_image(image: Any) -> SourceImage:
    """Accept an skimage sample name, a path, a PIL image, a numpy array or a tensor."""
    if isinstance(image, Image.Image):
        rgb, notes = _to_rgb(image)
        return SourceImage(rgb, "PIL image", _pixels_sha256(rgb), "array", notes)
    if isinstance(image, np.ndarray) or type(image).__module__.startswith("torch"):
        rgb, notes = _to_rgb(_array_to_pil(image))
        return SourceImage(rgb, "array", _pixels_sha256(rgb), "array", notes)
    if not isinstance(image, (str, os.PathLike)):
        raise ReportError(f"Cannot use an image of type {type(image).__name__}; pass a file path, "
                          "an skimage sample name, a PIL image, a numpy array or a tensor.")
    text = os.fspath(image)
    path = Path(text)
    if text in SKIMAGE_SAMPLES and not path.exists():
        return _load_sample(text)
    return _load_file(path)


def _load_sample(name: str) -> SourceImage:
    packaged = packaged_sample_file(name)
    if packaged is not None:
        with Image.open(packaged) as opened:
            picture = opened.copy()
    else:
        import skimage.data

        picture = _array_to_pil(getattr(skimage.data, name)())
    rgb, notes = _to_rgb(picture)
    return SourceImage(rgb, name, _pixels_sha256(rgb), "skimage", notes)


def packaged_sample_file(name: str) -> Path | None:
    """The sample's PNG in the installed skimage, found without importing skimage."""
    if name not in PACKAGED_SAMPLE_FILES:
        return None
    spec = importlib.util.find_spec("skimage")
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(list(spec.submodule_search_locations)[0]) / "data" / PACKAGED_SAMPLE_FILES[name]
    return path if path.is_file() else None


def _load_file(path: Path) -> SourceImage:
    data, shown = read_image_file(path)
    return load_image_bytes(data, shown)


def read_image_file(path: Path) -> tuple[bytes, str]:
    """A file's bytes and the name errors show, or the one-line reason it cannot be an image
    (missing, a folder, a pipe, unreadable)."""
    shown = path.name or str(path)
    if not path.exists():
        hint = _closest_sample(str(path))
        raise ReportError(
            f"Image '{shown}' does not exist{hint}. Pass an image file or an skimage sample "
            f"name such as astronaut, coffee, chelsea or camera.")
    if path.is_dir():
        raise ReportError(f"Image '{shown}' is a folder; pass one image file.")
    if not path.is_file():  # a device or a pipe: reading it might never end
        raise ReportError(f"Image '{shown}' is not a regular file; pass an image file.")
    return _read_bytes(path), shown


def load_image_bytes(data: bytes, shown: str) -> SourceImage:
    """An image file's bytes (read from anywhere) to RGB, with ``shown`` naming it in errors."""
    if not data:
        raise ReportError(f"Image '{shown}' is an empty file.")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data)) as opened:
                frames = getattr(opened, "n_frames", 1)
                if opened.format == "JPEG":
                    opened.draft("RGB", (MAX_SIDE, MAX_SIDE))  # cheap decode of huge JPEGs
                opened.load()
                picture = ImageOps.exif_transpose(opened)
                picture.load()
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as error:
        raise ReportError(
            f"Image '{shown}' is too large to decode safely ({error}); resize it below "
            f"{Image.MAX_IMAGE_PIXELS:,} pixels first.") from None
    except UnidentifiedImageError:
        raise ReportError(
            f"'{shown}' is not an image Pillow can read; use PNG, JPEG, TIFF, BMP, WebP or GIF."
        ) from None
    except (OSError, SyntaxError, ValueError) as error:
        raise ReportError(f"Image '{shown}' is damaged or truncated ({error}).") from None
    rgb, notes = _to_rgb(picture)
    if frames > 1:
        notes = notes + (f"animated image with {frames} frames: the first frame is used",)
    return SourceImage(rgb, shown, hashlib.sha256(data).hexdigest(), "file", notes)


def _read_bytes(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as error:
        raise ReportError(f"Cannot read image '{path.name}': {error.strerror}.") from None


def _closest_sample(text: str) -> str:
    import difflib

    close = difflib.get_close_matches(text, SKIMAGE_SAMPLES, n=3)
    return f" (did you mean the skimage sample {', '.join(close)}?)" if close else ""


def _to_rgb(picture: Image.Image) -> tuple[Image.Image, tuple[str, ...]]:
    """Convert any Pillow mode to 8-bit RGB the way a viewer would show it."""
    notes: list[str] = []
    mode = picture.mode
    if mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        array = np.asarray(picture, dtype=np.float64)
        low, high = float(array.min()), float(array.max())
        scale = 255.0 / (high - low) if high > low else 0.0
        picture = Image.fromarray(((array - low) * scale).round().astype(np.uint8))
        notes.append(f"{mode} image scaled from its range [{low:g}, {high:g}] to 8 bits")
    if mode == "P" or mode == "PA":
        picture = picture.convert("RGBA")
    if picture.mode in ("RGBA", "LA", "RGBa", "La"):
        background = Image.new("RGBA", picture.size, (255, 255, 255, 255))
        background.alpha_composite(picture.convert("RGBA"))
        picture = background
        notes.append("transparency composited onto white")
    if picture.mode == "CMYK":
        notes.append("CMYK converted to RGB")
    if picture.mode != "RGB":
        picture = picture.convert("RGB")
    if max(picture.size) > MAX_SIDE:
        before = picture.size
        picture = picture.copy()
        picture.thumbnail((MAX_SIDE, MAX_SIDE), Image.Resampling.LANCZOS)
        notes.append(f"downscaled from {before[0]}x{before[1]} to {picture.width}x{picture.height}")
    return picture, tuple(notes)


def _array_to_pil(array: Any) -> Image.Image:
    """numpy/torch arrays: HxW, HxWxC or CxHxW; uint8, uint16, bool or float in [0, 1]."""
    if type(array).__module__.startswith("torch"):
        array = array.detach().cpu().numpy()
    array = np.asarray(array)
    if array.ndim == 4 and array.shape[0] == 1:
        array = array[0]
    if array.ndim == 3 and array.shape[0] in (1, 3, 4) and array.shape[-1] not in (1, 3, 4):
        array = np.moveaxis(array, 0, -1)
    if array.ndim == 3 and array.shape[-1] == 1:
        array = array[..., 0]
    if array.ndim not in (2, 3) or (array.ndim == 3 and array.shape[-1] not in (3, 4)):
        raise ReportError(f"Cannot read an image array of shape {tuple(array.shape)}; "
                          "use HxW, HxWx3, HxWx4 or 3xHxW.")
    if array.size == 0:
        raise ReportError("The image array is empty.")
    if array.dtype == bool:
        array = array.astype(np.uint8) * 255
    elif array.dtype == np.uint16:
        array = (array.astype(np.float64) / 65535.0 * 255.0).round().astype(np.uint8)
    elif np.issubdtype(array.dtype, np.floating):
        if not np.isfinite(array).all():
            raise ReportError("The image array contains NaN or infinite values.")
        low, high = float(array.min()), float(array.max())
        if low < 0.0 or high > 1.0:  # not a [0, 1] image: show its own range
            array = (array - low) / (high - low) if high > low else np.zeros_like(array)
        array = (array * 255.0).round().astype(np.uint8)
    elif array.dtype != np.uint8:
        array = np.clip(array, 0, 255).astype(np.uint8)
    return Image.fromarray(np.ascontiguousarray(array))  # mode follows the shape


def _pixels_sha256(rgb: Image.Image) -> str:
    digest = hashlib.sha256(f"{rgb.width}x{rgb.height}:".encode())
    digest.update(rgb.tobytes())
    return digest.hexdigest()
