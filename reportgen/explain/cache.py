"""Feature visualisations on disk, so a report rebuilt with the same model and settings
does not spend minutes optimising the same pictures again.

One entry per (model weights, layer, channel, settings): ``<key>.png`` and ``<key>.json`` in
a two-letter shard folder. The key hashes the weights' SHA-256 (a hash of the state dict
when there is no file), the layer, the channel and every setting that decides the pixels,
including the transforms version. Files are written to a temporary name and renamed, JSON
last, so a reader sees a whole entry or none, and a damaged entry is just recomputed.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from reportgen.cachedir import cache_dir
from reportgen.explain.featurevis import (
    CHANNELS_PER_BATCH,
    DEFAULT_LR,
    FeatureVisSettings,
    PreparedLayer,
    Progress,
    Visualisation,
    visualise_with,
)
from reportgen.files import atomic_write
from reportgen.inputs.preprocess import Preprocessing
from reportgen.inputs.weightfiles import model_fingerprint
from reportgen.options import DEFAULT_FEATURE_VIS_SIZE, DEFAULT_FEATURE_VIS_STEPS
from reportgen.pictures.pngio import encode_png

log = logging.getLogger(__name__)
_FORMAT = 1  # of the entry files themselves


def default_cache_dir() -> Path:
    """``$REPORTGEN_CACHE_DIR/featurevis``, else ``~/.cache/reportgen/featurevis``."""
    return cache_dir("featurevis")


class FeatureVisCache:
    """The folder of entries; ``get`` and ``put`` one channel's visualisation."""

    def __init__(self, folder: str | os.PathLike[str] | None = None) -> None:
        self.folder = Path(folder) if folder is not None else default_cache_dir()

    def key(self, fingerprint: str, layer: str, channel: int,
            settings: FeatureVisSettings) -> str:
        fields = {"format": _FORMAT, "model": fingerprint, "layer": layer,
                  "channel": int(channel), "settings": settings.describe()}
        return hashlib.sha256(json.dumps(fields, sort_keys=True).encode()).hexdigest()

    def get(self, fingerprint: str, layer: str, channel: int,
            settings: FeatureVisSettings) -> Visualisation | None:
        """The stored entry, or None when there is none or it cannot be read."""
        png, meta = self._paths(self.key(fingerprint, layer, channel, settings))
        try:
            record = json.loads(meta.read_text(encoding="utf-8"))
            from PIL import Image

            with Image.open(png) as opened:
                picture = np.asarray(opened.convert("RGB")).copy()
        except (OSError, ValueError, KeyError, TypeError):
            return None
        if picture.shape != (settings.size, settings.size, 3):
            return None
        return Visualisation(layer, int(channel), picture, float(record["objective"]))

    def put(self, fingerprint: str, visualisation: Visualisation,
            settings: FeatureVisSettings) -> None:
        """Store an entry (PNG first, JSON last). A cache that cannot be written (a read-only
        home, a full disk) costs a recomputation next time, never the report."""
        png, meta = self._paths(self.key(fingerprint, visualisation.layer,
                                         visualisation.channel, settings))
        record = {"layer": visualisation.layer, "channel": visualisation.channel,
                  "objective": visualisation.objective, "model": fingerprint,
                  "settings": settings.describe()}
        try:
            atomic_write(png, lambda path: path.write_bytes(encode_png(visualisation.picture)))
            atomic_write(meta, lambda path: path.write_text(
                json.dumps(record, indent=1, sort_keys=True), encoding="utf-8"))
        except OSError as error:
            log.warning("Feature visualisation cache not written in %s (%s)", self.folder,
                        error)

    def _paths(self, key: str) -> tuple[Path, Path]:
        shard = self.folder / key[:2]
        return shard / f"{key}.png", shard / f"{key}.json"


def visualise_cached(module: nn.Module, layer: str, channels: Sequence[int], *,
                     preprocessing: Preprocessing, weights: Mapping[str, Any] | None = None,
                     fingerprint: str | None = None,
                     cache_dir: str | os.PathLike[str] | None = None, use_cache: bool = True,
                     steps: int = DEFAULT_FEATURE_VIS_STEPS, size: int = DEFAULT_FEATURE_VIS_SIZE,
                     lr: float = DEFAULT_LR, seed: int = 0, rectify: bool = False,
                     batch_size: int = CHANNELS_PER_BATCH, device: str | torch.device = "cpu",
                     threads: int | None = None, progress: Progress | None = None,
                     prepared: PreparedLayer | None = None) -> list[Visualisation]:
    """:func:`~reportgen.explain.featurevis.visualise`, computing only the channels the cache
    lacks (all of them with ``use_cache=False``) and storing what it computed; ``prepared``
    as for :func:`~reportgen.explain.featurevis.visualise_with`."""
    settings = FeatureVisSettings.of(preprocessing, steps=steps, size=size, lr=lr, seed=seed,
                                     rectify=rectify)
    cache = FeatureVisCache(cache_dir)
    model_id = fingerprint or model_fingerprint(module, weights)
    found: dict[int, Visualisation] = {}
    if use_cache:
        for channel in dict.fromkeys(int(c) for c in channels):
            hit = cache.get(model_id, layer, channel, settings)
            if hit is not None:
                found[channel] = hit
    missing = [c for c in dict.fromkeys(int(c) for c in channels) if c not in found]
    if missing:
        for made in visualise_with(module, layer, missing, settings, batch_size=batch_size,
                                   device=device, threads=threads, progress=progress,
                                   prepared=prepared):
            cache.put(model_id, made, settings)
            found[made.channel] = made
    return [found[int(c)] for c in channels]
