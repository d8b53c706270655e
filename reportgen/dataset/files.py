"""Which files a dataset run looks at, in an order that does not depend on the file system.

Results name images by their path relative to the dataset, and image indices are positions in
this list, so the list must come out the same on every machine and every run: sorted by the
'/'-joined relative path (not by ``os.walk`` order, which differs between file systems), with
hidden files and folders left out (``.DS_Store``, ``.git``, editors' swap files).
"""
from __future__ import annotations

import hashlib
import os
from collections import Counter
from dataclasses import dataclass
from pathlib import Path, PurePath
from urllib.parse import urlsplit

from reportgen.dataset.remote import is_url, list_url
from reportgen.errors import ReportError

LIST_COMMENT = "#"


@dataclass(frozen=True)
class DatasetFiles:
    """The images of one run: ``root / paths[i]`` is image ``i``.

    ``paths`` are relative, '/'-separated, and are what reports show (never a full path).
    ``total`` is how many files there were before ``limit`` cut the list. ``sources`` is
    where each file is read from when that is not ``root / paths[i]``: a list file that names
    absolute (or ``~``) paths, which ``paths`` then shows relative to the list's folder or by
    name (:func:`shown_names`), so no one's folder layout reaches a published page.
    """

    source: Path
    root: Path
    paths: tuple[str, ...]
    kind: str  # "folder", "list" or "url"
    total: int
    url: str | None = None  # a "url" dataset's location: where the relative paths are
    sources: tuple[str, ...] | None = None

    @property
    def remote(self) -> bool:
        return self.url is not None

    def __len__(self) -> int:
        return len(self.paths)

    def path(self, index: int) -> Path:
        """A local dataset's file (a URL dataset has only :meth:`location`)."""
        if self.sources is not None:
            return Path(self.sources[index])
        return self.root / self.paths[index]

    def location(self, index: int) -> str:
        """Where image ``index`` is read from: a local path, or a URL."""
        if self.url is not None:
            return f"{self.url}/{self.paths[index]}"
        return str(self.path(index))

    def fingerprint(self) -> str:
        """Changes when a file is added, removed, renamed or rewritten (size or mtime).

        A resumed run must see the same images as the run it continues; stat() is enough to
        notice an edit without reading every image twice.
        """
        digest = hashlib.sha256()
        for index, relative in enumerate(self.paths):
            try:
                info = self.path(index).stat()
                stamp = f"{info.st_size}:{info.st_mtime_ns}"
            except OSError:
                stamp = "missing"
            digest.update(f"{relative}\0{stamp}\n".encode("utf-8", "surrogateescape"))
        return digest.hexdigest()


def list_dataset(source: Path | str, limit: int | None = None) -> DatasetFiles:
    """Every file under a folder or a URL (recursively), or the paths listed in a text file.

    A list file has one image path per line, relative to the list file's folder; blank lines
    and lines starting with '#' are ignored. ``limit`` keeps the first N files of the sorted
    folder listing (or of the list file, in its own order). Files that are not images are
    kept here and reported as skipped when they fail to decode, so the user sees them.
    """
    if limit is not None and limit < 1:
        raise ReportError(f"--limit must be a positive number of images, not {limit}.")
    if isinstance(source, str) and is_url(source):
        url = source.rstrip("/")
        paths = list_url(url)
        if not paths:
            raise ReportError(f"Dataset '{url}' has no files (hidden files are ignored).")
        where = Path(urlsplit(url).netloc + urlsplit(url).path)
        total = len(paths)
        return DatasetFiles(where, where, tuple(paths if limit is None else paths[:limit]),
                            "url", total, url)
    source = Path(source)
    shown = str(source)
    if source.is_dir():
        root, paths, kind = source, _walk(source), "folder"
        if not paths:
            raise ReportError(f"Dataset folder '{shown}' has no files (hidden files are "
                              "ignored); put images in it or pass a list file.")
    elif source.is_file():
        root, paths, kind = source.parent, _read_list(source), "list"
        if not paths:
            raise ReportError(f"Dataset list '{shown}' names no images; write one image path "
                              "per line.")
    elif source.exists():
        raise ReportError(f"Dataset '{shown}' is neither a folder nor a list file.")
    else:
        raise ReportError(f"Dataset '{shown}' does not exist; pass a folder of images or a "
                          "text file listing image paths.")
    total = len(paths)
    if limit is not None:
        paths = paths[:limit]
    sources = None
    if kind == "list" and any(Path(path).expanduser().is_absolute() for path in paths):
        sources = tuple(str(root / Path(path).expanduser()) for path in paths)
        paths = shown_names(root, paths)
    return DatasetFiles(source, root, tuple(paths), kind, total, sources=sources)


def shown_names(folder: Path, entries: list[str]) -> list[str]:
    """How a list file's entries are shown: relative ones as written, absolute (or ``~``) ones
    relative to the list's ``folder`` when inside it, else by file name (with as many parent
    folders as it takes to tell two equal names apart)."""
    base = Path(os.path.abspath(folder))
    shown = list(entries)
    outside: list[int] = []
    paths: list[PurePath] = []
    for number, entry in enumerate(entries):
        path = Path(entry).expanduser()
        if path.is_absolute():
            path = Path(os.path.abspath(path))
            if base in path.parents:
                shown[number] = path.relative_to(base).as_posix()
            else:
                outside.append(number)
                paths.append(path)
    taken = Counter(name for number, name in enumerate(shown) if number not in outside)
    for number, tail in zip(outside, _unique_tails(paths, taken), strict=True):
        shown[number] = tail
    return shown


def _unique_tails(paths: list[PurePath], taken: Counter[str]) -> list[str]:
    """Each path's shortest tail (file name first, never the root) that no other has."""
    depth = [1] * len(paths)
    while True:
        tails = ["/".join(path.parts[-count:]) for path, count in zip(paths, depth, strict=True)]
        seen = taken + Counter(tails)
        longer = [number for number, tail in enumerate(tails)
                  if seen[tail] > 1 and depth[number] < len(paths[number].parts) - 1]
        if not longer:
            return tails
        for number in longer:
            depth[number] += 1


def _walk(folder: Path) -> list[str]:
    found: list[str] = []
    for directory, subfolders, names in os.walk(folder):
        subfolders[:] = [name for name in subfolders if not name.startswith(".")]
        base = Path(directory).relative_to(folder)
        for name in names:
            if name.startswith(".") or not (Path(directory) / name).is_file():
                continue
            found.append((base / name).as_posix())
    return sorted(found)


def _read_list(listing: Path) -> list[str]:
    try:
        text = listing.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise ReportError(f"Dataset list '{listing}' is not a UTF-8 text file; pass a folder "
                          "or a text file with one image path per line.") from None
    except OSError as error:
        raise ReportError(f"Cannot read dataset list '{listing}': {error.strerror}.") from None
    paths = []
    for line in text.splitlines():
        entry = line.strip()
        if entry and not entry.startswith(LIST_COMMENT):
            paths.append(entry.replace("\\", "/"))
    return paths
