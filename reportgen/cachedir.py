"""Where reportgen keeps results that are expensive to compute and cheap to reuse.

``$REPORTGEN_CACHE_DIR`` when set, else ``$XDG_CACHE_HOME/reportgen`` (``~/.cache/reportgen``).
Each kind of result has its own folder below it; entries are keyed by what decides them, so a
stale entry is never read, only left behind (deleting the folder is always safe).
"""
from __future__ import annotations

import os
from pathlib import Path


def cache_dir(kind: str) -> Path:
    root = os.environ.get("REPORTGEN_CACHE_DIR")
    if root:
        return Path(root) / kind
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "reportgen" / kind
