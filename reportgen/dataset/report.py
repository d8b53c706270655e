"""The dataset's part of a report: mine before the single-image pass, pictures after it.

:func:`mine_for_report` runs the streaming pass over the dataset (resumable, with its state
beside the site folder, never inside the staged one) and measures the receptive fields;
:func:`dataset_layers` then cuts the winning crops into the staged site, writes one examples
file per layer and places the report's own image against the dataset, channel by channel.
"""
from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from reportgen.analysis import LayerContext, ModelContext
from reportgen.dataset.claims import inhibiting_note, ranking_note
from reportgen.dataset.crops import write_crops
from reportgen.dataset.files import DatasetFiles, list_dataset
from reportgen.dataset.mine import MineOptions, MineResult, mine
from reportgen.dataset.receptive import DEFAULT_START, ReceptiveField, receptive_fields
from reportgen.dataset.record import DatasetSummary, LayerDataset
from reportgen.dataset.state import state_path
from reportgen.errors import ReportError
from reportgen.forward.capture import Capture
from reportgen.inputs.inputsize import check_input_size
from reportgen.inputs.preprocess import Preprocessing
from reportgen.options import BuildOptions, path_base_name
from reportgen.pictures.pngio import PngWriter
from reportgen.sitelayout import EXAMPLES_DIR, examples_json

log = logging.getLogger(__name__)

#: The dataset range of --normalize dataset: 0 to this quantile of a channel's peaks.
RANGE_QUANTILE = 0.99


@dataclass(frozen=True)
class DatasetRun:
    """A finished pass: the per-layer results, and where each map position looks."""

    files: DatasetFiles
    result: MineResult
    fields: dict[str, ReceptiveField]

    def summary(self, options: BuildOptions) -> DatasetSummary:
        return DatasetSummary(
            root=path_base_name(str(self.files.root)), files=len(self.files),
            images=self.result.decoded,
            skipped=[(item.path, item.reason) for item in self.result.skipped],
            top_k=options.top_k, sample_size=self.result.options.sample_size,
            resumed_from=self.result.resumed_from)

    def first_image(self) -> str:
        """Where the first file that decoded is (a path or a URL): the report's image when
        none was given."""
        skipped = {item.index for item in self.result.skipped}
        first = next(index for index in range(len(self.files)) if index not in skipped)
        return self.files.location(first)

    def peaks(self) -> dict[str, torch.Tensor]:
        """Per layer, each channel's p99 peak over the dataset: --normalize dataset's white."""
        return {name: state.quantiles((RANGE_QUANTILE,))[0].float()
                for name, state in self.result.layers.items()}


def dataset_files(options: BuildOptions) -> DatasetFiles | None:
    """The dataset's files, listed (and a missing or empty one refused) before any work."""
    return None if options.dataset is None else list_dataset(options.dataset, options.limit)


def mine_for_report(module: nn.Module, files: DatasetFiles, layers: list[str],
                    preprocessing: Preprocessing, options: BuildOptions, site_dir: Path,
                    model_id: str | None, progress: bool) -> DatasetRun:
    """One pass over the dataset's ``files`` with hooks on ``layers`` (conv module paths)."""
    # Before the pass (cached, and seconds at most): a model whose fields cannot be measured
    # fails here, not after an hour of mining whose saved state is already gone; so does a
    # size the model cannot take (meta shapes: milliseconds), with the --size it can.
    check_input_size(module, preprocessing.crop, type(module).__name__, preprocessing.channels)
    started = time.perf_counter()
    # From the model's own size when it is smaller: a small fixed-size model (MNIST's 28)
    # may not run at all on the probe's usual start.
    fields = receptive_fields(module, layers, start=min(DEFAULT_START, preprocessing.crop))
    fields_seconds = time.perf_counter() - started
    mine_options = MineOptions(layers=tuple(layers), k=options.top_k, rectify=options.rectify)
    bars = None if progress else False  # a bar only on a terminal, never in a pipe or a log
    if options.engine == "ray":
        from reportgen.dataset.ray_engine import RaySettings, mine_ray

        result = mine_ray(module, files, preprocessing, mine_options,
                          batch_size=options.batch_size, device=options.device,
                          settings=RaySettings(options.ray_address, options.ray_actors),
                          progress=bars)
    else:
        with torch.random.fork_rng(devices=[]), threads_beside_workers(options.workers):
            result = mine(module, files, preprocessing, mine_options,
                          batch_size=options.batch_size, workers=options.workers,
                          device=options.device,
                          decode=options.decode,
                          # No resume for a URL: its files cannot be stat()ed cheaply.
                          state_file=None if files.remote else state_path(site_dir),
                          resume=options.resume, model_id=model_id, progress=bars)
    startup = (f", after {result.startup_seconds:.1f} s starting Ray"
               if options.engine == "ray" else "")
    log.info("Dataset (%s engine): %d images in %.1f s (%.1f images/s%s); receptive fields "
             "%.1f s", options.engine, result.decoded, result.seconds,
             result.decoded / max(result.seconds, 1e-9), startup, fields_seconds)
    return DatasetRun(files, result, fields)


@contextmanager
def threads_beside_workers(workers: int) -> Iterator[None]:
    """torch computes with the cores the decoding processes leave (at least one).

    With 2 OpenMP threads and 2 decoding processes on 2 cores, a MobileNetV2 batch ran about
    4 times slower than with 1 thread: the threads wait at barriers for a core a decoder has.
    """
    threads = torch.get_num_threads()
    torch.set_num_threads(max(1, min(threads, (os.cpu_count() or 1) - workers)))
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def dataset_layers(run: DatasetRun, captures: list[Capture], site: Path, writer: PngWriter,
                   options: BuildOptions) -> dict[str, LayerDataset]:
    """Crops, examples files and the image's percentiles, per captured layer."""
    crops = write_crops(run.result, run.fields, site, batch_size=options.batch_size,
                        workers=options.workers, writer=writer,
                        slugs={capture.name: capture.slug for capture in captures})
    (site / EXAMPLES_DIR).mkdir(exist_ok=True)
    layers = {}
    for capture in captures:
        state, layer_crops = run.result.layers.get(capture.name), crops.get(capture.name)
        if state is None or layer_crops is None:
            continue
        path = examples_json(capture.slug)
        peaks = state.stats.maxs.tolist()
        notes = [(ranking_note(state.ranking(channel), state.stats.count, peaks[channel]),
                  inhibiting_note(state.inhibiting(channel), state.stats.count))
                 for channel in range(state.channels)]
        entries = [{"top": [example.to_json() for example in top],
                    "inhibiting": [example.to_json() for example in low],
                    "top_note": note[0], "inhibiting_note": note[1]}
                   for top, low, note in zip(layer_crops.examples, layer_crops.inhibiting,
                                             notes, strict=True)]
        (site / path).write_text(json.dumps(entries, sort_keys=True, separators=(",", ":"))
                                 + "\n", encoding="utf-8")
        percentile = [round(share, 2) for share in state.percentiles(capture.stats.channel_max)]
        layers[capture.name] = LayerDataset(path, layer_crops.examples, state.summaries(),
                                            percentile, layer_crops.receptive_field,
                                            layer_crops.sheet_sizes, layer_crops.inhibiting,
                                            notes)
    return layers


class DatasetExamples:
    """The analysis: what excites each channel over a dataset (see :mod:`reportgen.analysis`).

    Its long pass runs before the report's forward pass (:func:`mine_for_report`, which the
    build calls, as the dataset may also give the report its image and ranges); ``run`` cuts
    the crops and places the report's image against the dataset."""

    name = "dataset"
    stage = "dataset crops"
    needs_all_threads = False

    def wanted(self, options: BuildOptions) -> bool:
        return options.dataset is not None

    def check(self, model: ModelContext) -> None:
        others = [name for name in model.chosen if name not in model.conv_names]
        if others:
            raise ReportError(f"--dataset mines conv layers only; leave {others[0]}"
                              f"{f' and {len(others) - 1} more' if len(others) > 1 else ''} "
                              "out of --layers.")

    def run(self, context: LayerContext) -> dict[str, LayerDataset]:
        if not isinstance(context.dataset, DatasetRun):
            return {}
        return dataset_layers(context.dataset, context.captures, context.site, context.writer,
                              context.options)
