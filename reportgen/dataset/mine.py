"""One streaming pass over a dataset: what excites each channel, and how much it usually fires.

For every image and channel, the forward hook takes the spatial maximum of the *shown map*
(the conv output, or max(0, output) with ``rectify``) and folds the batch into each layer's
:class:`LayerState`. Nothing proportional to the number of images is kept, and per batch the
hook does a handful of tensor ops per layer: one amax over the map (the only pass over the
activation, which is read in place, never copied), a (C, k + B) topk, and an argmax over only
those maps whose image enters a top-k.
"""
from __future__ import annotations

import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import torch
from torch import nn

from reportgen.capture import ConvHooks, conv_layers, record_name
from reportgen.errors import ReportError
from reportgen.preprocess import Preprocessing

from reportgen.dataset.decode import Batch, Skipped, batches
from reportgen.dataset.files import DatasetFiles
from reportgen.dataset.layer import Example, LayerState
from reportgen.dataset.state import (SavedRun, load_state, model_fingerprint, remove_state,
                                     run_fingerprint, save_state)
from reportgen.dataset.stats import DEFAULT_SAMPLE_SIZE, priority
from reportgen.dataset.topk import MAX_IMAGES

DEFAULT_K = 9
DEFAULT_CHECKPOINT_EVERY = 256


@dataclass(frozen=True)
class MineOptions:
    """What decides the result (and so the resume fingerprint); run-control lives elsewhere.

    ``layers``: conv module paths (as :func:`reportgen.capture.conv_layers` names them), or
    ``None`` for every conv. ``k``: examples kept per channel. ``rectify``: rank by
    max(0, output), as the report's ``--rectify`` shows. ``sample_size``: images in the
    quantile sample (memory ``4 * sample_size`` bytes per channel; see
    :mod:`reportgen.dataset.stats` for the error it buys).
    """

    layers: tuple[str, ...] | None = None
    k: int = DEFAULT_K
    rectify: bool = False
    sample_size: int = DEFAULT_SAMPLE_SIZE


@dataclass(frozen=True)
class MineProgress:
    """Passed to ``on_batch`` after each batch (and its checkpoint, if one was due)."""

    done: int
    total: int
    decoded: int
    skipped: int
    batches: int


@dataclass
class DatasetExample:
    """A top example with the image's dataset-relative path resolved."""

    path: str
    example: Example


@dataclass
class MineResult:
    """Per-layer states in forward order, keyed by recorded name (``layer``, ``layer@2``)."""

    files: DatasetFiles
    options: MineOptions
    preprocessing: Preprocessing
    layers: dict[str, LayerState]
    decoded: int
    skipped: list[Skipped]
    resumed_from: int = 0  # files already done by a saved state when this run started
    seconds: float = 0.0
    timings: dict[str, float] = field(default_factory=dict)

    def examples(self, layer: str, channel: int) -> list[DatasetExample]:
        return [DatasetExample(self.files.paths[example.image], example)
                for example in self.layers[layer].examples(channel)]


def mine(model: nn.Module, files: DatasetFiles, preprocessing: Preprocessing,
         options: MineOptions = MineOptions(), *, batch_size: int = 32, workers: int = 0,
         device: str | torch.device = "cpu", indices: Sequence[int] | None = None,
         state_file: Path | None = None, resume: bool = True,
         checkpoint_every: int = DEFAULT_CHECKPOINT_EVERY, model_id: str | None = None,
         progress: bool | None = None,
         on_batch: Callable[[MineProgress], None] | None = None) -> MineResult:
    """Run the model over ``files`` once and keep, per channel, its top-k images and stats.

    ``indices`` restricts the run to some files (global indices are kept, so partial results
    of disjoint index sets merge with :meth:`LayerState.merge`). With ``state_file``, the
    run saves itself every ``checkpoint_every`` files and, with ``resume``, continues a
    saved run of the same fingerprint; ``model_id`` names the weights so they need not be
    hashed. ``progress`` draws a tqdm bar on stderr (default: only when stderr is a TTY).
    Undecodable files are skipped; the run fails only when none decodes.
    """
    started = time.perf_counter()
    _check_options(options, len(files))
    chosen = _chosen_layers(model, options.layers)
    order = list(range(len(files)) if indices is None else indices)
    if not order:
        raise ReportError("The dataset selection is empty; there are no images to run.")
    torch_device = torch.device(device)
    fingerprint = ""
    saved: SavedRun | None = None
    if state_file is not None:
        fingerprint = run_fingerprint(
            model_id or model_fingerprint(model), files, order,
            {"options": asdict(options), "preprocessing": preprocessing.describe()})
        saved = load_state(state_file, fingerprint, torch_device) if resume else None
    run = saved or SavedRun(fingerprint, 0, {}, [])
    resumed_from = run.done
    miner = _Miner(run.layers, options, torch_device)
    bar = _progress_bar(len(order), run.done, progress)
    original = _device_of(model)
    count = 0
    try:
        model.to(torch_device)
        with ConvHooks(model, miner, chosen):
            model.eval()
            last_saved = run.done
            for batch in batches(files, preprocessing, order[run.done:], batch_size=batch_size,
                                 workers=workers):
                miner.run(model, batch, files)
                run.skipped.extend(batch.skipped)
                run.done += batch.count
                count += 1
                bar.update(batch.count)
                if state_file is not None and (run.done - last_saved >= checkpoint_every):
                    save_state(state_file, run)
                    last_saved = run.done
                if on_batch is not None:
                    on_batch(MineProgress(run.done, len(order), run.done - len(run.skipped),
                                          len(run.skipped), count))
    finally:
        bar.close()
        model.to(original)
    decoded = run.done - len(run.skipped)
    if decoded == 0:
        first = run.skipped[0]
        raise ReportError(f"None of the {len(order)} dataset files could be used as an image "
                          f"(e.g. '{first.path}': {first.reason})")
    if state_file is not None:
        remove_state(state_file)
    return MineResult(files, options, preprocessing, run.layers, decoded, run.skipped,
                      resumed_from, time.perf_counter() - started)


class _Miner:
    """The hook callback: folds each conv output of the current batch into its layer state."""

    def __init__(self, layers: dict[str, LayerState], options: MineOptions,
                 device: torch.device) -> None:
        self.layers = layers
        self.options = options
        self.device = device
        self.calls: dict[str, int] = {}
        self.images = torch.empty(0, dtype=torch.int64)
        self.priorities = np.empty(0, dtype=np.int64)

    def run(self, model: nn.Module, batch: Batch, files: DatasetFiles) -> None:
        if not batch.images.shape[0]:
            return
        self.calls = {}
        self.images = batch.indices.to(self.device)
        self.priorities = np.array([priority(files.paths[i]) for i in batch.indices.tolist()],
                                   dtype=np.int64)
        with torch.no_grad():
            model(_laid_out(batch.images.to(self.device), model))

    def __call__(self, name: str, call: int, module: nn.Conv2d, output: torch.Tensor) -> None:
        # ConvHooks counts calls over the whole run; a module's n-th call *in this batch*
        # is what names it (``layer@2``), as in the single-image report.
        nth = self.calls[name] = self.calls.get(name, 0) + 1
        recorded = record_name(name, nth)
        flat = output.detach().flatten(2)  # (B, C, H*W): a view, channels-last included
        raw = flat.amax(dim=2).float()
        scores = raw.clamp_min(0) if self.options.rectify else raw
        state = self.layers.get(recorded)
        if state is None:
            state = self.layers[recorded] = LayerState.new(
                recorded, name, int(output.shape[1]),
                (int(output.shape[2]), int(output.shape[3])), k=self.options.k,
                sample_size=self.options.sample_size, device=self.device)
        rectify = self.options.rectify

        def locate(rows: torch.Tensor, channels: torch.Tensor) -> torch.Tensor:
            # First maximum in row-major order; a rectified map whose maximum is <= 0 shows
            # only zeros, whose first maximum is (0, 0).
            found = flat[rows, channels].argmax(dim=1)
            if rectify:
                found = torch.where(raw[rows, channels] > 0, found, 0)
            return found

        state.update(scores, self.images, self.priorities, locate)


def _check_options(options: MineOptions, files: int) -> None:
    if options.k < 1:
        raise ReportError(f"--top-k must be at least 1, not {options.k}.")
    if options.sample_size < 1:
        raise ReportError(f"The quantile sample size must be at least 1, not "
                          f"{options.sample_size}.")
    if files > MAX_IMAGES:
        raise ReportError(f"A dataset run handles at most {MAX_IMAGES:,} images, not {files:,}.")


def _chosen_layers(model: nn.Module, wanted: Sequence[str] | None) -> list[str]:
    names = [name for name, _ in conv_layers(model)]
    if not names:
        raise ReportError(f"{type(model).__name__} has no Conv2d layer, so there is nothing to "
                          "mine.")
    if wanted is None:
        return names
    unknown = [name for name in wanted if name not in names]
    if unknown:
        raise ReportError(f"No conv layer named {', '.join(unknown)}; conv layers are "
                          f"{', '.join(names[:6])}{', ...' if len(names) > 6 else ''}.")
    return list(wanted)


def _progress_bar(total: int, done: int, enabled: bool | None) -> Any:
    from tqdm import tqdm

    if enabled is None:
        enabled = sys.stderr.isatty()
    return tqdm(total=total, initial=done, unit="img", desc="dataset", file=sys.stderr,
                disable=not enabled, dynamic_ncols=True, smoothing=0.1)


def _laid_out(batch: torch.Tensor, model: nn.Module) -> torch.Tensor:
    """Channels-last for torchvision's models, as the single-image build runs them.

    (Same rule as ``reportgen.build._laid_out``: oneDNN is faster and leaner on
    channels-last for those; a user's module may ``.view()`` activations, which breaks it.)
    """
    if type(model).__module__.startswith("torchvision.models."):
        return batch.contiguous(memory_format=torch.channels_last)
    return batch.contiguous()


def _device_of(model: nn.Module) -> torch.device:
    for tensor in model.parameters():
        return tensor.device
    return torch.device("cpu")
