"""Every build option in one place: its default, its check, and how it is recorded.

:class:`BuildOptions` is the one object the CLI, ``build_report``, the manifest, the Reproduce
section and ``reportgen figure --from`` share (as MkDocs passes one config down). The CLI
turns flags into it, the keyword API folds its keywords into it at the boundary, the manifest's
``options`` is written from it and read back into it. A new option is one field here: its
flag, help and click type are field metadata, from which the CLI makes ``build``'s options
(reportgen.cli_options), and whether it is recorded decides what the manifest and the rebuild
command keep.

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

import click

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
DEFAULT_DATASET_BATCH_SIZE = 32  # dataset images per forward pass
DEFAULT_FEATURE_VIS_STEPS = 512
DEFAULT_FEATURE_VIS_SIZE = 128
#: Where the dataset pass runs: this process and its DataLoader workers, or a Ray cluster
#: (reportgen.dataset.ray_engine). Not recorded: both give the same result.
ENGINES = ("local", "ray")
#: Where the dataset's JPEGs are decoded (reportgen.dataset.devicedecode): "auto" is the
#: model's device with --device cuda, else "cpu" (DataLoader workers). Not recorded.
DECODES = ("auto", "cpu", "device")
MIN_TILE_CAP = 8
DEFAULT_TILE_CAP = 256  # longest side of an activation tile, px
DEFAULT_COMPRESS_LEVEL = 1  # PNG zlib level: several times faster than 6 for ~10 % more bytes
_DEVICE = re.compile(r"(cpu|cuda|mps|xpu)(:[0-9]+)?")
MODEL_ARG_HELP = ("KEY=VALUE keyword argument for the model's factory or builder, the value a "
                  "Python literal (num_classes=10); repeat for more.")


def choices(names: tuple[str, ...]) -> str:
    """("a", "b", "c") -> "a, b or c", for messages."""
    return names[0] if len(names) == 1 else f"{', '.join(names[:-1])} or {names[-1]}"


def _option(default: Any, flag: str | None = None, help: str = "", *,
            recorded: bool = False, path: bool = False, repeat: bool = False,
            needs: str | None = None, **click_settings: Any) -> Any:
    """A field with its command-line flag, declared once: the CLI's click option, the checks,
    the manifest and the rebuild command are all made from this.

    ``recorded``: it changes the report's pictures, so the manifest and the Reproduce command
    keep it (``flag`` given once per item of a tuple when ``repeat``); a ``path`` is kept by
    its base name only, so no user's folder layout is published. ``needs``: the field that
    must be set for this one to mean anything (a value other than the default without it is
    refused, not silently ignored). ``click_settings`` go to ``click.option`` as they are
    (``type``, ``metavar``, ``multiple``, ...; ``declaration``: "--crop/--no-crop").
    """
    metadata = {"flag": flag, "help": help, "recorded": recorded, "path": path,
                "repeat": repeat, "needs": needs, "click": click_settings}
    return field(default=default, metadata=metadata)


@dataclass(frozen=True)
class BuildOptions:
    """How to build a report (everything except which model, weights, image and folder)."""

    # never touches the caller's RNG
    seed: int = _option(0, "--seed", "Seed for --weights none.", recorded=True, type=int)
    #: Globs of layer names, comma-separated ("features.1*,features.2*"); a list or tuple of
    #: globs is accepted too and joined. None: every conv layer.
    layers: str | None = _option(
        None, "--layers", "Only layers matching these globs, e.g. 'features.*' or "
        "'layer1.*,conv1'; repeat for more (their union).", recorded=True, multiple=True)
    normalize: str = _option(
        "channel", "--normalize", "Display range: 'channel' a robust range per channel (1st-99th "
        "percentile, the map's border ring left out), 'layer' the same over the whole layer, "
        "'minmax' each channel's exact min..max, 'dataset' 0 to each channel's peak over "
        "--dataset.", recorded=True, type=click.Choice(NORMALIZATIONS))
    cmap: str = _option("gray", "--cmap", "Any matplotlib colormap.", recorded=True)
    rectify: bool = _option(False, "--rectify", "Show max(0, x) instead of the raw conv "
                            "output.", recorded=True)
    size: int | None = _option(None, "--size", "Input crop size in pixels (default: the "
                               "weights').", recorded=True, type=int)
    tile_cap: int | None = _option(
        DEFAULT_TILE_CAP, "--tile-cap", "Longest side of an activation tile; larger maps are "
        "area-averaged.", recorded=True, type=click.IntRange(min=MIN_TILE_CAP))
    compress_level: int = _option(
        DEFAULT_COMPRESS_LEVEL, "--compress-level", "PNG compression: 1 is fast, 9 is "
        "smallest.", recorded=True, type=click.IntRange(0, 9))
    #: A folder of images (searched recursively) or a text file listing image paths: each
    #: channel's top dataset examples and dataset statistics join the report.
    dataset: str | None = _option(
        None, "--dataset", "A folder of images (recursive) or a text file of image paths: add "
        "each channel's top dataset examples and dataset statistics. Without -i, the first "
        "dataset image is the report's image.", recorded=True, path=True, type=click.Path())
    top_k: int = _option(DEFAULT_TOP_K, "--top-k", "Dataset examples kept per channel.",
                         recorded=True, needs="dataset", type=int)
    limit: int | None = _option(None, "--limit", "Only the first N dataset files (in sorted "
                                "path order).", recorded=True, needs="dataset", type=int)
    batch_size: int = _option(DEFAULT_DATASET_BATCH_SIZE, "--batch-size", "Dataset images per "
                              "forward pass.", needs="dataset", type=int)
    workers: int = _option(2, "--workers", "Processes decoding dataset images (0: none, decode "
                           "in this process).", needs="dataset", type=int)
    decode: str = _option(
        "auto", "--decode", "Where dataset JPEGs are decoded: 'device' decodes them in "
        "batches where the model runs (nvJPEG with --device cuda), 'cpu' in the --workers "
        "processes; auto: device with --device cuda, else cpu.", needs="dataset",
        type=click.Choice(DECODES))
    resume: bool = _option(True, "--no-resume", "Start the dataset pass over instead of "
                           "continuing an interrupted one.", needs="dataset")
    #: Feature visualisation: LAYERGLOB:CHANNELS specs, comma-separated (CHANNELS: 0-15, 3,7,9,
    #: topN (most active on the image) or all); optimised as Lucid/Lucent do, cached on disk.
    feature_vis: str | None = _option(
        None, "--feature-vis", "Feature visualisations: LAYERGLOB:CHANNELS, comma-separated, "
        "CHANNELS being 0-15, 3,7,9, topN (most active on the image) or all; e.g. "
        "'features.1*:top4,features.18.0:447'.", recorded=True, metavar="SPEC")
    feature_vis_steps: int = _option(
        DEFAULT_FEATURE_VIS_STEPS, "--feature-vis-steps", "Optimisation steps per "
        "visualisation.", recorded=True, needs="feature_vis", type=int)
    feature_vis_size: int = _option(
        DEFAULT_FEATURE_VIS_SIZE, "--feature-vis-size", "Side of each visualisation in pixels.",
        recorded=True, needs="feature_vis", type=int)
    cache: bool = _option(True, "--no-cache", "Compute feature visualisations again instead of "
                          "reusing cached ones.")
    #: Attribution: Grad-CAM and per-channel contributions for a class ("top" for the top-1,
    #: a label or an index), all selected layers in one forward and one backward pass.
    explain: str | None = _option(
        None, "--explain", "Grad-CAM and per-channel contributions for CLASS (a label or an "
        "index; alone: the top-1 class).", recorded=True, is_flag=False, flag_value="top",
        metavar="[CLASS]")
    device: str = _option("cpu", "--device", "cpu or cuda.")
    engine: str = _option(
        "local", "--engine", "Where the dataset pass runs: here, or on Ray (pip install "
        "'reportgen[ray]'); both give the same result.", type=click.Choice(ENGINES))
    #: With engine "ray": None starts Ray on this machine, "auto" or an address joins a cluster.
    ray_address: str | None = _option(
        None, "--ray-address", "With --engine ray: 'auto' or a cluster address to join "
        "(default: start Ray on this machine).")
    ray_actors: int | None = _option(
        None, "--ray-actors", "With --engine ray: models running at once (default: one per GPU "
        "with --device cuda, else one per 2 CPUs).", type=int)
    self_contained: bool = _option(
        False, "--self-contained", "Also write SITE_DIR/report.html: the whole report in one "
        "file that opens offline (images and assets inlined).")
    categories: tuple[str, ...] | None = None  # class names (the CLI's --categories FILE)
    #: Keyword arguments for a ``--model`` factory (or torchvision/timm builder), as canonical
    #: ``KEY=VALUE`` strings (values are Python literals); a dict is accepted too.
    model_args: tuple[str, ...] = _option(
        (), "--model-arg", MODEL_ARG_HELP, recorded=True, repeat=True, multiple=True,
        metavar="KEY=VALUE")
    weights_key: str | None = _option(
        None, "--weights-key", "The checkpoint's top-level key holding the weights, e.g. "
        "model_ema (default: state_dict, model, ..., then EMA weights).", recorded=True,
        metavar="KEY")
    #: Unpickle the checkpoint fully (it can run code from the file) instead of as data only.
    trust_checkpoint: bool = _option(
        False, "--trust-checkpoint", "Unpickle the checkpoint fully, for one holding classes "
        "of your own code. This can run any code in the file: only for files you trust.",
        recorded=True)
    mean: tuple[float, ...] | None = _option(
        None, "--mean", "Normalisation mean per input channel (default: the weights').",
        recorded=True, metavar="M[,M...]")
    std: tuple[float, ...] | None = _option(
        None, "--std", "Normalisation std per input channel (default: the weights').",
        recorded=True, metavar="S[,S...]")
    resize: int | None = _option(None, "--resize", "Resize the short side to this before the "
                                 "centre crop (default: the weights').", recorded=True, type=int)
    crop: bool = _option(
        True, "--no-crop", "--no-crop resizes the long side to --size and pads to a square, so "
        "the whole image is seen.", recorded=True, declaration="--crop/--no-crop")
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
        self._check_needs()
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

    def _check_needs(self) -> None:
        """Options that only mean something with another one: refused without it, rather than
        silently ignored (their defaults pass, so the keyword API and old manifests do too)."""
        unmet: dict[str, list[str]] = {}
        for item in dataclasses.fields(self):
            needs = item.metadata.get("needs")
            if needs and getattr(self, needs) is None and getattr(self, item.name) != item.default:
                unmet.setdefault(needs, []).append(item.metadata["flag"])
        for needs, flags in unmet.items():
            needed = _FLAGS[needs]
            raise ReportError(f"{choices(tuple(flags)).replace(' or ', ' and ')} only "
                              f"{'mean' if len(flags) > 1 else 'means'} something with {needed}, "
                              f"which was not given; add {needed} or leave "
                              f"{'them' if len(flags) > 1 else 'it'} out.")

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
                for item in dataclasses.fields(self) if item.metadata.get("recorded")}

    @classmethod
    def from_recorded(cls, recorded: Mapping[str, Any]) -> BuildOptions:
        """Read a manifest's ``options`` back (keys this version does not know are ignored, and
        so are options an older version recorded without the one they need)."""
        known = {item.name: item.metadata.get("needs") for item in dataclasses.fields(cls)
                 if item.metadata.get("recorded")}
        return cls(**{key: value for key, value in recorded.items() if key in known
                      and (known[key] is None or recorded.get(str(known[key])) is not None)})

    def command_words(self, seeded: bool = True, *, typed: bool = False) -> list[str]:
        """The flags of a command that rebuilds these pictures.

        ``typed``: the command as the user typed it, every option with a flag that differs
        from its default (recorded or not). Otherwise every recorded option spelled out, and
        ``--seed`` only when the weights were ``seeded`` (random, or a factory's model as it
        builds it); options that are off, unset or meaningless without another are left out.
        Paths are given by their base name, so no user's folder layout is published.
        """
        words: list[str] = []
        for item in dataclasses.fields(self):
            flag, value = item.metadata.get("flag"), getattr(self, item.name)
            if flag is None or not (item.metadata["recorded"] or typed):
                continue
            if typed and value == item.default:
                continue
            if value is None or value == "" or value == ():
                continue
            if item.name == "seed" and not seeded:
                continue
            needs = item.metadata["needs"]
            if needs and getattr(self, needs) is None:
                continue
            if item.metadata["path"]:
                value = _base_name(value)
            if isinstance(value, bool):  # a switch: given when it differs from its default
                words += [flag] if value != item.default else []
            elif item.metadata["repeat"]:
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


#: Each field's flag, for messages.
_FLAGS = {item.name: item.metadata.get("flag") or item.name
          for item in dataclasses.fields(BuildOptions)}
