"""``manifest.json``: the machine-readable record of a report.

Readers (scripts, the figure command, a paper's supplement) rely on its keys; bump
``SCHEMA_VERSION`` when a key changes meaning. Written with sorted keys and no NaN, so two
builds of the same thing give the same bytes.
"""
from __future__ import annotations

import json
import math
import os
import platform
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

SCHEMA_VERSION = 1


def versions() -> dict[str, str]:
    import numpy
    import torch
    import torchvision

    from reportgen import __version__

    return {"reportgen": __version__, "torch": torch.__version__,
            "torchvision": torchvision.__version__, "numpy": numpy.__version__,
            "python": platform.python_version()}


def build_time() -> str:
    """The only time stamp in a report; honours SOURCE_DATE_EPOCH for reproducible builds."""
    epoch = os.environ.get("SOURCE_DATE_EPOCH")
    seconds = int(epoch) if epoch and epoch.strip().isdigit() else int(time.time())
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(seconds))


def layer_entry(record: Any) -> dict[str, Any]:
    spec = asdict(record.spec)
    spec.pop("name")
    stats = asdict(record.stats)
    per_channel = {key: stats.pop(key) for key in
                   ("channel_mean", "channel_max", "channel_fraction_positive")}
    shape = stats.pop("shape")
    return {
        "name": record.name,
        "module": record.module_name,
        "call": record.call,
        "page": record.page,
        "activation": record.activation_png,
        "filters": record.filters_png,
        "output_shape": [1, *shape],
        "conv": spec,
        "stats": stats,
        "channels": per_channel,
        "ranking": {
            "mean": _ranking(per_channel["channel_mean"]),
            "max": _ranking(per_channel["channel_max"]),
        },
        "grid": {**asdict(record.layout), "width": record.layout.width,
                 "height": record.layout.height, "map_height": record.map_size[0],
                 "map_width": record.map_size[1], "shrunk": record.shrunk},
        "filter_view": record.filter_view,
        "filter_grid": (None if record.filter_layout is None else
                        {**asdict(record.filter_layout), "scale": record.filter_scale}),
        "strongest_input": record.strongest_input,
        "weight_stats": record.weight_stats,
    }


def _ranking(values: list[float]) -> list[int]:
    """Channel indices, most active first; ties keep index order."""
    return sorted(range(len(values)), key=lambda k: (-values[k], k))


def write(path: Path, manifest: dict[str, Any]) -> None:
    text = json.dumps(_finite(manifest), sort_keys=True, indent=1, allow_nan=False,
                      ensure_ascii=False)
    path.write_text(text + "\n", encoding="utf-8")


def _finite(value: Any) -> Any:
    """JSON has no NaN: a non-finite number (a diverged random net) is written as null."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {key: _finite(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(item) for item in value]
    return value
