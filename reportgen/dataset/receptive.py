"""Which input pixels can influence a conv layer's map position (y, x).

Measured, not derived from the module list: ``print(model)`` order says nothing about
residual adds, concatenations or branches, but gradients follow the real data flow. On an
*all-positive* copy of the model (:func:`positive_copy`: conv weights a positive constant,
biases 0, normalisation layers and activations the identity, max pooling replaced by average
pooling of the same geometry) every path from an input pixel to an output adds a positive
amount, so the support of d out[y, x] / d input is exactly the receptive field.

One backward per layer, on a batch of three inputs of ones, seeds positions (0, 0), (1, 1)
and the last one; the ends of the first two and the start of the last give, per axis,
``stride``, ``offset`` and ``size`` with ``box(p) = [offset + p * stride, ... + size)``.
Those three edges are never clipped by the image once the input is about half the receptive
field, so the input only has to grow for deep layers whose edge touches the
border (growing by half at a time, so no layer runs at much more than it needs). After that
any position's box is O(1).

Limit: a layer after a global-context op (a squeeze-and-excitation gate, attention) depends
on the whole image by construction; its measured field is then the whole (largest) input.
"""
from __future__ import annotations

import copy
import hashlib
import json
import logging
import os
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from torch import nn

from reportgen.cachedir import cache_dir
from reportgen.errors import ReportError
from reportgen.forward.hooks import ConvHooks, conv_layers, record_name
from reportgen.inputs.modelinput import input_channels

log = logging.getLogger(__name__)

#: Modules that are the identity on positive inputs, or that rescale without moving anything:
#: they must not cut gradients (ReLU6 saturates, BatchNorm may have zero weights).
_IDENTITY_ON_POSITIVE = (
    nn.ReLU, nn.ReLU6, nn.LeakyReLU, nn.PReLU, nn.ELU, nn.SELU, nn.CELU, nn.GELU, nn.SiLU,
    nn.Mish, nn.Hardswish, nn.Hardtanh, nn.Softplus, nn.Dropout, nn.Dropout2d,
    nn.modules.batchnorm._BatchNorm, nn.GroupNorm, nn.LocalResponseNorm,
    nn.modules.instancenorm._InstanceNorm,
)
DEFAULT_START = 32
DEFAULT_MAX_INPUT = 2048


@dataclass(frozen=True)
class Box:
    """A half-open pixel rectangle [top, bottom) x [left, right) in the model's input."""

    top: int
    left: int
    bottom: int
    right: int

    @property
    def height(self) -> int:
        return self.bottom - self.top

    @property
    def width(self) -> int:
        return self.right - self.left

    def clipped(self, height: int, width: int) -> Box:
        return Box(max(self.top, 0), max(self.left, 0), min(self.bottom, height),
                   min(self.right, width))


@dataclass(frozen=True)
class ReceptiveField:
    """Per axis (y, x): map position p sees input pixels [offset + p * stride, ... + size)."""

    size: tuple[int, int]
    stride: tuple[int, int]
    offset: tuple[int, int]

    def box(self, y: int, x: int) -> Box:
        """The field of position (y, x), unclipped (it may reach outside the image)."""
        top = self.offset[0] + y * self.stride[0]
        left = self.offset[1] + x * self.stride[1]
        return Box(top, left, top + self.size[0], left + self.size[1])

    def cell(self, y: int, x: int) -> Box:
        """The stride-sized patch at the centre of the field: the position's "own" pixels.

        Neighbouring positions' cells tile the image, so this is where the peak was, as
        precisely as the map's resolution allows.
        """
        box = self.box(y, x)
        top = box.top + (self.size[0] - self.stride[0]) // 2
        left = box.left + (self.size[1] - self.stride[1]) // 2
        return Box(top, left, top + self.stride[0], left + self.stride[1])


def positive_copy(model: nn.Module) -> nn.Module:
    """A float32 CPU copy in which every input pixel reaches every output it can reach."""
    probe = copy.deepcopy(model).float().cpu().eval()
    _make_positive(probe)
    for parameter in probe.parameters():
        parameter.requires_grad_(False)
    return probe


def _make_positive(module: nn.Module) -> None:
    for name, child in module.named_children():
        replacement = _replacement(child)
        if replacement is not None:
            setattr(module, name, replacement)
            continue
        if isinstance(child, (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.Linear)):
            with torch.no_grad():
                # An average, so values stay near 1 however deep the net (no overflow, and
                # no underflow of the gradient at a field's corners in float32).
                child.weight.fill_(1.0 / max(1, child.weight[0].numel()))
                if child.bias is not None:
                    child.bias.zero_()
        _make_positive(child)


def _replacement(module: nn.Module) -> nn.Module | None:
    if isinstance(module, _IDENTITY_ON_POSITIVE):
        return nn.Identity()
    if isinstance(module, nn.MaxPool2d):
        if module.dilation not in (1, (1, 1)):
            raise ReportError("The model uses dilated max pooling, whose receptive field "
                              "cannot be measured, so --dataset cannot crop its examples.")
        return nn.AvgPool2d(module.kernel_size, module.stride, module.padding,
                            ceil_mode=module.ceil_mode)
    if isinstance(module, nn.AdaptiveMaxPool2d):
        return nn.AdaptiveAvgPool2d(module.output_size)
    return None


def receptive_fields(model: nn.Module, layers: Sequence[str] | None = None,
                     start: int = DEFAULT_START,
                     max_input: int = DEFAULT_MAX_INPUT) -> dict[str, ReceptiveField]:
    """The field of every call of the chosen conv modules, by recorded name (``layer@2``).

    Starts with a ``start``-pixel input and grows it by half (up to ``max_input``) while some
    layer's field still touches the border: each layer's backward pass runs at the smallest
    input that shows its whole field (a 32 px input for ResNet-18's layer1).
    """
    cached = _cache_file(model, layers, start, max_input)
    try:
        saved = json.loads(cached.read_text(encoding="utf-8"))
        return {name: ReceptiveField(tuple(v["size"]), tuple(v["stride"]),
                                     tuple(v["offset"])) for name, v in saved.items()}
    except (OSError, ValueError, KeyError, TypeError):
        pass  # not measured yet (or unreadable): measure
    found = _measure_all(model, layers, start, max_input)
    try:
        cached.parent.mkdir(parents=True, exist_ok=True)
        temporary = cached.with_suffix(f".{os.getpid()}.tmp")
        temporary.write_text(json.dumps({name: asdict(field) for name, field in found.items()},
                                        sort_keys=True), encoding="utf-8")
        os.replace(temporary, cached)
    except OSError as error:  # a read-only home is no reason to fail the report
        log.info("Could not cache receptive fields in %s (%s)", cached.parent, error)
    return found


def _cache_file(model: nn.Module, layers: Sequence[str] | None, start: int,
                max_input: int) -> Path:
    """Keyed by the architecture (every module's class and hyperparameters, as repr shows
    them), the layers and the search: measuring takes seconds to a minute on a CPU, and
    depends on nothing else."""
    key = hashlib.sha256(f"{model!r}|{sorted(layers) if layers else None}|{start}|{max_input}"
                         .encode()).hexdigest()[:24]
    return cache_dir("receptive-fields") / f"{type(model).__name__}-{key}.json"


def _measure_all(model: nn.Module, layers: Sequence[str] | None, start: int,
                 max_input: int) -> dict[str, ReceptiveField]:
    probe = positive_copy(model)
    found: dict[str, ReceptiveField] = {}
    size = start
    while True:
        missing = _measure(probe, layers, size, found)
        if not missing or size >= max_input:
            break
        size = min(size * 3 // 2, max_input)
    for name in missing:  # bigger than the largest input: the whole input, centred
        found[name] = ReceptiveField((size * 2, size * 2), (1, 1), (-size // 2, -size // 2))
    return found


def _measure(probe: nn.Module, layers: Sequence[str] | None, size: int,
             found: dict[str, ReceptiveField]) -> list[str]:
    """Measure the layers not in ``found`` at this input size; return those that need more."""
    outputs: dict[str, torch.Tensor] = {}
    calls: dict[str, int] = {}

    def keep(name: str, call: int, module: nn.Module, output: torch.Tensor) -> None:
        calls[name] = calls.get(name, 0) + 1
        outputs[record_name(name, calls[name])] = output

    channels, _ = input_channels(probe)  # a grey model takes 1
    image = torch.ones(3, channels, size, size, requires_grad=True)  # three probes
    unreached: list[str] = []
    try:
        with torch.enable_grad(), ConvHooks(probe, keep, list(layers) if layers else None):
            probe(image)
    except Exception as error:  # noqa: BLE001 - the user's forward may fail in any way
        # A head that takes only the model's own size (a Linear after the convs) fails after
        # the convs ran: their outputs are all the probe needs. Layers the failure came
        # before are measured at the next size, or the error is said in one line.
        reached = {name.partition("@")[0] for name in outputs}
        unreached = [name for name in _probed(probe, layers)
                     if name not in reached and name not in found]
        if unreached and not outputs and not found:
            first = str(error).strip().splitlines()[0] if str(error).strip() else ""
            raise ReportError(
                f"The receptive fields cannot be measured: the model fails on a {size}x{size} "
                f"input before {unreached[0]} ({type(error).__name__}: {first}).") from None
    missing = []
    for name, output in outputs.items():
        if name in found:
            continue
        field = _field(output, image, size)
        if field is None:
            missing.append(name)
        else:
            found[name] = field
    return missing + unreached


def _probed(probe: nn.Module, layers: Sequence[str] | None) -> list[str]:
    """The module names the probe measures: ``layers``, or every conv."""
    return list(layers) if layers else [name for name, _ in conv_layers(probe)]


def _field(output: torch.Tensor, image: torch.Tensor, size: int) -> ReceptiveField | None:
    height, width = int(output.shape[2]), int(output.shape[3])
    if height < 2 or width < 2:
        return None
    seed = (output[0, :, 0, 0].sum() + output[1, :, 1, 1].sum()
            + output[2, :, height - 1, width - 1].sum())
    (gradient,) = torch.autograd.grad(seed, image, retain_graph=True)
    support = gradient.abs().sum(dim=1) > 0  # (3, size, size)
    axes = []
    for axis, count in ((1, height), (0, width)):  # rows: reduce columns; columns: reduce rows
        lines = [torch.nonzero(support[i].any(dim=axis)).flatten() for i in range(3)]
        if any(line.numel() == 0 for line in lines):
            return None
        first_end, second_end = int(lines[0][-1]), int(lines[1][-1])
        last_start = int(lines[2][0])
        if second_end >= size - 1 or last_start <= 0:
            return None  # an edge touches the border: it may be clipped
        stride = second_end - first_end
        offset = last_start - (count - 1) * stride
        extent = first_end - offset + 1
        if stride < 1 or extent < 1:
            return None
        axes.append((extent, stride, offset))
    (size_y, stride_y, offset_y), (size_x, stride_x, offset_x) = axes
    return ReceptiveField((size_y, size_x), (stride_y, stride_x), (offset_y, offset_x))
