"""The report's one forward pass: every chosen layer hooked, each output drawn as it comes."""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch

from reportgen.errors import ReportError
from reportgen.forward.capture import Capture
from reportgen.forward.device import laid_out, moved_to
from reportgen.forward.hooks import ConvHooks
from reportgen.forward.recorder import ActivationRecorder
from reportgen.inputs.inputsize import explain_failure
from reportgen.inputs.models import LoadedModel
from reportgen.options import BuildOptions
from reportgen.pictures.pngio import PngWriter


@dataclass(frozen=True)
class ForwardPass:
    """What the pass captured: the layers' records, the output, and what could not be shown."""

    captures: list[Capture]
    logits: torch.Tensor | None  # the model's output on the CPU, when it is a tensor
    notes: list[str]  # chosen layers whose output is not a feature map
    grid_seconds: float  # of the pass, spent drawing grids inside the hooks


def run_forward(loaded: LoadedModel, batch: torch.Tensor, device: torch.device,
                chosen: list[str], site: Path, writer: PngWriter, options: BuildOptions,
                peaks: dict[str, torch.Tensor] | None,
                on_layer: Callable[[], object] | None = None) -> ForwardPass:
    """Run ``batch`` through the model once with hooks on ``chosen``; the grids go to
    ``writer`` under ``site`` (``peaks``: each channel's dataset peak, --normalize dataset)."""
    recorder = ActivationRecorder(site, writer, options, on_layer, peaks,
                                  input_hw=(batch.shape[-2], batch.shape[-1]),
                                  batch_size=batch.shape[0])
    module = loaded.module
    try:
        with moved_to(module, device), ConvHooks(module, recorder, chosen) as hooks:
            output = hooks.run(laid_out(batch.to(device), module))
    except (RuntimeError, ValueError) as error:
        # The meta check passed (or could not tell): explain a shape failure if it is one.
        explain_failure(module, int(batch.shape[-1]), loaded.name, error,
                        channels=int(batch.shape[1]))
        raise
    logits = output.float().cpu() if isinstance(output, torch.Tensor) else None
    notes = skipped_notes(recorder.skipped, bool(recorder.captures))
    return ForwardPass(recorder.captures, logits, notes, recorder.seconds)


def skipped_notes(skipped: list[tuple[str, str]], shown: bool) -> list[str]:
    """Chosen layers whose output is not a feature map: a note, or an error if none is left."""
    if not skipped:
        return []
    listed = "; ".join(f"{name}: {why}" for name, why in skipped[:3])
    more = f"; and {len(skipped) - 3} more" if len(skipped) > 3 else ""
    if not shown:
        raise ReportError(f"None of the layers --layers chose can be shown as maps ({listed}"
                          f"{more}); choose layers whose output is a feature map or a token "
                          "sequence.")
    return [f"{len(skipped)} chosen layer{'s are' if len(skipped) > 1 else ' is'} not shown, "
            f"as {'their' if len(skipped) > 1 else 'its'} output is not a feature map: "
            f"{listed}{more}."]
