"""``--model timm:NAME``: models from timm, an optional extra (``pip install 'reportgen[timm]'``).

``-w none`` builds random weights (seeded); ``-w DEFAULT`` (or a pretrained tag such as
``a1_in1k``) reads timm's pretrained file from the local Hugging Face cache (the torch hub
cache for the few weights timm still serves by URL) and downloads it only when it is not there.
The file is read like any checkpoint (safetensors, or ``weights_only=True``), then handed to
timm as an in-memory state_dict, so timm's own checkpoint filters still apply. Preprocessing is
timm's data config for the model: mean, std, input size, interpolation and crop fraction.
"""
from __future__ import annotations

import difflib
import logging
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from reportgen.errors import ReportError
from reportgen.inputs import weightfiles
from reportgen.inputs.checkpoints import fit_keys
from reportgen.inputs.preprocess import Preprocessing

log = logging.getLogger(__name__)

INSTALL = "pip install 'reportgen[timm]'"
#: What timm tries on the Hugging Face Hub, safetensors first (as timm itself does).
HUB_FILES = ("model.safetensors", "pytorch_model.bin")


def timm_module() -> Any:
    """``import timm``, or a one-line error saying how to get it."""
    try:
        import timm
    except ImportError:
        raise ReportError(f"--model timm:NAME needs timm, which is not installed: {INSTALL} "
                          "(or pip install timm).") from None
    return timm


def check_timm_name(name: str) -> None:
    """An unknown timm model is an error with close matches, before anything is built."""
    timm = timm_module()
    if timm.is_model(name):
        return
    names = timm.list_models()
    close = difflib.get_close_matches(name.lower(), names, n=3, cutoff=0.6)
    hint = (f" Did you mean {', '.join(f'timm:{match}' for match in close)}?" if close
            else " 'python -c \"import timm; print(timm.list_models())\"' lists them.")
    raise ReportError(f"Unknown timm model '{name}'.{hint}")


def build_timm(name: str, kwargs: dict[str, Any], on_meta: bool = False) -> nn.Module:
    """The architecture with timm's own (or no) initialisation; no weights are read."""
    timm = timm_module()
    if on_meta:
        try:
            with torch.device("meta"):
                module: nn.Module = timm.create_model(name, pretrained=False, **kwargs)
            return module
        except (NotImplementedError, RuntimeError):
            pass
    module = timm.create_model(name, pretrained=False, **kwargs)
    return module


@dataclass(frozen=True)
class TimmWeights:
    """A pretrained file of a timm model, located on this machine."""

    path: Path
    source: str  # "Hugging Face cache", "download", "torch hub cache"
    tag: str
    hub_id: str | None


def pretrained(name: str, wanted: str, kwargs: dict[str, Any]
               ) -> tuple[nn.Module, dict[str, Any], list[str], list[str] | None]:
    """Build ``name`` with its pretrained weights: (module, weights record, notes, categories).

    ``wanted`` is ``DEFAULT`` (the model's default tag, or the tag in ``name``) or a tag.
    """
    timm = timm_module()
    architecture, _, tag_in_name = name.partition(".")
    tag = tag_in_name if wanted.upper() == "DEFAULT" else wanted
    full = f"{architecture}.{tag}" if tag else architecture
    try:
        config = timm.models.get_pretrained_cfg(full)
    except RuntimeError:  # "Invalid pretrained tag"
        config = None
    if config is None or not (config.hf_hub_id or config.url):
        tags = [entry.partition(".")[2] for entry in timm.list_pretrained(f"{architecture}.*")]
        if not tags:
            raise ReportError(f"timm has no pretrained weights for {architecture}; use "
                              "--weights none (random) or a checkpoint path.")
        raise ReportError(f"Unknown weights '{wanted}' for timm:{architecture}; choose DEFAULT, "
                          f"none, {', '.join(tags[:12])}, or a checkpoint path.")
    located = _locate(full, config)
    found = weightfiles.read_checkpoint(located.path)
    state = found.state
    module = timm.create_model(full, pretrained=True, pretrained_cfg_overlay={"state_dict": state},
                               **kwargs)
    for cfg in (getattr(module, "pretrained_cfg", None), getattr(module, "default_cfg", None)):
        if isinstance(cfg, dict):
            cfg.pop("state_dict", None)  # let go of the file's tensors: the module has copies
    record = {"name": config.tag or "DEFAULT", "tag": config.tag, "hub_id": located.hub_id,
              "file": located.path.name, "source": located.source,
              "sha256": weightfiles.sha256_file(located.path)}
    return module, record, [*found.notes], _categories(module)


def _locate(full: str, config: Any) -> TimmWeights:
    tag = str(config.tag or "")
    if config.hf_hub_id:
        names = [config.hf_hub_filename] if config.hf_hub_filename else list(HUB_FILES)
        for file in names:
            cached = _cached(config.hf_hub_id, file)
            if cached is not None:
                return TimmWeights(cached, "Hugging Face cache", tag, config.hf_hub_id)
        try:
            return TimmWeights(download_from_hub(config.hf_hub_id, names[0]), "download", tag,
                               config.hf_hub_id)
        except Exception as error:  # noqa: BLE001 - any network failure gets the same advice
            first = str(error).strip().split(". ")[0].splitlines()[0] if str(error) else ""
            reason = type(error).__name__ + (f": {first}" if first and len(first) < 100 else "")
            raise ReportError(
                f"The timm weights of {full} ({config.hf_hub_id}, {names[0]}) are not in the "
                f"Hugging Face cache ({hub_cache_dir()}) and could not be downloaded "
                f"({reason}). On a connected machine, run "
                f"python -c \"import timm; timm.create_model('{full}', pretrained=True)\" to "
                "fill the cache (or set HF_HOME to a copy of it), pass --weights PATH to a "
                "checkpoint, or use --weights none for random weights.") from None
    local = weightfiles.find_local(config.url)
    if local is None:
        try:
            local = weightfiles.download(config.url)
        except Exception as error:  # noqa: BLE001
            file = weightfiles.file_name(config.url)
            raise ReportError(f"Could not get the timm weights of {full} ({file}): {error}. "
                              f"Put {file} in {weightfiles.hub_checkpoint_dir()}, or use "
                              "--weights PATH or --weights none.") from None
    return TimmWeights(local.path, local.source, tag, None)


def hub_cache_dir() -> str:
    """Where huggingface_hub keeps downloads (``HF_HUB_CACHE``, under ``HF_HOME``)."""
    from huggingface_hub import constants

    return str(constants.HF_HUB_CACHE)


def _cached(hub_id: str, file: str) -> Path | None:
    from huggingface_hub import try_to_load_from_cache

    found = try_to_load_from_cache(hub_id, file, cache_dir=hub_cache_dir())
    return Path(found) if isinstance(found, (str, os.PathLike)) else None


def download_from_hub(hub_id: str, file: str) -> Path:
    """huggingface_hub's own download into its cache (the only network access here)."""
    from huggingface_hub import hf_hub_download

    quiet = logging.getLogger("huggingface_hub")  # its retry warnings: our message says it
    level = quiet.level
    quiet.setLevel(logging.ERROR)
    try:
        return Path(hf_hub_download(hub_id, file, cache_dir=hub_cache_dir()))
    finally:
        quiet.setLevel(level)


def load_checkpoint_classes(name: str, state: dict[str, torch.Tensor]) -> int | None:
    """A fine-tuned checkpoint's number of classes, read off timm's classifier weight."""
    timm = timm_module()
    config = timm.models.get_pretrained_cfg(name)
    classifier = getattr(config, "classifier", None) if config is not None else None
    if not isinstance(classifier, str):
        return None
    skeleton = build_timm(name, {}, on_meta=True)
    fitted = fit_keys(state, skeleton.state_dict().keys()).state
    weight = fitted.get(f"{classifier}.weight")
    return int(weight.shape[0]) if weight is not None and weight.dim() >= 1 else None


def preprocessing(module: nn.Module) -> tuple[Preprocessing, list[str]]:
    """timm's data config for the model, as reportgen's preprocessing."""
    timm = timm_module()
    config = timm.data.resolve_model_data_config(module)
    channels, height, width = (int(v) for v in config["input_size"])
    crop_pct = float(config.get("crop_pct") or 1.0)
    notes = []
    if height != width:
        notes.append(f"timm's input size is {height}x{width}; a {width}x{width} square is used.")
    mode = str(config.get("crop_mode") or "center")
    if mode != "center":
        notes.append(f"timm's crop mode '{mode}' is approximated by a centre crop.")
    mean = tuple(float(v) for v in config["mean"])
    std = tuple(float(v) for v in config["std"])
    return Preprocessing(resize=max(width, math.floor(width / crop_pct)), crop=width,
                         mean=mean, std=std, interpolation=str(config["interpolation"]),
                         source="timm's data config", channels=channels), notes


def _categories(module: nn.Module) -> list[str] | None:
    """ImageNet names for pretrained ImageNet heads (first synonym, as torchvision's)."""
    timm = timm_module()
    try:
        subset = timm.data.infer_imagenet_subset(module)
        if not subset:
            return None
        info = timm.data.ImageNetInfo(subset)
        return [info.index_to_description(index).split(",")[0].strip()
                for index in range(info.num_classes())]
    except Exception:  # names are a nicety: without them the report labels by index
        log.debug("no ImageNet names for this timm model", exc_info=True)
        return None
