"""One streaming pass over a dataset: what excites each channel, and how much it usually fires.

For every image and channel, the forward hooks (:mod:`reportgen.dataset.hooks`) take the
spatial maximum of the *shown map* (the conv output, or max(0, output) with ``rectify``) and
where it is, and each batch is folded into every layer's :class:`LayerState`. Nothing
proportional to the number of images is kept. This module drives the run: decoding, the
progress bar, checkpoints and resuming.
"""
from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from torch import nn

from reportgen.dataset.decode import Batch, Skipped, batches
from reportgen.dataset.devicedecode import chosen_decode, device_batches
from reportgen.dataset.files import DatasetFiles
from reportgen.dataset.hooks import Miner
from reportgen.dataset.layer import Example, LayerState
from reportgen.dataset.state import (
    SavedRun,
    load_state,
    remove_state,
    run_fingerprint,
    save_state,
)
from reportgen.dataset.stats import DEFAULT_SAMPLE_SIZE
from reportgen.dataset.topk import MAX_DATASET_IMAGES
from reportgen.errors import ReportError
from reportgen.forward.device import moved_to, parse_device
from reportgen.forward.hooks import ConvHooks, conv_layers, named_convs
from reportgen.inputs.preprocess import Preprocessing
from reportgen.inputs.weightfiles import model_fingerprint
from reportgen.options import DEFAULT_TOP_K
from reportgen.progress import bar as progress_bar

#: Seconds of work a Ctrl-C can lose. A count of files is minutes on a CPU and a fraction of
#: a second on a GPU; elapsed time is the same promise on both.
DEFAULT_CHECKPOINT_SECONDS = 30.0


@dataclass(frozen=True)
class MineOptions:
    """What decides the result (and so the resume fingerprint); run-control lives elsewhere.

    ``layers``: conv module paths (as :func:`reportgen.forward.hooks.conv_layers` names them), or
    ``None`` for every conv. ``k``: examples kept per channel. ``rectify``: rank by
    max(0, output), as the report's ``--rectify`` shows. ``sample_size``: images in the
    quantile sample (memory ``4 * sample_size`` bytes per channel; see
    :mod:`reportgen.dataset.stats` for the error it buys).
    """

    layers: tuple[str, ...] | None = None
    k: int = DEFAULT_TOP_K
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
    startup_seconds: float = 0.0  # starting or joining a cluster (Ray), not in ``seconds``

    def examples(self, layer: str, channel: int) -> list[DatasetExample]:
        return [DatasetExample(self.files.paths[example.image], example)
                for example in self.layers[layer].examples(channel)]


def mine(model: nn.Module, files: DatasetFiles, preprocessing: Preprocessing,
         options: MineOptions = MineOptions(), *, batch_size: int = 32, workers: int = 0,
         device: str | torch.device = "cpu", indices: Sequence[int] | None = None,
         state_file: Path | None = None, resume: bool = True,
         checkpoint_seconds: float = DEFAULT_CHECKPOINT_SECONDS,
         checkpoint_every: int | None = None, model_id: str | None = None,
         progress: bool | None = None, decode: str = "cpu",
         on_batch: Callable[[MineProgress], None] | None = None) -> MineResult:
    """Run the model over ``files`` once and keep, per channel, its top-k images and stats.

    ``indices`` restricts the run to some files (global indices are kept, so partial results
    of disjoint index sets merge with :meth:`LayerState.merge`). With ``state_file``, the
    run saves itself after the first batch that ends ``checkpoint_seconds`` after the last
    save (or the start), or every ``checkpoint_every`` files when that is given (the same
    checkpoints on any machine, for tests), and, with ``resume``, continues a saved run of
    the same fingerprint; ``model_id`` names the weights so they need not be
    hashed. ``progress`` draws a tqdm bar on stderr (default: only when stderr is a TTY).
    Undecodable files are skipped; the run fails only when none decodes. ``decode`` is
    ``"cpu"`` (each file decoded in a DataLoader worker), ``"device"`` (JPEGs decoded in
    batches on ``device``, :mod:`reportgen.dataset.devicedecode`) or ``"auto"`` (device on a
    GPU).
    """
    started = time.perf_counter()
    plan = RunPlan.of(model, files, options, indices)
    chosen, order = plan.layers, plan.order
    torch_device = parse_device(device)
    decode = chosen_decode(decode, torch_device)
    fingerprint = ""
    saved: SavedRun | None = None
    if state_file is not None:
        fingerprint = run_fingerprint(
            model_id or model_fingerprint(model), files, order,
            {"options": asdict(options), "preprocessing": preprocessing.describe(),
             # nvJPEG's pixels are not libjpeg's: a GPU-decoded run resumes only as one.
             "decode": decode if decode == "cpu" else f"{decode}:{torch_device.type}"})
        saved = load_state(state_file, fingerprint, torch_device) if resume else None
    run = saved or SavedRun(fingerprint, 0, {}, [])
    resumed_from = run.done
    miner = Miner(run.layers, k=options.k, rectify=options.rectify,
                  sample_size=options.sample_size, device=torch_device)
    bar = progress_bar("dataset", len(order), "img", progress, initial=run.done)
    count = 0
    try:
        with moved_to(model, torch_device), ConvHooks(model, miner, chosen):
            model.eval()
            last_saved, saved_at = run.done, time.monotonic()
            for batch in _batches(files, preprocessing, order[run.done:], batch_size, workers,
                                  decode, torch_device):
                miner.run(model, batch, files)
                run.skipped.extend(batch.skipped)
                run.done += batch.count
                count += 1
                bar.update(batch.count)
                due = (run.done - last_saved >= checkpoint_every if checkpoint_every
                       else time.monotonic() - saved_at >= checkpoint_seconds)
                if state_file is not None and due:
                    run.layers = miner.states()
                    save_state(state_file, run)
                    last_saved, saved_at = run.done, time.monotonic()
                if on_batch is not None:
                    on_batch(MineProgress(run.done, len(order), run.done - len(run.skipped),
                                          len(run.skipped), count))
    finally:
        bar.close()
    # The result is read on the CPU (crops, pages): one copy now, not one per channel later.
    run.layers = {name: state.to("cpu") for name, state in miner.states().items()}
    decoded = run.done - len(run.skipped)
    if decoded == 0:
        first = run.skipped[0]
        raise ReportError(f"None of the {len(order)} dataset files could be used as an image "
                          f"(e.g. '{first.path}': {first.reason})")
    if state_file is not None:
        remove_state(state_file)
    return MineResult(files, options, preprocessing, run.layers, decoded, run.skipped,
                      resumed_from, time.perf_counter() - started)


def _batches(files: DatasetFiles, preprocessing: Preprocessing, indices: Sequence[int],
             batch_size: int, workers: int, decode: str,
             device: torch.device) -> Iterator[Batch]:
    if decode == "device":
        return device_batches(files, preprocessing, indices, batch_size=batch_size,
                              workers=workers, device=device)
    return batches(files, preprocessing, indices, batch_size=batch_size, workers=workers)


@dataclass(frozen=True)
class RunPlan:
    """What a dataset pass will run, checked before it starts: the same for every engine
    (the local one here, :mod:`reportgen.dataset.ray_engine`), so both refuse the same input
    with the same line."""

    layers: list[str]  # conv module paths, in forward order unless the options chose some
    order: list[int]  # the files' global indices, in the order they are run

    @classmethod
    def of(cls, model: nn.Module, files: DatasetFiles, options: MineOptions,
           indices: Sequence[int] | None = None) -> RunPlan:
        if options.k < 1:
            raise ReportError(f"--top-k must be at least 1, not {options.k}.")
        if options.sample_size < 1:
            raise ReportError(f"The quantile sample size must be at least 1, not "
                              f"{options.sample_size}.")
        if len(files) > MAX_DATASET_IMAGES:
            raise ReportError(f"A dataset run handles at most {MAX_DATASET_IMAGES:,} images, not "
                              f"{len(files):,}.")
        names = [name for name, _ in conv_layers(model)]
        if not names:
            raise ReportError(f"{type(model).__name__} has no Conv2d layer, so there is "
                              "nothing to mine.")
        layers = names if options.layers is None else list(options.layers)
        named_convs(model, layers)
        order = list(range(len(files)) if indices is None else indices)
        if not order:
            raise ReportError("The dataset selection is empty; there are no images to run.")
        return cls(layers, order)
