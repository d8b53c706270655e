"""Save a long dataset run as it goes, so Ctrl-C (or a crash) loses minutes, not hours.

The state file holds each layer's :class:`LayerState`, how many files are done and which were
skipped, plus a fingerprint of everything that decides the result: the model's parameters
(or an id the caller vouches for), the preprocessing, the mining options and the file list
(paths, sizes, mtimes). A rerun whose fingerprint matches continues where the file says;
one that differs starts over, with a log line saying why. Batch size, workers and device are
not in the fingerprint: the result does not depend on them.

Where: :func:`state_path` puts it beside the output folder, as a hidden file
``.<site>.dataset-state.pt``, because the site folder itself is built in a temporary folder
and swapped in at the end. It is removed after a successful run. Writes go to a temporary
file in the same folder and are renamed over the old state (``os.replace``), so an
interrupted save leaves the previous state intact. Loading uses ``weights_only=True``: a
state file is data, never code.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import tempfile
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch

from reportgen.dataset.decode import Skipped
from reportgen.dataset.files import DatasetFiles
from reportgen.dataset.layer import LayerState

log = logging.getLogger(__name__)
#: 2: layers keep k + 1 best peaks (ties beyond the shown k) and a bottom-k of the minima.
STATE_VERSION = 2


@dataclass
class SavedRun:
    """What a rerun needs to continue: ``done`` files of the run's order are accounted for."""

    fingerprint: str
    done: int
    layers: dict[str, LayerState]
    skipped: list[Skipped]


def state_path(site_dir: Path | str) -> Path:
    """The state file of a run writing ``site_dir``: a hidden file beside it."""
    site = Path(os.path.abspath(site_dir))
    return site.parent / f".{site.name}.dataset-state.pt"


def run_fingerprint(model_id: str, files: DatasetFiles, order: Sequence[int],
                    settings: dict[str, Any]) -> str:
    """One hash over the model id, the options and preprocessing, the files and their order."""
    record = {"version": STATE_VERSION, "model": model_id, "settings": settings,
              "files": files.fingerprint(),
              "order": hashlib.sha256(json.dumps(list(order)).encode()).hexdigest()}
    return hashlib.sha256(json.dumps(record, sort_keys=True, default=str).encode()).hexdigest()


def save_state(path: Path, run: SavedRun) -> None:
    """Atomically replace the state file with ``run``."""
    data = {"version": STATE_VERSION, "fingerprint": run.fingerprint, "done": run.done,
            "layers": [layer.to_state() for layer in run.layers.values()],
            "skipped": [asdict(item) for item in run.skipped]}
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(prefix=path.name + ".", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(handle, "wb") as stream:
            torch.save(data, stream)
            stream.flush()
            os.fsync(stream.fileno())
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def load_state(path: Path, fingerprint: str,
               device: torch.device | str = "cpu") -> SavedRun | None:
    """The saved run if there is one for exactly this run, else ``None`` (and a log line)."""
    if not path.exists():
        return None
    try:
        data = torch.load(path, map_location="cpu", weights_only=True)
        if data.get("version") != STATE_VERSION or data.get("fingerprint") != fingerprint:
            log.warning("Ignoring saved dataset state %s: it belongs to a different run "
                        "(model, weights, options or files changed); starting over.", path.name)
            return None
        layers = [LayerState.from_state(item, device) for item in data["layers"]]
        skipped = [Skipped(int(s["index"]), str(s["path"]), str(s["reason"]))
                   for s in data["skipped"]]
        return SavedRun(fingerprint, int(data["done"]),
                        {layer.name: layer for layer in layers}, skipped)
    except Exception as error:  # noqa: BLE001 - a damaged file means start over, not fail
        log.warning("Ignoring unreadable dataset state %s (%s); starting over.", path.name,
                    error)
        return None


def remove_state(path: Path) -> None:
    path.unlink(missing_ok=True)
