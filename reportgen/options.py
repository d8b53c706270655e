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
DEFAULT_TOP_K = 9
DEFAULT_BATCH_SIZE = 32
#: Where the dataset pass runs: this process and its DataLoader workers, or a Ray cluster
#: (reportgen.dataset.ray_engine). Not recorded: both give the same result.
ENGINES = ("local", "ray")
#: Options that only mean something with --dataset.
DATASET_ONLY = ("top_k", "limit")
MIN_TILE_CAP = 8
DEFAULT_TILE_CAP = 256  # longest side of an activation tile, px
DEFAULT_COMPRESS_LEVEL = 1  # PNG zlib level: several times faster than 6 for ~10 % more bytes
_DEVICE = re.compile(r"(cpu|cuda|mps|xpu)(:[0-9]+)?")


def choices(names: tuple[str, ...]) -> str:
    """("a", "b", "c") -> "a, b or c", for messages."""
    return names[0] if len(names) == 1 else f"{', '.join(names[:-1])} or {names[-1]}"


def _recorded(default: Any, flag: str, path: bool = False) -> Any:
    """A field that changes the report's pictures: kept in the manifest and in the command
    that rebuilds the report (``flag``); a ``path`` is kept by its base name only, so no
    user's folder layout is published."""
    return field(default=default, metadata={"flag": flag, "path": path})


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
    resume: bool = True  # continue an interrupted dataset run from its saved state
    device: str = "cpu"
    engine: str = "local"  # "ray": the dataset pass on Ray (pip install 'reportgen[ray]')
    #: With engine "ray": None starts Ray on this machine, "auto" or an address joins a cluster.
    ray_address: str | None = None
    ray_actors: int | None = None  # models running at once (default: one per GPU / 2 CPUs)
    self_contained: bool = False  # also write report.html, the whole report in one file
    categories: tuple[str, ...] | None = None  # class names for the model's outputs

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
        if self.batch_size < 1 or self.workers < 0:
            raise ReportError("--batch-size must be at least 1 and --workers at least 0.")
        if self.engine not in ENGINES:
            raise ReportError(f"Unknown engine '{self.engine}'; use {choices(ENGINES)}.")
        if self.engine != "ray" and (self.ray_address is not None
                                     or self.ray_actors is not None):
            raise ReportError("--ray-address and --ray-actors need --engine ray.")
        if self.ray_actors is not None and self.ray_actors < 1:
            raise ReportError(f"--ray-actors must be at least 1, not {self.ray_actors}.")
        if self.categories is not None:  # a list from the keyword API: keep it hashable
            object.__setattr__(self, "categories", tuple(self.categories))

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

    def command_words(self, random_weights: bool) -> list[str]:
        """The flags that rebuild these pictures, every recorded option spelled out.

        ``--seed`` only matters (and is only given) for random weights; options that are
        off or unset are left out.
        """
        words: list[str] = []
        recorded = self.recorded()
        for item in dataclasses.fields(self):
            if item.name not in recorded:
                continue
            flag, value = item.metadata["flag"], recorded[item.name]
            if value is None or value is False or value == "":
                continue
            if item.name == "seed" and not random_weights:
                continue
            if item.name in DATASET_ONLY and self.dataset is None:
                continue
            words += [flag] if value is True else [flag, str(value)]
        return words


def _base_name(value: Any) -> Any:
    return PurePath(value).name if isinstance(value, str) else value
