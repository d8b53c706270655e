"""Turn the RGB picture into the exact tensor the model sees, and back into a picture.

The numbers come from the weights' own ``transforms()`` preset when there is one (resize,
centre crop, mean and std differ between models), ImageNet defaults otherwise.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import torch
from PIL import Image

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
#: A crop that discards more than this fraction of the picture's area gets a note.
CROP_NOTE_ABOVE = 0.25


@dataclass(frozen=True)
class Preprocessing:
    """Resize the short side, centre-crop a square, scale to [0, 1], normalise."""

    resize: int
    crop: int
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    interpolation: str = "bilinear"
    source: str = "ImageNet defaults"

    @classmethod
    def from_preset(cls, preset: Any | None, size: int | None = None) -> Preprocessing:
        """Read a torchvision ImageClassification preset; ``size`` overrides the crop size."""
        if preset is None:
            base = cls(resize=256, crop=224)
        else:
            base = cls(resize=int(_first(preset.resize_size)), crop=int(_first(preset.crop_size)),
                       mean=_triple(preset.mean), std=_triple(preset.std),
                       interpolation=str(preset.interpolation.value),
                       source="the weights' transforms()")
        if size is None or size == base.crop:
            return base
        resize = max(size, round(size * base.resize / base.crop))
        return cls(resize, size, base.mean, base.std, base.interpolation,
                   f"{base.source}, crop size overridden to {size} by --size")

    def __call__(self, picture: Image.Image) -> torch.Tensor:
        """A (1, 3, crop, crop) float tensor, as torchvision's preset would produce."""
        from torchvision.transforms import InterpolationMode
        from torchvision.transforms import functional as TF

        # Same order as torchvision's ImageClassification preset (resize and crop the PIL
        # image, then convert), so the numbers match the weights' transforms() exactly.
        picture = TF.resize(picture, [self.resize],
                            interpolation=InterpolationMode(self.interpolation), antialias=True)
        picture = TF.center_crop(picture, [self.crop])
        tensor = TF.convert_image_dtype(TF.pil_to_tensor(picture), torch.float)
        tensor = TF.normalize(tensor, mean=list(self.mean), std=list(self.std))
        batch: torch.Tensor = tensor.unsqueeze(0)
        return batch

    def kept_fraction(self, width: int, height: int) -> float:
        """How much of a width x height picture the centre crop keeps (area fraction)."""
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
        mean = torch.tensor(self.mean).view(3, 1, 1)
        std = torch.tensor(self.std).view(3, 1, 1)
        rgb = (batch[0].detach().float().cpu() * std + mean).clamp(0, 1)
        return (rgb * 255).round().to(torch.uint8).permute(1, 2, 0).contiguous().numpy()

    def describe(self) -> dict[str, Any]:
        record = asdict(self)
        record["mean"], record["std"] = list(self.mean), list(self.std)
        return record

    @classmethod
    def from_description(cls, record: dict[str, Any]) -> Preprocessing:
        """The inverse of :meth:`describe` (a manifest's ``preprocessing``)."""
        return cls(int(record["resize"]), int(record["crop"]), _triple(record["mean"]),
                   _triple(record["std"]), str(record["interpolation"]), str(record["source"]))


def _triple(values: Any) -> tuple[float, float, float]:
    """Per-channel numbers (mean, std) for an RGB input: exactly three."""
    numbers = [float(v) for v in values]
    if len(numbers) != 3:
        raise ValueError(f"expected 3 values (one per RGB channel), got {len(numbers)}")
    return numbers[0], numbers[1], numbers[2]


def _first(value: Any) -> Any:
    return value[0] if isinstance(value, (list, tuple)) else value
