"""One forward pass with a hook on every convolution.

The hook hands each conv output to a callback *while the forward pass runs*, so the callback
can turn it into a grid and let go of it: memory stays flat however large the input, and a
following ``ReLU(inplace=True)`` cannot change what we recorded, because the callback reads the
output before the ReLU runs and keeps only what it derived from it.
"""
from __future__ import annotations

import difflib
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from reportgen.errors import ReportError


@dataclass(frozen=True)
class ConvSpec:
    """The static description of a conv layer (what ``print(model)`` shows, as data)."""

    name: str
    in_channels: int
    out_channels: int
    kernel: tuple[int, int]
    stride: tuple[int, int]
    padding: tuple[int, int] | str
    dilation: tuple[int, int]
    groups: int
    parameters: int
    bias: bool
    padding_mode: str

    @classmethod
    def of(cls, name: str, conv: nn.Conv2d) -> ConvSpec:
        padding = conv.padding if isinstance(conv.padding, str) else _pair(conv.padding)
        return cls(name, conv.in_channels, conv.out_channels, _pair(conv.kernel_size),
                   _pair(conv.stride), padding, _pair(conv.dilation), conv.groups,
                   sum(p.numel() for p in conv.parameters(recurse=False)),
                   conv.bias is not None, conv.padding_mode)


def conv_layers(model: nn.Module) -> list[tuple[str, nn.Conv2d]]:
    """Every ``nn.Conv2d`` in the model (not only in ``features``), by its module path."""
    return [(name, module) for name, module in model.named_modules()
            if isinstance(module, nn.Conv2d)]


def named_convs(model: nn.Module, names: Sequence[str]) -> list[nn.Conv2d]:
    """The convs of these module paths, in the order given; the one refusal of a name that is
    not a conv layer (attribution, feature visualisation and the dataset pass all say it so),
    with the nearest names as a hint."""
    convs = dict(conv_layers(model))
    for name in names:
        if name not in convs:
            close = difflib.get_close_matches(name, list(convs), n=3, cutoff=0.6)
            hint = f" Did you mean {', '.join(close)}?" if close else (
                f" The conv layers are {', '.join(list(convs)[:6])}"
                f"{', ...' if len(convs) > 6 else ''}.")
            raise ReportError(f"'{name}' is not a conv layer of {type(model).__name__}.{hint}")
    return [convs[name] for name in names]


#: Called with (layer name, call number starting at 1, module, output tensor). The module is
#: an ``nn.Conv2d`` unless ``names`` chose another one (reportgen.forward.selection).
OutputCallback = Callable[[str, int, nn.Module, torch.Tensor], None]


class ConvHooks:
    """Hooks on the chosen layers for the duration of a ``with`` block, and nothing after.

    ``names`` are module names (every conv when None); a name that is not a conv is hooked
    too, and its callback receives whatever that module returns.

    Handles are removed and the model's train/eval mode restored in ``__exit__``, also when
    the forward pass or the callback raises, so a failed build never leaves a model changed.
    """

    def __init__(self, model: nn.Module, on_output: OutputCallback,
                 names: list[str] | None = None) -> None:
        self.model = model
        self.on_output = on_output
        wanted = set(names) if names is not None else None
        self.layers: list[tuple[str, nn.Module]] = (
            list(conv_layers(model)) if wanted is None else
            [(name, module) for name, module in model.named_modules() if name in wanted])
        self.calls: Counter[str] = Counter()
        self._handles: list[torch.utils.hooks.RemovableHandle] = []
        self._was_training = model.training

    def __enter__(self) -> ConvHooks:
        self._was_training = self.model.training
        try:
            for name, conv in self.layers:
                self._handles.append(conv.register_forward_hook(self._hook_for(name)))
        except BaseException:
            self.remove()
            raise
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.remove()

    def remove(self) -> None:
        """Safe to call twice."""
        while self._handles:
            self._handles.pop().remove()
        self.model.train(self._was_training)

    def _hook_for(self, name: str) -> Callable[[nn.Module, tuple[Any, ...], torch.Tensor], None]:
        def hook(module: nn.Module, inputs: tuple[Any, ...], output: torch.Tensor) -> None:
            self.calls[name] += 1
            self.on_output(name, self.calls[name], module, output)

        return hook

    def run(self, batch: torch.Tensor) -> torch.Tensor:
        """The single forward pass, in eval mode and without autograd bookkeeping."""
        self.model.eval()
        with torch.inference_mode():
            output: torch.Tensor = self.model(batch)
        return output


def _pair(values: tuple[int, ...] | int) -> tuple[int, int]:
    """Conv2d keeps (height, width) pairs; as a typed pair."""
    if isinstance(values, int):
        return values, values
    return int(values[0]), int(values[1])


def record_name(name: str, call: int) -> str:
    """A module called twice is recorded twice: ``layer`` then ``layer@2``."""
    return name if call == 1 else f"{name}@{call}"


def parse_record_name(recorded: str) -> tuple[str, int]:
    """``layer`` -> (``layer``, 1), ``layer@N`` -> (``layer``, N): what :func:`record_name`
    made, and nothing else (``layer@1`` and ``layer@x`` are refused)."""
    name, at, call = recorded.partition("@")
    if not at:
        return name, 1
    if not (call.isdigit() and int(call) >= 2):
        raise ReportError(f"'{recorded}': the part after '@' must be a call number of 2 or "
                          "more (layer@2 is a module's second call).")
    return name, int(call)
