"""Grad-CAM and per-channel contributions for every selected conv, from one forward and one
backward pass.

For the target class score S (its logit) and a conv output A (C channels):

* Grad-CAM (Selvaraju et al. 2017): ``cam = ReLU(sum_c w_c A_c)`` with ``w_c`` the spatial
  mean of dS/dA_c; the same as pytorch-grad-cam's ``GradCAM`` before its resize.
* contribution of channel c: ``sum over the map of A_c * dS/dA_c`` (gradient x activation).
  For a network that is linear after the layer the contributions add up to S minus what the
  layer cannot change (the biases after it).

Memory: every selected layer's output stays alive from its forward hook until the backward
pass, ``4 bytes * sum over layers of C * H * W`` for one float32 image; their gradients, of
the same total size, arrive together at the end. Where BatchNorm follows a conv, autograd
keeps that output for the backward anyway, so keeping it costs nothing extra; where an
in-place activation follows (VGG's ``ReLU(inplace=True)``) the activation gets a copy, one
extra layer's worth. MobileNetV2 at 224x224, all 52 convs: 6,678,112 values, 25.5 MiB of
activations and as much of gradients. ``benchmarks/explain_bench.py attribution`` measures
its memory and time against the report's forward pass; the figures are in the README
(Performance).

Gathering is one step (:func:`gather`: the target's score, every layer's output and its
gradient) and each method is plain arithmetic on what it gathered (:func:`grad_cam`,
:func:`contributions`), as Captum's layer methods share one gathering step: another method
(say Grad-CAM++ or gradient x activation maps) is one more function of (A, dS/dA).

An in-place op that no module announces (``F.relu(conv(x), inplace=True)`` in a custom
``forward``) is noticed afterwards from the output's version counter; the pass is then run
once more, keeping copies, so such models cost two forward passes.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from reportgen.errors import ReportError
from reportgen.explain.tap import untouched
from reportgen.explain.target import ClassTarget
from reportgen.forward.hooks import ConvHooks, conv_layers, named_convs, record_name


@dataclass(frozen=True)
class LayerAttribution:
    """One conv call's share in the class score."""

    layer: str  # as the report names it: module path, ``@N`` for a later call
    cam: np.ndarray = field(repr=False)  # float32 (H, W) at the layer's map size, >= 0
    contributions: list[float] = field(repr=False)  # per channel, sum of A_c * dS/dA_c
    channel_weights: list[float] = field(repr=False)  # per channel, w_c = mean of dS/dA_c

    @property
    def map_size(self) -> tuple[int, int]:
        return int(self.cam.shape[0]), int(self.cam.shape[1])

    @property
    def cam_normalised(self) -> np.ndarray:
        """``cam / cam.max()`` in [0, 1]; all zeros when nothing speaks for the class."""
        peak = float(self.cam.max()) if self.cam.size else 0.0
        return (self.cam / peak if peak > 0 else np.zeros_like(self.cam)).astype(np.float32)


@dataclass(frozen=True)
class Attribution:
    """Which class was explained and each selected layer's attribution, in forward order."""

    class_index: int
    class_label: str
    score: float  # the class logit
    layers: list[LayerAttribution]

    def layer(self, name: str) -> LayerAttribution:
        for entry in self.layers:
            if entry.layer == name:
                return entry
        raise KeyError(name)


@dataclass(frozen=True)
class LayerGradients:
    """One conv call's output A and the class score's gradient dS/dA, each (C, H, W) float."""

    layer: str  # as the report names it: module path, ``@N`` for a later call
    activation: torch.Tensor = field(repr=False)
    gradient: torch.Tensor = field(repr=False)


@dataclass(frozen=True)
class Gathered:
    """What every attribution method reads, from one forward and one backward pass."""

    class_index: int
    class_label: str
    score: float  # the class logit
    layers: list[LayerGradients]  # in forward order


def attribute(module: nn.Module, batch: torch.Tensor, *, layers: Sequence[str] | None = None,
              target: ClassTarget | int | str | None = None,
              categories: Sequence[str] | None = None,
              device: str | torch.device = "cpu") -> Attribution:
    """Grad-CAM and contributions of ``layers`` (conv module paths; all convs if None).

    ``batch`` is one preprocessed image, (1, 3, H, W); ``target`` a :class:`ClassTarget`, or
    what :meth:`ClassTarget.parse` takes: a class index, a label from ``categories``, or None
    for the top-1 class. One forward and one backward pass; no parameter's ``.grad`` is
    computed or touched, and the model is left as it was found.
    """
    found = gather(module, batch, layers=layers, target=target, categories=categories,
                   device=device)
    results = []
    for entry in found.layers:
        cam, weights = grad_cam(entry.activation, entry.gradient)
        results.append(LayerAttribution(
            entry.layer, cam.cpu().numpy().astype(np.float32),
            [float(v) for v in contributions(entry.activation, entry.gradient).tolist()],
            [float(v) for v in weights.tolist()]))
    return Attribution(found.class_index, found.class_label, found.score, results)


def grad_cam(activation: torch.Tensor, gradient: torch.Tensor) -> tuple[torch.Tensor,
                                                                        torch.Tensor]:
    """(cam (H, W), channel weights (C,)): ``ReLU(sum_c w_c A_c)``, ``w_c`` = mean of dS/dA_c."""
    with torch.no_grad():
        weights = gradient.mean(dim=(1, 2))
        return torch.einsum("c,chw->hw", weights, activation).clamp_min_(0), weights


def contributions(activation: torch.Tensor, gradient: torch.Tensor) -> torch.Tensor:
    """(C,): each channel's ``sum over the map of A_c * dS/dA_c`` (gradient x activation)."""
    with torch.no_grad():
        return torch.einsum("chw,chw->c", activation, gradient)


def gather(module: nn.Module, batch: torch.Tensor, *, layers: Sequence[str] | None = None,
           target: ClassTarget | int | str | None = None,
           categories: Sequence[str] | None = None,
           device: str | torch.device = "cpu") -> Gathered:
    """The target's score and, per layer, A and dS/dA: the one step all methods share."""
    if batch.dim() != 4 or batch.shape[0] != 1:
        raise ReportError(f"Attribution takes one image, a (1, C, H, W) batch, not "
                          f"{tuple(batch.shape)}.")
    wanted = [name for name, _ in conv_layers(module)] if layers is None else list(layers)
    named_convs(module, wanted)
    with untouched(module, device) as model:
        run = _Run(model, wanted, clone_all=False)
        logits, kept = run(batch.to(device))
        if run.changed:  # an in-place op we could not see coming: redo, cloning every output
            run = _Run(model, wanted, clone_all=True)
            logits, kept = run(batch.to(device))
        index, label = ClassTarget.parse(target).pick(logits, categories)
        score = logits[0, index]
        grads = run.gradients(score)
    with torch.no_grad():
        gathered = [LayerGradients(name, output.detach()[0].float(), grad.detach()[0].float())
                    for (name, output), grad in zip(kept, grads, strict=True)]
    return Gathered(index, label, float(score.detach()), gathered)


class _Run:
    """One forward pass that keeps the selected conv outputs for the backward pass."""

    def __init__(self, model: nn.Module, layers: list[str], clone_all: bool) -> None:
        self.model = model
        self.layers = layers
        self.clone_all = clone_all
        self.kept: list[tuple[str, torch.Tensor]] = []
        self.changed = False
        self._versions: list[int] = []
        self._graph_outputs: list[torch.Tensor] = []
        self._hooked_grads: dict[int, torch.Tensor] = {}
        self._input: torch.Tensor | None = None

    def __call__(self, batch: torch.Tensor) -> tuple[torch.Tensor, list[tuple[str, torch.Tensor]]]:
        # The input asks for a gradient so the outputs do even when the parameters are frozen;
        # its own gradient is never computed.
        self._input = batch.detach().requires_grad_(True)
        with ConvHooks(self.model, self._keep, self.layers), _clone_before_inplace(self), \
                torch.enable_grad():
            logits = self.model(self._input)
        if not isinstance(logits, torch.Tensor) or logits.dim() != 2 or logits.shape[0] != 1:
            raise ReportError(f"Attribution needs a model that returns class scores, (1, K); "
                              f"{type(self.model).__name__} returned {_shape(logits)}.")
        self.changed = any(output._version != version for (_, output), version
                           in zip(self.kept, self._versions, strict=True))
        return logits, self.kept

    def _keep(self, name: str, call: int, conv: nn.Module, output: torch.Tensor) -> None:
        position = len(self.kept)
        if self.clone_all:
            # The gradient hook sees dS/dA for A as the conv produced it, even if it is then
            # changed in place; the values we keep are a copy taken now.
            def keep_grad(grad: torch.Tensor) -> None:
                self._hooked_grads[position] = grad

            output.register_hook(keep_grad)  # type: ignore[no-untyped-call]
            self.kept.append((record_name(name, call), output.detach().clone()))
        else:
            self.kept.append((record_name(name, call), output))
        self._versions.append(output._version)
        self._graph_outputs.append(output)

    def gradients(self, score: torch.Tensor) -> list[torch.Tensor]:
        """dS/dA for every kept output, from one backward pass (no parameter gradients)."""
        if not self.kept:
            return []
        if self.clone_all:
            assert self._input is not None  # set by __call__
            torch.autograd.grad(score, [self._input], allow_unused=True)
            return [self._hooked_grads.get(i, torch.zeros_like(output))
                    for i, (_, output) in enumerate(self.kept)]
        grads = torch.autograd.grad(score, self._graph_outputs, allow_unused=True)
        return [torch.zeros_like(output) if grad is None else grad
                for grad, (_, output) in zip(grads, self.kept, strict=True)]


class _clone_before_inplace:
    """Pre-hooks on in-place modules (``ReLU(inplace=True)``...): a kept conv output they
    would overwrite is handed to them as a copy instead, so the kept one stays the conv's."""

    def __init__(self, run: _Run) -> None:
        self.run = run
        self._handles: list[torch.utils.hooks.RemovableHandle] = []

    def __enter__(self) -> _clone_before_inplace:
        for sub in self.run.model.modules():
            if getattr(sub, "inplace", False) is True:
                self._handles.append(sub.register_forward_pre_hook(self._hook))
        return self

    def __exit__(self, *exc_info: object) -> None:
        while self._handles:
            self._handles.pop().remove()

    def _hook(self, sub: nn.Module, inputs: tuple[Any, ...]) -> tuple[Any, ...] | None:
        if inputs and any(inputs[0] is output for output in self.run._graph_outputs):
            return (inputs[0].clone(), *inputs[1:])
        return None


def _shape(value: object) -> str:
    return str(tuple(value.shape)) if isinstance(value, torch.Tensor) else type(value).__name__


def resize_cam(cam: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Bilinear to (height, width) with pixel centres aligned, as ``cv2.resize`` does."""
    tensor = torch.from_numpy(np.ascontiguousarray(cam, dtype=np.float32))[None, None]
    resized: np.ndarray = F.interpolate(tensor, size=size, mode="bilinear",
                                        align_corners=False)[0, 0].numpy()
    return resized


def cam_to_uint16(cam_normalised: np.ndarray) -> np.ndarray:
    """[0, 1] floats to 0-65535: a 16-bit grey PNG keeps the map's gradations exactly enough."""
    levels: np.ndarray = (np.clip(cam_normalised, 0, 1) * 65535 + 0.5).astype(np.uint16)
    return levels


def save_cam_png(cam_normalised: np.ndarray, path: str | Path) -> None:
    """A 16-bit greyscale PNG (Pillow mode ``I;16``); no timestamps, so stable bytes."""
    from PIL import Image

    Image.fromarray(cam_to_uint16(cam_normalised)).save(Path(path), format="PNG")
