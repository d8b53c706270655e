"""Every build option in one place: its default, its check, and how it is recorded.

:class:`BuildOptions` is the one object the CLI, ``build_report``, the manifest, the Reproduce
section and ``reportgen figure --from`` share (as MkDocs passes one config down). The CLI
turns flags into it, the keyword API folds its keywords into it at the boundary, the manifest's
``options`` is written from it and read back into it. A new option is one field here (with its
``flag`` metadata when it changes what the report shows) plus one click flag.

This module imports no torch, so ``reportgen --help`` stays fast.
"""
from __future__ import annotations

import dataclasses
import math
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import PurePath
from typing import Any

from reportgen.errors import ReportError

#: The inputs a report is built from when none are named (the blog post's VGG16 astronaut).
DEFAULT_MODEL = "vgg16"
DEFAULT_WEIGHTS = "DEFAULT"
DEFAULT_IMAGE = "astronaut"
DEFAULT_SITE_DIR = "site"
#: The input size ``reportgen layers`` computes shapes for.
LAYER_TABLE_SIZE = 224

#: How a map's values become grey levels: a robust range per channel (the default), one over
#: the whole layer, each channel's exact min..max, or (with --dataset) from 0 to the channel's
#: 99th-percentile peak over the dataset (see reportgen.pictures.ranges).
NORMALIZATIONS = ("channel", "layer", "minmax", "dataset")
#: `reportgen figure` runs one image and no dataset, so it has no dataset range.
FIGURE_NORMALIZATIONS = tuple(mode for mode in NORMALIZATIONS if mode != "dataset")
DEFAULT_TOP_K = 9
DEFAULT_BATCH_SIZE = 32
DEFAULT_FEATURE_VIS_STEPS = 512
DEFAULT_FEATURE_VIS_SIZE = 128
#: Where the dataset pass runs: this process and its DataLoader workers, or a Ray cluster
#: (reportgen.dataset.ray_engine). Not recorded: both give the same result.
ENGINES = ("local", "ray")
#: Where the dataset's JPEGs are decoded (reportgen.dataset.devicedecode): "auto" is the
#: model's device with --device cuda, else "cpu" (DataLoader workers). Not recorded.
DECODES = ("auto", "cpu", "device")
#: Options that only mean something with another one (--dataset, --feature-vis).
DATASET_ONLY = ("top_k", "limit")
FEATURE_VIS_ONLY = ("feature_vis_steps", "feature_vis_size")
MIN_TILE_CAP = 8
DEFAULT_TILE_CAP = 256  # longest side of an activation tile, px
DEFAULT_COMPRESS_LEVEL = 1  # PNG zlib level: several times faster than 6 for ~10 % more bytes
_DEVICE = re.compile(r"(cpu|cuda|mps|xpu)(:[0-9]+)?")


def choices(names: tuple[str, ...]) -> str:
    """("a", "b", "c") -> "a, b or c", for messages."""
    return names[0] if len(names) == 1 else f"{', '.join(names[:-1])} or {names[-1]}"


def _recorded(default: Any, flag: str, path: bool = False, repeat: bool = False) -> Any:
    """A field that changes the report's pictures: kept in the manifest and in the command
    that rebuilds the report (``flag``, given once per item of a tuple when ``repeat``); a
    ``path`` is kept by its base name only, so no user's folder layout is published."""
    return field(default=default, metadata={"flag": flag, "path": path, "repeat": repeat})


@dataclass(frozen=True)
class BuildOptions:
    """How to build a report (everything except which model, weights, image and folder)."""

    seed: int = _recorded(0, "--seed")  # for --weights none; never touches the caller's RNG
    #: Globs of layer names, comma-separated ("features.1*,features.2*"); a list or tuple of
    #: globs is accepted too and joined. None: every conv layer.
    layers: str | None = _recorded(None, "--layers")
    normalize: str = _recorded("channel", "--normalize")
    cmap: str = _recorded("gray", "--cmap")
    rectify: bool = _recorded(False, "--rectify")  # show max(0, x) instead of the conv output
    size: int | None = _recorded(None, "--size")  # crop size; None: the weights' own
    tile_cap: int | None = _recorded(DEFAULT_TILE_CAP, "--tile-cap")
    compress_level: int = _recorded(DEFAULT_COMPRESS_LEVEL, "--compress-level")
    #: A folder of images (searched recursively) or a text file listing image paths: each
    #: channel's top dataset examples and dataset statistics join the report.
    dataset: str | None = _recorded(None, "--dataset", path=True)
    top_k: int = _recorded(DEFAULT_TOP_K, "--top-k")  # dataset examples kept per channel
    limit: int | None = _recorded(None, "--limit")  # only the first N dataset files
    batch_size: int = DEFAULT_BATCH_SIZE  # dataset images per forward pass
    workers: int = 2  # DataLoader processes decoding the dataset (0: in this process)
    decode: str = "auto"  # one of DECODES
    resume: bool = True  # continue an interrupted dataset run from its saved state
    #: Feature visualisation: LAYERGLOB:CHANNELS specs, comma-separated (CHANNELS: 0-15, 3,7,9,
    #: topN (most active on the image) or all); optimised as Lucid/Lucent do, cached on disk.
    feature_vis: str | None = _recorded(None, "--feature-vis")
    feature_vis_steps: int = _recorded(DEFAULT_FEATURE_VIS_STEPS, "--feature-vis-steps")
    feature_vis_size: int = _recorded(DEFAULT_FEATURE_VIS_SIZE, "--feature-vis-size")
    cache: bool = True  # reuse cached feature visualisations (--no-cache computes them again)
    #: Attribution: Grad-CAM and per-channel contributions for a class ("top" for the top-1,
    #: a label or an index), all selected layers in one forward and one backward pass.
    explain: str | None = _recorded(None, "--explain")
    device: str = "cpu"
    engine: str = "local"  # "ray": the dataset pass on Ray (pip install 'reportgen[ray]')
    #: With engine "ray": None starts Ray on this machine, "auto" or an address joins a cluster.
    ray_address: str | None = None
    ray_actors: int | None = None  # models running at once (default: one per GPU / 2 CPUs)
    self_contained: bool = False  # also write report.html, the whole report in one file
    categories: tuple[str, ...] | None = None  # class names for the model's outputs
    #: Keyword arguments for a ``--model`` factory (or torchvision/timm builder), as canonical
    #: ``KEY=VALUE`` strings (values are Python literals); a dict is accepted too.
    model_args: tuple[str, ...] = _recorded((), "--model-arg", repeat=True)
    weights_key: str | None = _recorded(None, "--weights-key")  # where in the checkpoint
    #: Unpickle the checkpoint fully (it can run code from the file) instead of as data only.
    trust_checkpoint: bool = _recorded(False, "--trust-checkpoint")
    mean: tuple[float, ...] | None = _recorded(None, "--mean")  # None: the weights' own
    std: tuple[float, ...] | None = _recorded(None, "--std")
    resize: int | None = _recorded(None, "--resize")  # short side before the crop
    crop: bool = _recorded(True, "--no-crop")  # False: resize the long side, pad to a square
    #: False: ``image`` is a tensor used as the model input exactly as given (Python API).
    preprocess: bool = True
    #: A --categories file whose length does not match the outputs is an error (the CLI sets
    #: it: the file was made for this model) instead of a warning.
    categories_must_match: bool = False

    def __post_init__(self) -> None:
        given: object = self.layers  # the keyword API may pass a list of globs
        if isinstance(given, (list, tuple)):
            globs = [str(glob).strip() for glob in given if str(glob).strip()]
            object.__setattr__(self, "layers", ",".join(globs) or None)
        elif given is not None and not isinstance(given, str):
            raise ReportError(f"layers must be a glob string such as 'features.*' or a list of "
                              f"them, not {type(given).__name__}.")
        if self.normalize not in NORMALIZATIONS:
            raise ReportError(f"Unknown normalisation '{self.normalize}'; use "
                              f"{choices(NORMALIZATIONS)}.")
        if self.size is not None and self.size < 1:
            raise ReportError(f"--size must be a positive number of pixels, not {self.size}.")
        if self.tile_cap is not None and self.tile_cap < MIN_TILE_CAP:
            raise ReportError(f"--tile-cap must be at least {MIN_TILE_CAP} pixels, "
                              f"not {self.tile_cap}.")
        if not 0 <= self.compress_level <= 9:
            raise ReportError(f"PNG compression level must be 0-9, not {self.compress_level}.")
        if not _DEVICE.fullmatch(self.device):
            raise ReportError(f"Unknown device '{self.device}'; use cpu or cuda.")
        if self.normalize == "dataset" and self.dataset is None:
            raise ReportError("--normalize dataset needs --dataset DIR (the dataset's ranges).")
        if self.dataset is not None:
            object.__setattr__(self, "dataset", os.fspath(self.dataset))
        if self.top_k < 1:
            raise ReportError(f"--top-k must be at least 1, not {self.top_k}.")
        if self.limit is not None and self.limit < 1:
            raise ReportError(f"--limit must be at least 1, not {self.limit}.")
        if self.feature_vis_steps < 1 or self.feature_vis_size < 16:
            raise ReportError("--feature-vis-steps must be at least 1 and --feature-vis-size "
                              "at least 16 pixels.")
        if self.batch_size < 1 or self.workers < 0:
            raise ReportError("--batch-size must be at least 1 and --workers at least 0.")
        if self.engine not in ENGINES:
            raise ReportError(f"Unknown engine '{self.engine}'; use {choices(ENGINES)}.")
        if self.decode not in DECODES:
            raise ReportError(f"Unknown decode '{self.decode}'; use {choices(DECODES)}.")
        if self.engine == "ray" and self.decode == "device":
            raise ReportError("--decode device works with --engine local; on Ray, Ray Data "
                              "decodes the images.")
        if self.engine != "ray" and (self.ray_address is not None
                                     or self.ray_actors is not None):
            raise ReportError("--ray-address and --ray-actors need --engine ray.")
        if self.engine != "local" and self.dataset is None:
            raise ReportError(f"--engine {self.engine} runs the dataset pass; it needs "
                              "--dataset DIR.")
        if self.ray_actors is not None and self.ray_actors < 1:
            raise ReportError(f"--ray-actors must be at least 1, not {self.ray_actors}.")
        if self.categories is not None:  # a list from the keyword API: keep it hashable
            object.__setattr__(self, "categories", tuple(self.categories))
        from reportgen.inputs.modelspec import normalize_model_args  # no torch in there

        object.__setattr__(self, "model_args", normalize_model_args(self.model_args))
        if self.weights_key is not None and not str(self.weights_key).strip():
            raise ReportError("--weights-key is empty; name a top-level key of the checkpoint.")
        for name in ("mean", "std"):
            object.__setattr__(self, name, _per_channel(name, getattr(self, name)))
        if self.std is not None and any(value <= 0 for value in self.std):
            raise ReportError(f"--std must be positive, not {_joined(self.std)}.")
        if (self.mean is not None and self.std is not None and len(self.mean) != len(self.std)
                and 1 not in (len(self.mean), len(self.std))):
            raise ReportError(f"--mean has {len(self.mean)} values and --std {len(self.std)}; "
                              "give one per input channel for both.")
        if self.resize is not None and self.resize < 1:
            raise ReportError(f"--resize must be a positive number of pixels, not {self.resize}.")
        if self.resize is not None and not self.crop:
            raise ReportError("--resize sets the short side before the centre crop; with "
                              "--no-crop the long side is resized to --size instead.")
        if self.size is not None and self.resize is not None and self.resize < self.size:
            raise ReportError(f"--resize {self.resize} is smaller than --size {self.size}; the "
                              "crop is cut from the resized image.")

    @classmethod
    def fields(cls) -> tuple[str, ...]:
        return tuple(item.name for item in dataclasses.fields(cls))

    def replace(self, **changes: Any) -> BuildOptions:
        """A copy with ``changes``; unknown names are a clear error, not a silent no-op."""
        unknown = sorted(set(changes) - set(self.fields()))
        if unknown:
            raise TypeError(f"Unknown build option{'s' if len(unknown) > 1 else ''}: "
                            f"{', '.join(unknown)}; the options are {', '.join(self.fields())}.")
        return dataclasses.replace(self, **changes)

    @classmethod
    def of(cls, options: BuildOptions | None = None, **overrides: Any) -> BuildOptions:
        """Fold the keyword API into one object: ``options`` (or the defaults) plus overrides."""
        return (options or cls()).replace(**overrides) if overrides else (options or cls())

    def recorded(self) -> dict[str, Any]:
        """What the manifest's ``options`` holds: the options that change the pictures."""
        return {item.name: _base_name(getattr(self, item.name)) if item.metadata["path"]
                else getattr(self, item.name)
                for item in dataclasses.fields(self) if "flag" in item.metadata}

    @classmethod
    def from_recorded(cls, recorded: Mapping[str, Any]) -> BuildOptions:
        """Read a manifest's ``options`` back (keys this version does not know are ignored)."""
        known = {item.name for item in dataclasses.fields(cls) if "flag" in item.metadata}
        return cls(**{key: value for key, value in recorded.items() if key in known})

    def command_words(self, seeded: bool) -> list[str]:
        """The flags that rebuild these pictures, every recorded option spelled out.

        ``--seed`` only matters (and is only given) when the weights were ``seeded`` (random,
        or a factory's model as it builds it); options that are off or unset are left out.
        """
        words: list[str] = []
        recorded = self.recorded()
        for item in dataclasses.fields(self):
            if item.name not in recorded:
                continue
            flag, value = item.metadata["flag"], recorded[item.name]
            if value is None or value == "" or value == ():
                continue
            if item.name == "seed" and not seeded:
                continue
            if item.name in DATASET_ONLY and self.dataset is None:
                continue
            if item.name in FEATURE_VIS_ONLY and self.feature_vis is None:
                continue
            if isinstance(value, bool):  # a switch: given when it differs from its default
                words += [flag] if value != item.default else []
            elif item.metadata.get("repeat"):
                for part in value:
                    words += [flag, str(part)]
            else:
                words += [flag, _joined(value) if isinstance(value, tuple) else str(value)]
        return words


def _per_channel(name: str, given: Any) -> tuple[float, ...] | None:
    """``--mean``/``--std``: "0.5", "0.485,0.456,0.406", a number or a sequence -> floats."""
    if given is None:
        return None
    parts: list[Any]
    if isinstance(given, str):
        parts = [part for part in given.replace(" ", ",").split(",") if part]
    elif isinstance(given, (int, float)):
        parts = [given]
    else:
        parts = list(given)
    try:
        values = tuple(float(part) for part in parts)
    except (TypeError, ValueError):
        values = ()
    if not values or not all(math.isfinite(value) for value in values):
        raise ReportError(f"--{name} '{given}' is not a list of numbers; give one per input "
                          f"channel, such as --{name} 0.485,0.456,0.406 (or one for all).")
    return values


def _joined(values: tuple[Any, ...]) -> str:
    """(0.485, 0.456, 0.406) -> "0.485,0.456,0.406", as --mean takes it."""
    return ",".join(repr(value) if isinstance(value, float) else str(value) for value in values)


def path_base_name(text: str) -> str:
    """How a path is recorded (manifest, Reproduce command, dataset root): its base name, so
    no user's folder layout is published; the text itself when it has none (``.``, ``/``)."""
    return PurePath(text).name or text


def _base_name(value: Any) -> Any:
    return path_base_name(value) if isinstance(value, str) else value
