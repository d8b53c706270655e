"""What goes into the model: as many channels as it takes, or a tensor exactly as given.

The number of input channels is read off the model's first convolution: 3 gets the RGB
picture, 1 a grey one (:class:`~reportgen.inputs.preprocess.Preprocessing` makes it), any other
number is a clear error unless the input already is the model's input: with
``build_report(..., preprocess=False)`` a tensor (or array) is passed to the model exactly as
given, its shape checked against the model, and the report says so.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn

from reportgen.errors import ReportError
from reportgen.inputs.images import SourceImage, load_image
from reportgen.inputs.preprocess import PICTURE_CHANNELS, Preprocessing, denormalized_picture
from reportgen.options import BuildOptions

#: What a picture becomes when the model does not say (no convolution found).
DEFAULT_CHANNELS = 3


def input_channels(module: nn.Module) -> tuple[int, str | None]:
    """(channels, layer name) of the model's first ``nn.Conv2d``; (3, None) without one."""
    for name, sub in module.named_modules():
        if isinstance(sub, nn.Conv2d):
            return int(sub.in_channels), name
    return DEFAULT_CHANNELS, None


@dataclass(frozen=True)
class RawInput:
    """A tensor that is the model's input as given: (1, C, H, W) or (C, H, W), floating."""

    tensor: torch.Tensor  # always (1, C, H, W)
    sha256: str
    notes: tuple[str, ...] = field(default=())

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(int(v) for v in self.tensor.shape)

    def describe(self) -> dict[str, Any]:
        return {"source": "tensor", "kind": "tensor", "sha256": self.sha256,
                "width": self.shape[3], "height": self.shape[2], "channels": self.shape[1],
                "dtype": str(self.tensor.dtype).removeprefix("torch."), "notes": []}


@dataclass(frozen=True)
class AsGiven:
    """The preprocessing of a :class:`RawInput`: none. Shaped like Preprocessing for the
    pages and the manifest; ``mean``/``std`` (when given) only undo it for the picture."""

    shape: tuple[int, ...]
    mean: tuple[float, ...] | None = None
    std: tuple[float, ...] | None = None

    @property
    def crop(self) -> int:
        return self.shape[2]

    @property
    def input_size(self) -> tuple[int, int]:
        """(width, height) of the model's input."""
        return self.shape[3], self.shape[2]

    def to_picture(self, batch: torch.Tensor) -> np.ndarray:
        return denormalized_picture(batch, self.mean, self.std)

    @property
    def summary(self) -> str:
        shown = ("de-normalised with --mean/--std" if self.mean is not None and self.std is not None
                 else "each channel stretched from its min to its max")
        return (f"none: the {'×'.join(str(v) for v in self.shape)} tensor is the model's input "
                f"as given (preprocess=False); the picture shows it {shown}")

    def describe(self) -> dict[str, Any]:
        channels = self.shape[1]
        return {"applied": False, "summary": self.summary, "resize": self.shape[2],
                "crop": self.shape[2], "width": self.shape[3], "height": self.shape[2],
                "mean": list(self.mean or (0.0,) * channels),
                "std": list(self.std or (1.0,) * channels), "interpolation": "none",
                "source": "the tensor as given (preprocess=False)", "channels": channels,
                "pad": False}


def read_input(image: Any, preprocess: bool = True) -> SourceImage | RawInput:
    """The image (any picture, see load_image), or with ``preprocess=False`` the tensor: read
    and checked before the model is loaded."""
    if preprocess:
        return load_image(image)
    if isinstance(image, np.ndarray):
        image = torch.from_numpy(np.ascontiguousarray(image))
    if not isinstance(image, torch.Tensor):
        raise ReportError(f"preprocess=False takes the model's input as a tensor or array, "
                          f"not {type(image).__name__}; pass a (1, C, H, W) tensor, or leave "
                          "preprocessing on for a picture.")
    tensor = image.detach()
    if tensor.dim() == 3:
        tensor = tensor.unsqueeze(0)
    if tensor.dim() != 4 or tensor.shape[0] != 1:
        raise ReportError(f"preprocess=False: the tensor has shape {tuple(image.shape)}; pass "
                          "one input as (1, C, H, W) or (C, H, W), or a list of them.")
    if not tensor.is_floating_point():
        raise ReportError(f"preprocess=False: the tensor is {str(tensor.dtype)[6:]}; the model "
                          "takes floating-point numbers (convert it as your DataLoader does).")
    if tensor.numel() == 0 or not bool(torch.isfinite(tensor).all()):
        raise ReportError("preprocess=False: the tensor is empty or holds NaN or infinite "
                          "values.")
    cpu = tensor.cpu().contiguous()
    digest = hashlib.sha256(f"{tuple(cpu.shape)}:{cpu.dtype}:".encode())
    digest.update(cpu.view(torch.uint8).numpy().tobytes() if cpu.numel() else b"")
    return RawInput(tensor, digest.hexdigest())


def input_preprocessing(givens: list[SourceImage | RawInput], module: nn.Module, preset: Any,
                        options: BuildOptions) -> tuple[Preprocessing | AsGiven, list[str]]:
    """How the inputs become the model's batch: the picture preprocessed for the model's
    channels, or (``preprocess=False``) the tensors as given, checked against the model."""
    channels, first = input_channels(module)
    raw = [given for given in givens if isinstance(given, RawInput)]
    if raw:
        return _as_given(raw, channels, first, options)
    if channels not in PICTURE_CHANNELS:
        raise ReportError(
            f"The model's first convolution ({first}) takes {channels} input channels, and "
            "from a picture reportgen makes 1 (grey) or 3 (RGB). Pass a (1, "
            f"{channels}, H, W) tensor that already has them with "
            "build_report(..., preprocess=False).")
    return Preprocessing.chosen(preset, options, channels)


def model_batch(givens: list[SourceImage | RawInput], preprocessing: Preprocessing | AsGiven,
                module: nn.Module) -> tuple[torch.Tensor, list[str]]:
    """The batch of all inputs, and each input's notes (named by input when there are
    several): conversions, how much a centre crop kept, a tensor's dtype conversion."""
    dtype = next((p.dtype for p in module.parameters() if p.is_floating_point()), None)
    tensors, notes = [], []
    for number, given in enumerate(givens):
        own: list[str] = []
        if isinstance(given, RawInput):
            tensor = given.tensor
            if dtype is not None and tensor.dtype != dtype:
                own.append(f"The tensor was converted from {str(tensor.dtype)[6:]} to "
                           f"{str(dtype)[6:]}, the model's parameter type.")
                tensor = tensor.to(dtype)
            name = f"tensor {number + 1}"
        else:
            assert isinstance(preprocessing, Preprocessing)
            tensor = preprocessing(given.rgb)
            crop = preprocessing.crop_note(given.rgb.width, given.rgb.height)
            own = [*given.notes, *([crop] if crop else [])]
            name = given.name
        tensors.append(tensor)
        notes += own if len(givens) == 1 else [f"{name}: {note}" for note in own]
    return torch.cat(tensors), notes


def _as_given(raw: list[RawInput], channels: int, first: str | None,
              options: BuildOptions) -> tuple[AsGiven, list[str]]:
    shape = raw[0].shape
    if any(given.shape[1:] != shape[1:] for given in raw):
        raise ReportError("preprocess=False: the tensors have different shapes ("
                          f"{', '.join(str(given.shape) for given in raw)}); one batch needs "
                          "one shape.")
    if first is not None and shape[1] != channels:
        raise ReportError(f"preprocess=False: the tensor has {shape[1]} channels (shape "
                          f"{shape}) but the model's first convolution ({first}) takes "
                          f"{channels}.")
    for name, values in (("mean", options.mean), ("std", options.std)):
        if values is not None and len(values) not in (1, shape[1]):
            raise ReportError(f"--{name} has {len(values)} values but the tensor has "
                              f"{shape[1]} channels.")
    notes = [f"The input is the {'×'.join(str(v) for v in shape)} tensor exactly as given "
             "(preprocess=False): no resize, crop or normalisation by reportgen."]
    return AsGiven(shape, _per_channel(options.mean, shape[1]),
                   _per_channel(options.std, shape[1])), notes


def _per_channel(values: tuple[float, ...] | None, channels: int) -> tuple[float, ...] | None:
    if values is None:
        return None
    return values * channels if len(values) == 1 else values
