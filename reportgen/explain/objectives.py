"""What feature visualisation maximises, as a value: Lucent's ``objectives.channel(layer, n)``.

An objective names the layer whose output it reads and what of that output it scores. The
optimiser takes a list of them (one image each, many per batch), the cache and the report
keep each picture's achieved score under ``objective``. Only channels exist so far, scored
by the mean of the channel's map as the report shows it (rectified with ``--rectify``);
another kind (a neuron, a direction, a channel's negative) is another value of this sort.
"""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ChannelObjective:
    """The mean of one channel's map of one layer (``name@2``: the conv's second call)."""

    layer: str
    channel: int


def channel(layer: str, n: int) -> ChannelObjective:
    """Lucent's spelling: ``objectives.channel("features.10.conv.1.0", 7)``."""
    return ChannelObjective(layer, int(n))
