"""Datasets behind a URL (``s3://``, ``gs://``, ``file://``...): list and read through pyarrow.

pyarrow's file systems are what Ray Data itself reads with, and pyarrow comes with the ray
extra (``pip install 'reportgen[ray]'``); it is imported here only, when a URL is used. A
listing follows the local rules of :mod:`reportgen.dataset.files`: every file under the URL,
recursively, hidden files and folders left out, sorted by relative '/'-joined path, so image
indices are the same wherever the dataset is read from. A file's bytes then go through the
same decoding as a local file (:func:`reportgen.inputs.images.load_image_bytes`), so a corrupt
file is skipped with the same reason.
"""
from __future__ import annotations

import functools
import importlib
from pathlib import Path, PurePosixPath
from typing import Any
from urllib.parse import urlsplit

from reportgen.errors import ReportError
from reportgen.inputs.images import SourceImage, load_image, load_image_bytes, read_image_file

INSTALL_HINT = ("Reading a dataset from a URL needs pyarrow: pip install 'reportgen[ray]' (or "
                "pip install pyarrow).")


def is_url(text: str) -> bool:
    return "://" in text


def _split(url: str) -> tuple[Any, str]:
    """The pyarrow file system for the URL's scheme and host, and the path inside it."""
    parts = urlsplit(url)
    return _filesystem(f"{parts.scheme}://{parts.netloc}"), f"{parts.netloc}{parts.path}"


@functools.lru_cache(maxsize=16)
def _filesystem(base: str) -> Any:
    """One file system per bucket and process: S3's may look its region up when made."""
    try:
        fs = importlib.import_module("pyarrow.fs")
    except ImportError:
        raise ReportError(INSTALL_HINT) from None
    try:
        return fs.FileSystem.from_uri(base + "/")[0]
    except (ValueError, OSError) as error:
        raise ReportError(f"Cannot open dataset URL '{base}': "
                          f"{str(error).splitlines()[0]}") from None


def list_url(url: str) -> list[str]:
    """Relative paths of every non-hidden file under ``url``, sorted (as for a folder)."""
    filesystem, base = _split(url)
    fs = importlib.import_module("pyarrow.fs")
    base = base.rstrip("/")
    try:
        infos = filesystem.get_file_info(fs.FileSelector(base, recursive=True))
    except FileNotFoundError:
        raise ReportError(f"Dataset '{url}' does not exist; pass a folder URL of images.") from None
    except OSError as error:
        raise ReportError(f"Cannot list dataset '{url}': {str(error).splitlines()[0]}") from None
    found = []
    for info in infos:
        if info.type != fs.FileType.File:
            continue
        relative = PurePosixPath(info.path).relative_to(base)
        if any(part.startswith(".") for part in relative.parts):
            continue
        found.append(relative.as_posix())
    return sorted(found)


def read_url(url: str) -> bytes:
    """A file's bytes; a failure is the one-line error a local file would give."""
    filesystem, path = _split(url)
    shown = PurePosixPath(path).name or url
    try:
        with filesystem.open_input_stream(path) as stream:
            data: bytes = stream.read()
    except FileNotFoundError:
        raise ReportError(f"Image '{shown}' does not exist.") from None
    except OSError as error:
        raise ReportError(f"Cannot read image '{shown}': {str(error).splitlines()[0]}.") from None
    return data


def load_location(location: str) -> SourceImage:
    """A dataset image by its location: a local path, or a URL read through pyarrow."""
    if is_url(location):
        return load_image_bytes(read_url(location), PurePosixPath(urlsplit(location).path).name)
    return load_image(Path(location))


def read_location(location: str) -> tuple[bytes, str]:
    """A dataset file's bytes and the name errors show, without decoding it (the checks and
    messages of :func:`load_location`, whose decoding may then happen elsewhere)."""
    if is_url(location):
        return read_url(location), PurePosixPath(urlsplit(location).path).name
    return read_image_file(Path(location))
