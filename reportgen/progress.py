"""Progress on stderr for long runs, through tqdm.

tqdm is the well-kept standard for this (a bar that redraws in place, rate and time left,
quiet when stderr is not a terminal); writing one by hand would re-solve terminal widths and
redraw throttling. A bar appears only after ``DELAY`` seconds, so quick builds stay silent.
"""
from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Protocol

#: Seconds before a bar is drawn: a build that finishes sooner prints nothing.
DELAY = 2.0


class Ticker(Protocol):
    def update(self, n: int = 1) -> object: ...


class _Silent:
    def update(self, n: int = 1) -> None:
        return None


@contextmanager
def stage(description: str, total: int | None, unit: str, enabled: bool) -> Iterator[Ticker]:
    """A progress bar for one stage (``update()`` per step), or a silent stand-in."""
    if not enabled:
        yield _Silent()
        return
    from tqdm import tqdm

    # disable=None: tqdm turns itself off when stderr is not a terminal (a log, CI).
    with tqdm(total=total, desc=description, unit=unit, delay=DELAY, leave=False,
              file=sys.stderr, disable=None, dynamic_ncols=True) as bar:
        yield bar
