"""Progress on stderr for long runs, through tqdm.

tqdm is the well-kept standard for this (a bar that redraws in place, rate and time left,
quiet when stderr is not a terminal); writing one by hand would re-solve terminal widths and
redraw throttling. A bar appears only after ``DELAY`` seconds, so quick builds stay silent.
"""
from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, Protocol

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
    with bar(description, total, unit, None, delay=DELAY, leave=False) as shown:
        yield shown


def bar(description: str, total: int | None, unit: str, enabled: bool | None, *,
        initial: int = 0, delay: float = 0.0, leave: bool = True) -> Any:
    """A tqdm bar on stderr (the caller updates and closes it). ``enabled=None``: only when
    stderr is a terminal, so logs and CI get no bar; ``initial`` is work already done (a
    resumed run)."""
    from tqdm import tqdm

    return tqdm(total=total, initial=initial, desc=description, unit=unit, delay=delay,
                leave=leave, file=sys.stderr, disable=None if enabled is None else not enabled,
                dynamic_ncols=True, smoothing=0.1)
