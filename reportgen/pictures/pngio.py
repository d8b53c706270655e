"""PNG files written on worker threads while the forward pass goes on.

Pillow compresses a PNG in 64 KB steps driven from Python (``ImageFile._save`` writes through
the ``_idat`` chunk wrapper, which has no ``fileno``, so never ``encode_to_file``). It lets go
of the GIL inside each step, but must win it back between steps, and a thread busy in Python
(the forward pass calling modules, our hooks) hands it over only every 5 ms switch interval:
next to a pure-Python loop, a Pillow thread finished 2 level-1 encodes of a 1799x1799 grid in
2 s. ``zlib.compress`` takes the whole picture in one call without the GIL, so
:func:`save_png` writes the PNG itself: every row "Up"-filtered (minus the row above, numpy),
one zlib stream, three chunks; next to the same loop it finished 16. On VGG16's 27 pictures
at 224x224 (17 M pixels), one thread: Pillow at level 1 took 0.45 s of CPU for 9.8 MB, this
0.27 s for 10.3 MB; two threads 0.14 s.

Level 1 (the default) is several times faster than level 6 for files 10-15 % larger. Levels
from 6 up ask for small files rather than speed; there Pillow's per-row choice among five
filters wins (9.0 MB at level 6 against 9.9 MB), so those levels use Pillow.
"""
from __future__ import annotations

import os
import struct
import time
import zlib
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

import numpy as np

from reportgen.options import DEFAULT_COMPRESS_LEVEL

#: Folder of the site's pictures, relative to the site.
IMAGE_DIR = "img"

PILLOW_FROM_LEVEL = 6
_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_COLOR_TYPE = {1: 0, 2: 4, 3: 2, 4: 6}  # samples per pixel -> grey, grey+alpha, RGB, RGBA
_FILTER_UP = 2
_MAX_CHUNK = 2 ** 31 - 1


def save_png(pixels: np.ndarray, path: Path, compress_level: int = DEFAULT_COMPRESS_LEVEL) -> None:
    """HxW (grey) or HxWxC (C = 2, 3, 4) uint8 to a PNG file.

    No timestamps or text chunks: the same pixels give the same bytes.
    """
    if compress_level >= PILLOW_FROM_LEVEL:
        from PIL import Image

        Image.fromarray(pixels).save(path, format="PNG", compress_level=compress_level)
        return
    Path(path).write_bytes(encode_png(pixels, compress_level))


def encode_png(pixels: np.ndarray, compress_level: int = DEFAULT_COMPRESS_LEVEL) -> bytes:
    """The PNG file's bytes; 8 bits per sample, not interlaced, every row filtered "Up"."""
    if pixels.dtype != np.uint8 or pixels.ndim not in (2, 3) or (
            pixels.ndim == 3 and pixels.shape[2] not in _COLOR_TYPE):
        raise ValueError(f"cannot write a {pixels.dtype} array of shape {pixels.shape} as PNG")
    height, width = pixels.shape[:2]
    samples = 1 if pixels.ndim == 2 else pixels.shape[2]
    rows = pixels.reshape(height, width * samples)
    scanlines = np.empty((height, 1 + width * samples), dtype=np.uint8)
    scanlines[:, 0] = _FILTER_UP
    scanlines[0, 1:] = rows[0]  # the row above the first one counts as zeros
    np.subtract(rows[1:], rows[:-1], out=scanlines[1:, 1:])  # uint8: modulo 256, as PNG wants
    header = struct.pack(">IIBBBBB", width, height, 8, _COLOR_TYPE[samples], 0, 0, 0)
    data = zlib.compress(scanlines.tobytes(), compress_level)
    parts = [_SIGNATURE, _chunk(b"IHDR", header)]
    parts += [_chunk(b"IDAT", data[start:start + _MAX_CHUNK])
              for start in range(0, max(len(data), 1), _MAX_CHUNK)]
    parts.append(_chunk(b"IEND", b""))
    return b"".join(parts)


def _chunk(kind: bytes, data: bytes) -> bytes:
    crc = zlib.crc32(data, zlib.crc32(kind))
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", crc)


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

    @property
    def pending(self) -> int:
        return len(self._pending)

    def submit(self, pixels: np.ndarray, path: Path) -> None:
        self._pending.append(self._pool.submit(_timed_save, pixels, path, self.compress_level))

    def close(self, on_file: Callable[[], object] | None = None) -> None:
        """Wait for every file (``on_file`` is called as each is done); re-raise a failure."""
        try:
            for future in self._pending:
                self.seconds += future.result()
                if on_file is not None:
                    on_file()
        finally:
            self._pending.clear()
            self._pool.shutdown(wait=True, cancel_futures=True)

    def __enter__(self) -> PngWriter:
        return self

    def __exit__(self, *exc_info: object) -> None:
        if exc_info[0] is None:
            self.close()
        else:  # an error is already on its way: stop quietly, the caller cleans the folder
            self._pool.shutdown(wait=True, cancel_futures=True)
