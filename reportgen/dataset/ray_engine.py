"""The dataset pass on Ray: decode in Ray Data, run the model in a pool of actors, merge here.

Same shape and same result as :func:`reportgen.dataset.mine.mine`, spread over a cluster:

* The driver lists the files (:func:`reportgen.dataset.files.list_dataset`, so indices are the
  local engine's) and hands Ray Data one row per file: its global index, its path and its
  sampling priority (:func:`reportgen.dataset.stats.priority`).
* Ray Data tasks decode and preprocess each file with :func:`reportgen.dataset.decode.
  decode_file`, exactly as the local engine's DataLoader workers do; a file that fails comes
  back flagged, with the same one-line reason.
* A pool of actors (one model each; ``device="cuda"`` gives each actor a GPU) runs a fresh
  :class:`~reportgen.dataset.hooks.Miner` over each batch and returns only that batch's state:
  the top-k candidates, the exact statistics and the sample rows, as the bytes of
  :meth:`LayerState.to_state` (never the activations).
* The driver folds every batch's state into the result with :meth:`LayerState.merge`, whose
  int64 keys and hash-ordered sample make the union independent of how the images were
  split or in which order the batches arrive. Crops are cut later, on the driver, from the
  winning images only (:mod:`reportgen.dataset.crops`), as for the local engine.

A batch's state is a pure function of its images, so when Ray retries a batch whose actor died
(Ray Data's actor pools restart their actors and retry their tasks) the result is unchanged.
Ray is imported here only, and only when this engine runs; without it the run stops with one
line saying how to install it. The files must be readable at the same path from every node (a
local folder on one machine, a shared file system on a cluster).
"""
from __future__ import annotations

import importlib
import io
import json
import logging
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from reportgen.dataset.decode import Batch, Skipped, decode_file
from reportgen.dataset.files import DatasetFiles
from reportgen.dataset.hooks import Miner
from reportgen.dataset.layer import LayerState
from reportgen.dataset.mine import (
    MineOptions,
    MineProgress,
    MineResult,
    RunPlan,
)
from reportgen.dataset.stats import QuantileSample, priority
from reportgen.errors import ReportError
from reportgen.forward.device import device_of, parse_device
from reportgen.forward.hooks import ConvHooks
from reportgen.inputs.preprocess import Preprocessing
from reportgen.progress import bar as progress_bar

INSTALL_HINT = ("--engine ray needs Ray, which is not installed: pip install 'reportgen[ray]' "
                "(or pip install 'ray[data]').")
#: Ray's resource share of one decoding task: half a CPU, so that on a 2-CPU machine an actor
#: holding one CPU still leaves room for decoding.
DECODE_CPUS = 0.5
DEFAULT_OPTIONS = MineOptions()
#: Sample rows are sent only for the files ranked below REACH x the sample size by priority.
REACH = 2
log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RaySettings:
    """Where and how wide to run; none of it changes the result.

    ``address``: ``None`` starts a local Ray instance on this machine (stopped at the end),
    ``"auto"`` or ``"ray://host:10001"`` joins a running cluster. ``actors``: models running at
    once (default: one per GPU with ``cuda``, else one per two CPUs of the cluster).
    ``cpus_per_actor``: Ray's CPU share of an actor, also its torch threads (at least 1).
    ``num_cpus``: CPUs of a local instance (default: all of this machine's).
    """

    address: str | None = None
    actors: int | None = None
    cpus_per_actor: float = 1.0
    num_cpus: int | None = None


def import_ray() -> Any:
    """The ``ray`` module, or the one-line ReportError that says how to install it."""
    try:
        ray = importlib.import_module("ray")
        importlib.import_module("ray.data")
    except ImportError:
        raise ReportError(INSTALL_HINT) from None
    return ray


def mine_ray(model: nn.Module, files: DatasetFiles, preprocessing: Preprocessing,
             options: MineOptions = DEFAULT_OPTIONS, *, batch_size: int = 32,
             device: str | torch.device = "cpu", settings: RaySettings = RaySettings(),
             indices: Sequence[int] | None = None, progress: bool | None = None,
             on_batch: Callable[[MineProgress], None] | None = None) -> MineResult:
    """:func:`reportgen.dataset.mine.mine` on Ray: the same :class:`MineResult`.

    ``result.seconds`` is the pass itself; the time to start or join Ray is in
    ``result.startup_seconds``. There is no state file: Ray retries what fails instead.
    """
    ray = import_ray()
    if batch_size < 1:
        raise ReportError(f"--batch-size must be at least 1, not {batch_size}.")
    plan = RunPlan.of(model, files, options, indices)
    chosen, order = plan.layers, plan.order
    torch_device = parse_device(device) if settings.address is None else torch.device(device)
    started = time.perf_counter()
    ours = not ray.is_initialized()
    if ours:
        _start(ray, settings)
    try:
        startup = time.perf_counter() - started
        started = time.perf_counter()
        result = _run(ray, model, files, preprocessing, options, chosen, order, batch_size,
                      torch_device, settings, progress, on_batch)
    finally:
        # Also on Ctrl-C: a local instance we started goes away with its workers, and on a
        # cluster our driver's actors and tasks are ended when the driver disconnects.
        if ours:
            ray.shutdown()
    result.seconds = time.perf_counter() - started
    result.startup_seconds = startup
    return result


def _start(ray: Any, settings: RaySettings) -> None:
    if settings.address is None:
        ray.init(num_cpus=settings.num_cpus or os.cpu_count() or 1, include_dashboard=False,
                 log_to_driver=False, configure_logging=False)
        return
    try:
        ray.init(address=settings.address, log_to_driver=False, configure_logging=False)
    except ConnectionError as error:
        raise ReportError(f"Cannot join the Ray cluster at '{settings.address}': "
                          f"{str(error).splitlines()[0]}") from None


def _run(ray: Any, model: nn.Module, files: DatasetFiles, preprocessing: Preprocessing,
         options: MineOptions, chosen: list[str], order: list[int], batch_size: int,
         device: torch.device, settings: RaySettings, progress: bool | None,
         on_batch: Callable[[MineProgress], None] | None) -> MineResult:
    """The pass, with sample rows sent only for images that can be in the final sample.

    The sample is the ``sample_size`` decoded images of lowest (priority, index), and the
    driver knows every file's priority: only images ranked below ``REACH`` times that among
    all files can make it, unless more than the surplus of them fail to decode. Then (and only
    then) the pass runs again with every row sent, so the result stays exact.
    """
    _quiet(ray)
    rows: list[dict[str, Any]] = [{"index": index, "path": files.location(index),
             "priority": priority(files.paths[index])} for index in order]
    ranked = sorted((row["priority"], row["index"]) for row in rows)
    reach = REACH * options.sample_size
    cutoff = ranked[reach - 1] if len(ranked) > reach else None
    result = _pass(ray, model, files, preprocessing, options, chosen, rows, batch_size, device,
                   settings, progress, on_batch, cutoff)
    if cutoff is not None:
        lost = sum(1 for item in result.skipped
                   if (priority(item.path), item.index) <= cutoff)
        if reach - lost < options.sample_size:
            log.warning("%d of the %d files that could form the quantile sample did not "
                        "decode; running the pass again to keep the sample exact.", lost, reach)
            result = _pass(ray, model, files, preprocessing, options, chosen, rows, batch_size,
                           device, settings, progress, on_batch, None)
    return result


def _pass(ray: Any, model: nn.Module, files: DatasetFiles, preprocessing: Preprocessing,
          options: MineOptions, chosen: list[str], rows: list[dict[str, Any]], batch_size: int,
          device: torch.device, settings: RaySettings, progress: bool | None,
          on_batch: Callable[[MineProgress], None] | None,
          cutoff: tuple[int, int] | None) -> MineResult:
    cuda = device.type == "cuda"
    actors = settings.actors or _default_actors(ray, cuda)
    if actors < 1:
        raise ReportError(f"The number of Ray actors must be at least 1, not {actors}.")
    order = [int(row["index"]) for row in rows]
    blocks = max(1, min(len(rows) // batch_size, 1000))
    dataset = ray.data.from_items(rows, override_num_blocks=blocks)
    decoded = dataset.map_batches(_decode, fn_kwargs={"preprocessing": preprocessing},
                                  batch_size=batch_size, num_cpus=DECODE_CPUS,
                                  batch_format="numpy")
    original = device_of(model)
    try:  # actors get the weights on the CPU and move them to their own device
        model_ref = ray.put(model.cpu())
    finally:
        model.to(original)
    setup = {"model": [model_ref], "layers": chosen, "k": options.k,
             "rectify": options.rectify, "sample_size": options.sample_size,
             "device": str(device), "threads": max(1, int(settings.cpus_per_actor)),
             "cutoff": None if cutoff is None else list(cutoff)}
    mined = decoded.map_batches(_MineActor, fn_constructor_kwargs=setup, batch_size=batch_size,
                                compute=ray.data.ActorPoolStrategy(size=actors),
                                num_cpus=settings.cpus_per_actor, num_gpus=1 if cuda else 0,
                                batch_format="numpy")
    merged: LayerState | None = None
    slots: list[tuple[str, str, int, int, tuple[int, int]]] = []
    skipped: list[Skipped] = []
    done = count = 0
    bar = progress_bar("dataset", len(order), "img", progress)
    try:
        for row in mined.iter_rows():
            done += int(row["files"])
            count += 1
            for index, reason in json.loads(row["skipped"]):
                skipped.append(Skipped(int(index), files.paths[int(index)], str(reason)))
            blob = bytes(row["state"])
            if blob:
                saved = torch.load(io.BytesIO(blob), map_location="cpu", weights_only=True)
                state = LayerState.from_state(saved["combined"])
                batch_slots = [(str(name), str(module), int(start), int(stop), (int(h), int(w)))
                               for name, module, start, stop, h, w in saved["slots"]]
                if merged is None:
                    merged, slots = state, batch_slots
                elif batch_slots != slots:
                    raise ReportError("The model ran different conv layers on two batches; a "
                                      "dataset run needs the same layers every time.")
                else:
                    merged = _merge(merged, state)
            bar.update(int(row["files"]))
            if on_batch is not None:
                on_batch(MineProgress(done, len(order), done - len(skipped), len(skipped),
                                      count))
    finally:
        bar.close()
    skipped.sort(key=lambda item: item.index)
    decoded_count = done - len(skipped)
    if merged is None or decoded_count == 0:
        first = skipped[0]
        raise ReportError(f"None of the {len(order)} dataset files could be used as an image "
                          f"(e.g. '{first.path}': {first.reason})")
    layers = {name: merged.part(name, module, start, stop, size)
              for name, module, start, stop, size in slots}
    return MineResult(files, options, preprocessing, layers, decoded_count, skipped)


def _merge(merged: LayerState, batch: LayerState) -> LayerState:
    """:meth:`LayerState.merge`, without rebuilding the sample when the batch adds no row
    (most batches once the cutoff applies: the sample is ~1 MB x 100 per 26,560 channels)."""
    if batch.sample.size:
        return merged.merge(batch)
    return LayerState(merged.name, merged.module, merged.channels, merged.map_size,
                      merged.top.merge(batch.top), merged.bottom.merge(batch.bottom),
                      merged.stats.merge(batch.stats), merged.sample)


def _within(sample: QuantileSample, cutoff: tuple[int, int]) -> QuantileSample:
    """The sample's rows whose (priority, image) is at most ``cutoff``."""
    size = sample.size
    priorities, images = sample.priorities[:size], sample.images[:size]
    keep = np.flatnonzero((priorities < cutoff[0]) | (
        (priorities == cutoff[0]) & (images <= cutoff[1])))
    kept = QuantileSample.empty(int(sample.scores.shape[1]), sample.capacity,
                                sample.scores.device)
    count = len(keep)
    kept.priorities[:count], kept.images[:count] = priorities[keep], images[keep]
    kept.scores[:count] = sample.scores[torch.from_numpy(keep).to(sample.scores.device)]
    kept.size = count
    return kept


def _quiet(ray: Any) -> None:
    """Our own progress bar and log line; Ray Data's would repeat them every few seconds."""
    logging.getLogger("ray.data").setLevel(logging.WARNING)


def _default_actors(ray: Any, cuda: bool) -> int:
    resources = ray.cluster_resources()
    if cuda:
        gpus = int(resources.get("GPU", 0))
        if not gpus:
            raise ReportError("--device cuda was asked for but the Ray cluster has no GPU; "
                              "use --device cpu.")
        return gpus
    return max(1, int(resources.get("CPU", 1)) // 2)


def _decode(batch: dict[str, np.ndarray], preprocessing: Preprocessing) -> dict[str, np.ndarray]:
    """Ray Data task: files to preprocessed (C, S, S) arrays; failures flagged, with reasons."""
    size = preprocessing.crop
    images = np.zeros((len(batch["index"]), preprocessing.channels, size, size),
                      dtype=np.float32)
    reasons = []
    for row, (index, path) in enumerate(zip(batch["index"], batch["path"], strict=True)):
        item = decode_file(int(index), str(path), preprocessing)
        if item.tensor is not None:
            images[row] = item.tensor.numpy()
        reasons.append(item.reason)
    return {"index": batch["index"].astype(np.int64), "priority": batch["priority"].astype(
        np.int64), "reason": np.array(reasons, dtype=object), "image": images}


class _MineActor:
    """Ray Data actor: one model, and per batch a fresh Miner whose state is returned."""

    def __init__(self, model: list[Any], layers: list[str], k: int, rectify: bool,
                 sample_size: int, device: str, threads: int,
                 cutoff: list[int] | None) -> None:
        ray = import_ray()
        torch.set_num_threads(threads)
        self.device = torch.device(device)
        self.model: nn.Module = ray.get(model[0]).to(self.device).eval()
        self.layers, self.k, self.rectify, self.sample_size = layers, k, rectify, sample_size
        self.cutoff = None if cutoff is None else (int(cutoff[0]), int(cutoff[1]))

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        reasons = [str(reason) for reason in batch["reason"]]
        ok = np.array([not reason for reason in reasons], dtype=bool)
        indices = torch.from_numpy(np.ascontiguousarray(batch["index"][ok], dtype=np.int64))
        images = torch.from_numpy(np.ascontiguousarray(batch["image"][ok], dtype=np.float32))
        miner = Miner({}, k=self.k, rectify=self.rectify, sample_size=self.sample_size,
                      device=self.device)
        blob = b""
        if len(indices):
            with ConvHooks(self.model, miner, self.layers):
                miner.run_prioritised(self.model, Batch(indices, images, (), len(reasons)),
                                      np.ascontiguousarray(batch["priority"][ok], np.int64))
            assert miner.combined is not None
            if self.cutoff is not None:
                miner.combined.sample = _within(miner.combined.sample, self.cutoff)
            slots = [[name, slot.module, slot.start, slot.stop, *slot.map_size]
                     for name, slot in miner.slots.items()]
            stream = io.BytesIO()
            torch.save({"combined": miner.combined.to_state(), "slots": slots}, stream)
            blob = stream.getvalue()
        bad = [[int(index), reason] for index, reason in zip(batch["index"], reasons,
                                                               strict=True) if reason]
        return {"files": np.array([len(reasons)], dtype=np.int64),
                "state": np.array([blob], dtype=object),
                "skipped": np.array([json.dumps(bad)], dtype=object)}
