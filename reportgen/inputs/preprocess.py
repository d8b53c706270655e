"""Turn the RGB picture into the exact tensor the model sees, and back into a picture.

The numbers come from the weights' own ``transforms()`` preset when there is one (resize,
centre crop, mean and std differ between models), ImageNet defaults otherwise; ``--mean``,
``--std``, ``--resize``, ``--size`` and ``--no-crop`` override them (:meth:`Preprocessing.chosen`).
A model whose first convolution takes one channel gets a grey picture.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from PIL import Image

from reportgen.errors import ReportError

if TYPE_CHECKING:  # pragma: no cover
    from reportgen.options import BuildOptions

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
#: A crop that discards more than this fraction of the picture's area gets a note.
CROP_NOTE_ABOVE = 0.25
#: Input channels reportgen can make from a picture: grey or RGB.
PICTURE_CHANNELS = (1, 3)


@dataclass(frozen=True)
class Preprocessing:
    """Resize the short side, centre-crop a square, scale to [0, 1], normalise.

    With ``pad`` (``--no-crop``) the long side is resized to ``crop`` instead and the picture
    padded to a square with the mean (0 after normalisation), so all of it is seen. With
    ``channels=1`` the picture is made grey (ITU-R 601 luma, as Pillow's "L") first.
    """

    resize: int
    crop: int
    mean: tuple[float, ...] = IMAGENET_MEAN
    std: tuple[float, ...] = IMAGENET_STD
    interpolation: str = "bilinear"
    source: str = "ImageNet defaults"
    channels: int = 3
    pad: bool = False

    @classmethod
    def from_preset(cls, preset: Any | None, size: int | None = None) -> Preprocessing:
        """Read a torchvision ImageClassification preset (or take a Preprocessing, as timm's
        data config gives); ``size`` overrides the crop size, keeping the preset's resize to
        crop ratio. Without a preset (no named weights) ``size`` is the resize too: ImageNet's
        256/224 margin would silently enlarge and cut a picture made at the model's size."""
        if preset is None:
            base = cls(resize=256, crop=224)
        elif isinstance(preset, Preprocessing):
            base = preset
        else:
            base = cls(resize=int(_first(preset.resize_size)), crop=int(_first(preset.crop_size)),
                       mean=_numbers_of(preset.mean), std=_numbers_of(preset.std),
                       interpolation=str(preset.interpolation.value),
                       source="the weights' transforms()")
        if size is None or size == base.crop:
            return base
        if preset is None:  # no weights' ratio to keep: a 28x28 digit stays whole at --size 28
            return cls(size, size, base.mean, base.std, base.interpolation,
                       f"{base.source}, resized to {size} by --size", base.channels)
        resize = max(size, round(size * base.resize / base.crop))
        return cls(resize, size, base.mean, base.std, base.interpolation,
                   f"{base.source}, crop size overridden to {size} by --size", base.channels)

    @classmethod
    def chosen(cls, preset: Any | None, options: BuildOptions, channels: int
               ) -> tuple[Preprocessing, list[str]]:
        """The preset with the user's --size, --resize, --no-crop, --mean and --std, for a
        model taking ``channels`` input channels; and the notes the report should show."""
        base = cls.from_preset(preset, options.size)
        notes: list[str] = []
        given = {"mean": options.mean, "std": options.std}
        for name, values in given.items():
            if values is not None and len(values) not in (1, channels):
                raise ReportError(f"--{name} has {len(values)} values but the model takes "
                                  f"{channels} input channel{'s' if channels != 1 else ''}; "
                                  f"give {channels} (or one for all).")
        chosen = {name: (values * channels if len(values) == 1 else values)
                  if values is not None else None for name, values in given.items()}
        changed = [name for name, values in chosen.items() if values is not None]
        mean = chosen["mean"] or base.mean
        std = chosen["std"] or base.std
        if channels == 1 and (len(mean) != 1 or len(std) != 1):
            averaged = [name for name, values in (("mean", mean), ("std", std))
                        if len(values) != 1]
            mean, std = (_average(mean),), (_average(std),)
            notes.append(f"The model's first convolution takes 1 channel: the image was made "
                         f"grey and normalised with mean {mean[0]:g} and std {std[0]:g} "
                         f"({' and '.join(averaged)}: the average of the RGB values; --mean "
                         "and --std set your training's).")
        resize, crop = base.resize, base.crop
        if options.resize is not None:
            if options.resize < crop:
                raise ReportError(f"--resize {options.resize} is smaller than the crop "
                                  f"({crop}); resize to at least the crop size, or set --size.")
            resize, changed = options.resize, [*changed, "resize"]
        if not options.crop:
            resize, changed = crop, [*changed, "no crop"]
        source = base.source + (f"; {', '.join(changed)} from the options" if changed else "")
        return cls(resize, crop, tuple(mean), tuple(std), base.interpolation, source, channels,
                   pad=not options.crop), notes

    def __call__(self, picture: Image.Image) -> torch.Tensor:
        """A (1, channels, crop, crop) float tensor, as torchvision's preset would produce."""
        from torchvision.transforms import functional as TF

        if self.channels == 1 and picture.mode != "L":
            picture = picture.convert("L")
        # Same order as torchvision's ImageClassification preset (resize and crop the PIL
        # image, then convert), so the numbers match the weights' transforms() exactly.
        return self._finish(TF.pil_to_tensor(self._geometry(picture)))

    def of_tensor(self, picture: torch.Tensor) -> torch.Tensor:
        """:meth:`__call__` for a decoded uint8 (3, H, W) RGB tensor, on its own device.

        For pictures decoded on a GPU: torchvision's tensor resize (antialiased) stands in for
        Pillow's, within a grey level or two of it (tests/test_dataset_device_decode.py).
        """
        from torchvision.transforms import functional as TF

        if self.channels == 1:
            picture = TF.rgb_to_grayscale(picture)
        return self._finish(self._geometry(picture))

    def _geometry(self, picture: Any) -> Any:
        """Resize and crop (or pad's resize) a PIL image or a uint8 tensor alike."""
        from torchvision.transforms import InterpolationMode
        from torchvision.transforms import functional as TF

        mode = InterpolationMode(self.interpolation)
        if self.pad:  # the long side to the square's side, then padded with the mean
            width, height = TF.get_image_size(picture)
            scale = self.crop / max(width, height)
            size = [max(1, round(height * scale)), max(1, round(width * scale))]
            return TF.resize(picture, size, interpolation=mode, antialias=True)
        picture = TF.resize(picture, [self.resize], interpolation=mode, antialias=True)
        return TF.center_crop(picture, [self.crop])

    def _finish(self, picture: torch.Tensor) -> torch.Tensor:
        """uint8 (C, h, w) to the normalised (1, C, crop, crop) model input."""
        from torchvision.transforms import functional as TF

        tensor = TF.convert_image_dtype(picture, torch.float)
        tensor = TF.normalize(tensor, mean=list(self.mean), std=list(self.std))
        if self.pad:
            height, width = tensor.shape[-2:]
            left, top = (self.crop - width) // 2, (self.crop - height) // 2
            tensor = torch.nn.functional.pad(
                tensor, (left, self.crop - width - left, top, self.crop - height - top))
        batch: torch.Tensor = tensor.unsqueeze(0)
        return batch

    @property
    def input_size(self) -> tuple[int, int]:
        """(width, height) of the model's input."""
        return self.crop, self.crop

    def kept_fraction(self, width: int, height: int) -> float:
        """How much of a width x height picture the centre crop keeps (area fraction)."""
        if self.pad:
            return 1.0
        scale = self.resize / max(1, min(width, height))
        resized_area = (width * scale) * (height * scale)
        return min(1.0, self.crop * self.crop / max(1.0, resized_area))

    def crop_note(self, width: int, height: int) -> str | None:
        """A note for the report when the crop throws away more than a quarter of the picture."""
        kept = self.kept_fraction(width, height)
        if kept >= 1.0 - CROP_NOTE_ABOVE:
            return None
        return (f"The centre crop keeps {kept:.0%} of the {width}x{height} image (the model sees "
                f"a {self.crop}x{self.crop} square from its middle); crop it yourself to choose "
                "what the model sees.")

    def to_picture(self, batch: torch.Tensor) -> np.ndarray:
        """Undo the normalisation: the model's input as an HxWx3 uint8 picture."""
        return denormalized_picture(batch, self.mean, self.std)

    @property
    def summary(self) -> str:
        """What was done, in words, for the overview page."""
        how = (f"resize the long side to {self.crop} ({self.interpolation}), pad to "
               f"{self.crop}×{self.crop} with the mean" if self.pad else
               f"resize {self.resize} ({self.interpolation}), centre crop {self.crop}")
        grey = "grey (1 channel), " if self.channels == 1 else ""
        return (f"{grey}{how}, mean {_numbers(self.mean)}, std {_numbers(self.std)}; "
                f"{self.source}")

    def describe(self) -> dict[str, Any]:
        record = asdict(self)
        record["mean"], record["std"] = list(self.mean), list(self.std)
        record["applied"] = True
        record["summary"] = self.summary
        return record

    @classmethod
    def from_description(cls, record: dict[str, Any]) -> Preprocessing:
        """The inverse of :meth:`describe` (a manifest's ``preprocessing``)."""
        mean, std = _numbers_of(record["mean"]), _numbers_of(record["std"])
        return cls(int(record["resize"]), int(record["crop"]), mean, std,
                   str(record["interpolation"]), str(record["source"]),
                   int(record.get("channels", len(mean))), bool(record.get("pad", False)))


def denormalized_picture(batch: torch.Tensor, mean: tuple[float, ...] | None,
                         std: tuple[float, ...] | None) -> np.ndarray:
    """A (1, C, H, W) model input as an HxWx3 uint8 picture: ``* std + mean`` when those are
    known, else each channel's own min..max; one channel is grey, more than three show the
    first three."""
    pixels = batch[0].detach().float().cpu()
    channels = pixels.shape[0]
    if mean is not None and std is not None and len(mean) == len(std) == channels:
        values = pixels * torch.tensor(std).view(-1, 1, 1) + torch.tensor(mean).view(-1, 1, 1)
    else:
        low = pixels.amin(dim=(1, 2), keepdim=True)
        span = (pixels.amax(dim=(1, 2), keepdim=True) - low).clamp_min(1e-12)
        values = (pixels - low) / span
    values = values.clamp(0, 1)
    values = values.expand(3, -1, -1) if channels == 1 else values[:3]
    if values.shape[0] < 3:  # two channels: the second in green, nothing in blue
        values = torch.cat([values, torch.zeros_like(values[:1])])
    return (values * 255).round().to(torch.uint8).permute(1, 2, 0).contiguous().numpy()


def _average(values: tuple[float, ...]) -> float:
    return round(sum(values) / len(values), 6)


def _numbers(values: tuple[float, ...]) -> str:
    return "(" + ", ".join(f"{value:g}" for value in values) + ")"


def _numbers_of(values: Any) -> tuple[float, ...]:
    """Per-channel numbers (mean, std): at least one, all finite."""
    numbers = tuple(float(v) for v in values)
    if not numbers or not all(math.isfinite(v) for v in numbers):
        raise ValueError(f"expected finite per-channel values, got {list(values)}")
    return numbers


def _first(value: Any) -> Any:
    return value[0] if isinstance(value, (list, tuple)) else value
