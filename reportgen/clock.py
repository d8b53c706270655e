"""Stage timings of a build: ``with clock("forward"): ...`` adds the block's seconds.

One object instead of laps and subtractions: each stage is timed where it runs, and a part of
a stage that belongs elsewhere (the grids drawn inside the forward hooks) is moved, not
subtracted by hand.
"""
from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager


class Clock:
    """Seconds per named stage, in the order the stages first ran."""

    def __init__(self) -> None:
        self.timings: dict[str, float] = {}

    @contextmanager
    def __call__(self, stage: str) -> Iterator[None]:
        started = time.perf_counter()
        try:
            yield
        finally:
            self.add(stage, time.perf_counter() - started)

    def add(self, stage: str, seconds: float) -> None:
        self.timings[stage] = self.timings.get(stage, 0.0) + seconds

    def move(self, seconds: float, source: str, target: str) -> None:
        """``seconds`` counted in ``source`` were spent on ``target``."""
        self.add(source, -seconds)
        self.add(target, seconds)
