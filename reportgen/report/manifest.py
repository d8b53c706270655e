"""``manifest.json``: the machine-readable record of a report, written and read here only.

Readers (scripts, the figure command, a paper's supplement) rely on its keys; bump
``SCHEMA_VERSION`` when a key changes meaning. Written with sorted keys and no NaN, so two
builds of the same thing give the same bytes. :func:`to_json` is the one writer of the
:class:`~reportgen.report.model.ReportRecord`; :func:`read` the one reader, which gives back
the typed :class:`SavedReport` that the figure command, the single-file writer and the site
folder checks use.
"""
from __future__ import annotations

import json
import platform
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from reportgen.errors import ReportError
from reportgen.forward.stats import FLAT_FRACTION
from reportgen.inputs.preprocess import Preprocessing
from reportgen.options import BuildOptions
from reportgen.pictures import ranges
from reportgen.report.jsontext import indented
from reportgen.report.model import (
    IN_MEMORY_WEIGHTS,
    LayerRecord,
    ModelInfo,
    Prediction,
    ReportRecord,
)
from reportgen.sitelayout import (
    EXAMPLES_DIR,
    IMAGE_DIR,
    INDEX,
    MANIFEST,
    NO_JEKYLL,
    SINGLE_FILE,
    STATIC_DIR,
    is_layer_page,
)

#: 2: "channel" normalisation became robust percentiles (1: min-max, now "minmax"); layers
#: gained channels.channel_min, .flat, .shown_low, .shown_high.
#: 3: layers may be other modules than convolutions (kind "other": conv, filters and the
#: filter keys null, "layer" says what it is and how its output was read); layers[i].kind;
#: model.kind (torchvision, timm, module, file, object); preprocessing.applied, .channels,
#: .pad, .summary.
#: 4: a layer's examples file holds, per channel, {top, inhibiting, top_note, inhibiting_note}
#: (was: the top list); image_percentile is null where every dataset image ties.
SCHEMA_VERSION = 4
GENERATOR = "reportgen"


def versions() -> dict[str, str]:
    import numpy
    import torch
    import torchvision

    from reportgen import __version__

    return {"reportgen": __version__, "torch": torch.__version__,
            "torchvision": torchvision.__version__, "numpy": numpy.__version__,
            "python": platform.python_version()}


# ------------------------------------------------------------------ writing
def to_json(record: ReportRecord) -> dict[str, Any]:
    """The manifest's JSON object (the contract: field names and meaning).

    ``image`` and ``predictions`` are the first image's; a report of several images also has
    ``inputs`` (each image, its input picture and predictions) and ``layers[i].images``.
    """
    data = {
        "schema_version": SCHEMA_VERSION,
        "generator": GENERATOR,
        "created": record.created,
        "versions": record.versions,
        "command": record.command,
        "model": {"name": record.model.name, "class": record.model.class_name,
                  "parameters": record.model.parameters,
                  "conv_layers": record.model.conv_layers, "kind": record.model.kind,
                  **({"file_sha256": record.model.source_sha256}
                     if record.model.source_sha256 else {})},
        "weights": record.weights,
        "image": record.image,
        "preprocessing": record.preprocessing,
        "options": record.options.recorded(),
        "shown": record.shown,
        "normalization": {"mode": record.options.normalize,
                          "description": ranges.describe(record.options.normalize),
                          "percentiles": list(ranges.PERCENTILES),
                          "ring_excluded_from": ranges.RING_FROM,
                          "flat_fraction": FLAT_FRACTION},
        "notes": record.notes,
        "predictions": _predictions(record.predictions),
        "layers": [layer_json(layer, several=len(record.inputs) > 1) for layer in record.layers],
    }
    if record.dataset is not None:
        summary = record.dataset
        data["dataset"] = {"root": summary.root, "files": summary.files,
                           "images": summary.images, "top_k": summary.top_k,
                           "score": summary.score, "quantile_sample": summary.sample_size,
                           "skipped": [{"path": path, "reason": reason}
                                       for path, reason in summary.skipped]}
    if len(record.inputs) > 1:
        data["inputs"] = [{"image": view.image, "input": view.png,
                           "predictions": _predictions(view.predictions)}
                          for view in record.inputs]
    return data


def _predictions(predictions: list[Prediction]) -> list[dict[str, Any]]:
    return [{"label": p.label, "index": p.index, "probability": round(p.probability, 6)}
            for p in predictions]


def layer_json(layer: LayerRecord, several: bool = False) -> dict[str, Any]:
    activation, filters = layer.activation, layer.filters
    spec = asdict(layer.spec)
    spec.pop("name")
    # Shallow: asdict deep-copies every number of every per-channel list, one by one.
    stats = {key: list(value) if isinstance(value, list) else value
             for key, value in vars(layer.stats).items()}
    per_channel = {key: stats.pop(key) for key in
                   ("channel_mean", "channel_min", "channel_max", "channel_fraction_positive")}
    per_channel["flat"] = stats.pop("channel_flat")
    per_channel["shown_low"], per_channel["shown_high"] = activation.low, activation.high
    shape = stats.pop("shape")
    entry = {
        "name": layer.name,
        "module": layer.module_name,
        "call": layer.call,
        "page": layer.page,
        "kind": "conv" if layer.is_conv else "other",
        "activation": activation.png,
        "filters": filters.png if filters else None,
        "output_shape": [1, *shape],
        "conv": spec if layer.is_conv else None,
        **({} if layer.is_conv else {"layer": {**spec, "how": getattr(layer.spec, "how", "")}}),
        "stats": stats,
        "channels": per_channel,
        "ranking": layer.ranking,
        "grid": {**asdict(activation.layout), "width": activation.layout.width,
                 "height": activation.layout.height, "map_height": activation.map_size[0],
                 "map_width": activation.map_size[1], "shrunk": activation.shrunk},
        "filter_view": filters.view if filters else None,
        "filter_grid": (None if filters is None or filters.layout is None else
                        {**asdict(filters.layout), "scale": filters.scale}),
        "strongest_input": filters.strongest_input if filters else None,
        "weight_stats": filters.weight_stats if filters else None,
    }
    if layer.dataset is not None:
        # the examples themselves (17,056 channels x k for MobileNetV2) are in their own file
        entry["examples"] = layer.dataset.examples_json
        summaries = layer.dataset.summaries
        entry["dataset_stats"] = {"count": summaries[0].count if summaries else 0} | {
            key: [float(f"{getattr(s, key):.6g}") for s in summaries]
            for key in ("mean", "min", "max", "p50", "p90", "p99")}
        entry["image_percentile"] = layer.dataset.percentile
        field = layer.dataset.receptive_field
        entry["receptive_field"] = {"size": field.size, "stride": field.stride,
                                    "offset": field.offset}
    if layer.feature_vis is not None:
        vis = layer.feature_vis
        entry["feature_vis"] = {"steps": vis.steps, "size": vis.size, "channels": vis.channels}
    if layer.attribution is not None:
        why = layer.attribution
        entry["attribution"] = {"class": why.class_index, "label": why.label, "cam": why.cam_png,
                                "contribution": why.contribution}
    if several:  # each image's picture (all on the shared range) and per-channel numbers
        entry["images"] = [{"activation": view.png,
                            "channel_mean": view.stats.channel_mean,
                            "channel_max": view.stats.channel_max,
                            "flat": view.stats.channel_flat,
                            "ranking": view.ranking} for view in layer.images]
    return entry


def write(site: Path, record: ReportRecord) -> dict[str, Any]:
    """Write ``site/manifest.json``; return the JSON object written."""
    data = to_json(record)
    _dump(site, data)
    return data


def record_files(site: Path, data: dict[str, Any], single_file: bool) -> dict[str, Any]:
    """Add ``files`` (every file of the site, itself included, and the ``single_file`` about
    to be made from it) to the manifest, so a rebuild knows which files in the folder are
    ours and keeps the others."""
    files = {path.relative_to(site).as_posix() for path in site.rglob("*") if path.is_file()}
    data = {**data, "files": sorted({*files, MANIFEST, *([SINGLE_FILE] if single_file else [])})}
    _dump(site, data)
    return data


def written_files(data: dict[str, Any], site: Path) -> list[str]:
    """The files reportgen wrote in ``site``: the manifest's list; a report from before the list
    existed, the files under the names reportgen writes."""
    listed = data.get("files")
    if isinstance(listed, list):
        return [str(name) for name in listed]
    return [path.relative_to(site).as_posix() for path in site.rglob("*")
            if path.relative_to(site).parts[0] in _OWN_NAMES
            or is_layer_page(path.name) and path.parent == site]


#: What an older report (no ``files`` list) may hold at its top level.
_OWN_NAMES = frozenset({MANIFEST, INDEX, SINGLE_FILE, NO_JEKYLL, IMAGE_DIR, STATIC_DIR,
                        EXAMPLES_DIR})


def _dump(site: Path, data: dict[str, Any]) -> None:
    (site / MANIFEST).write_text(indented(data) + "\n", encoding="utf-8")


# ------------------------------------------------------------------ reading
@dataclass(frozen=True)
class SavedLayer:
    name: str
    page: str


@dataclass(frozen=True)
class SavedReport:
    """What a reader needs of a built report, typed; ``data`` keeps the whole JSON object."""

    path: Path
    created: str
    command: str | None
    model: ModelInfo
    weights: dict[str, Any]
    image: dict[str, Any]
    preprocessing: Preprocessing
    options: BuildOptions
    layers: list[SavedLayer]
    data: dict[str, Any]

    @property
    def in_memory_model(self) -> bool:
        return self.weights.get("name") == IN_MEMORY_WEIGHTS


def manifest_path(source: Path) -> Path:
    """A report's folder or its manifest.json: the manifest's path."""
    return source / MANIFEST if source.is_dir() else source


def load_json(source: Path) -> dict[str, Any] | None:
    """The manifest's JSON object when ``source`` holds a reportgen manifest, else None."""
    try:
        data = json.loads(manifest_path(source).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) and data.get("generator") == GENERATOR else None


def is_report(folder: Path) -> bool:
    """A folder we wrote: its manifest says so."""
    return load_json(folder) is not None


def read(source: Path) -> SavedReport:
    """Read a report's manifest (``source`` is its folder or the file); a clear error if not."""
    path = manifest_path(source)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ReportError(f"No {MANIFEST} in '{source}'; --from takes a report's folder "
                          "(such as site/) or its manifest.json.") from None
    except (OSError, ValueError) as error:
        raise ReportError(f"Cannot read '{path}': {error}.") from None
    if not isinstance(data, dict) or data.get("generator") != GENERATOR:
        raise ReportError(f"'{path}' is not a reportgen manifest.")
    try:
        model = data["model"]
        return SavedReport(
            path=path, created=str(data.get("created", "")), command=data.get("command"),
            model=ModelInfo(model["name"], model.get("class", model["name"]),
                            int(model.get("parameters", 0)), int(model.get("conv_layers", 0)),
                            str(model.get("kind", "torchvision")), model.get("file_sha256")),
            weights=dict(data["weights"]), image=dict(data["image"]),
            preprocessing=Preprocessing.from_description(data["preprocessing"]),
            options=BuildOptions.from_recorded(data.get("options", {})),
            layers=[SavedLayer(str(layer["name"]), str(layer["page"]))
                    for layer in data.get("layers", [])],
            data=data)
    except (KeyError, TypeError, ValueError) as error:
        raise ReportError(f"'{path}' lacks what is needed ({error}); rebuild the report "
                          "with this version of reportgen.") from None
