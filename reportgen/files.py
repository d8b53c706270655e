"""Write one file so that a reader never sees half of it and a failure loses nothing.

A base module (no torch, nothing of reportgen): the publisher writes the single file and the
figures with it, and the feature-visualisation cache its entries, and both import it from
here, below them, rather than one analysis reaching up into the publisher.
"""
from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from pathlib import Path


def atomic_write(target: Path, write: Callable[[Path], object]) -> None:
    """``write`` a temporary file beside ``target``, then rename it over ``target``.

    A failure (a full disk, Ctrl-C) never leaves half a file under the user's name, and an
    earlier file of that name stays as it was until the new one is complete.
    """
    target.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(prefix=f".{target.name}.", suffix=target.suffix,
                                         dir=target.parent)
    os.close(handle)
    try:
        write(Path(temporary))
        os.chmod(temporary, 0o644)
        os.replace(temporary, target)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
