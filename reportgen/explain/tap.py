"""Run a model only as far as one conv layer, and leave the model as it was found.

Feature visualisation needs one layer's output hundreds of times; everything after that
layer would be computed and thrown away, so the hook raises :class:`_Stop` once it has the
output and the caller catches it. For a mid-network layer this skips the rest of the network
in every forward pass and in every backward pass.
"""
from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager, suppress

import torch
from torch import nn

from reportgen.errors import ReportError
from reportgen.forward.device import moved_to, parse_device
from reportgen.forward.hooks import ConvHooks, named_convs, parse_record_name


class _Stop(Exception):
    """Raised from the hook of the deepest layer needed; never leaves this module."""


def split_layer(module: nn.Module, layer: str) -> tuple[str, int]:
    """``'name'`` or ``'name@N'`` (the N-th call of a conv used twice) -> (module path, N)."""
    name, call = parse_record_name(layer)
    named_convs(module, [name])
    return name, call


def layer_channels(module: nn.Module, layer: str) -> int:
    return int(named_convs(module, [parse_record_name(layer)[0]])[0].out_channels)


@contextmanager
def untouched(module: nn.Module, device: torch.device | str = "cpu") -> Iterator[nn.Module]:
    """The module in eval mode on ``device``; each submodule's mode and the device restored."""
    modes = [(sub, sub.training) for sub in module.modules()]
    try:
        with moved_to(module, parse_device(device)):
            module.eval()
            yield module
    finally:
        for sub, training in modes:
            sub.training = training


class LayerTap:
    """Hooks on one conv while the ``with`` block runs; calling it runs the model up to it."""

    def __init__(self, module: nn.Module, layer: str) -> None:
        self.module = module
        self.name, self.call = split_layer(module, layer)
        self._captured: list[torch.Tensor] = []
        self._hooks = ConvHooks(module, self._on_output, [self.name])

    def __enter__(self) -> LayerTap:
        self._hooks.__enter__()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._hooks.__exit__(*exc_info)

    def __call__(self, batch: torch.Tensor) -> torch.Tensor:
        """The layer's output for ``batch`` (N, C, H, W); nothing after the layer runs."""
        self._captured.clear()
        self._hooks.calls.clear()
        with suppress(_Stop):
            self.module(batch)
        if not self._captured:
            raise ReportError(f"Layer {self.name} was not called {self.call} time(s) in a "
                              "forward pass, so it cannot be visualised.")
        return self._captured.pop()

    def _on_output(self, name: str, call: int, conv: nn.Module, output: torch.Tensor) -> None:
        if call == self.call:
            self._captured.append(output)
            raise _Stop
