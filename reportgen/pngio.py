"""PNG files written on worker threads while the forward pass goes on.

Pillow releases the GIL while zlib compresses, so two threads use both cores. Compression
level 1 is several times faster than Pillow's default 6 for files about 10-15 % larger;
``compress_level`` (0-9) trades back.
"""
from __future__ import annotations

import os
import time
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

import numpy as np
from PIL import Image

DEFAULT_COMPRESS_LEVEL = 1


def save_png(pixels: np.ndarray, path: Path, compress_level: int = DEFAULT_COMPRESS_LEVEL) -> None:
    """No timestamps or text chunks: the same pixels give the same bytes."""
    Image.fromarray(pixels).save(path, format="PNG", compress_level=compress_level)


def _timed_save(pixels: np.ndarray, path: Path, compress_level: int) -> float:
    started = time.perf_counter()
    save_png(pixels, path, compress_level)
    return time.perf_counter() - started


class PngWriter:
    """A small pool; ``close()`` waits for every file and re-raises the first failure."""

    def __init__(self, compress_level: int = DEFAULT_COMPRESS_LEVEL,
                 workers: int | None = None) -> None:
        self.compress_level = compress_level
        self._pool = ThreadPoolExecutor(max_workers=workers or min(4, os.cpu_count() or 1),
                                        thread_name_prefix="png")
        self._pending: list[Future[float]] = []
        #: Seconds the workers spent encoding and writing, summed over threads (they overlap
        #: the forward pass, so this is work done, not time waited).
        self.seconds = 0.0

    def submit(self, pixels: np.ndarray, path: Path) -> None:
        self._pending.append(self._pool.submit(_timed_save, pixels, path, self.compress_level))

    def close(self) -> None:
        try:
            for future in self._pending:
                self.seconds += future.result()
        finally:
            self._pending.clear()
            self._pool.shutdown(wait=True, cancel_futures=True)

    def __enter__(self) -> "PngWriter":
        return self

    def __exit__(self, *exc_info: object) -> None:
        if exc_info[0] is None:
            self.close()
        else:  # an error is already on its way: stop quietly, the caller cleans the folder
            self._pool.shutdown(wait=True, cancel_futures=True)
