"""Which channels to visualise: ``LAYERGLOB:CHANNELS`` specs, comma separated.

CHANNELS is a list of items, ``0-15``, ``3``, ``topN`` (the N channels with the largest mean
on the input image) or ``all``; commas separate both the items of one spec and the specs, so
a token that contains ``:`` starts a new spec and any other token continues the current one:
``features.1*:0-3,7,features.10.conv.1.0:top8`` is two specs.
"""
from __future__ import annotations

import fnmatch
import re
from collections.abc import Mapping, Sequence

from reportgen.errors import ReportError
from reportgen.forward.stats import rank_channels

_RANGE = re.compile(r"^(\d+)(?:-(\d+))?$")
_TOP = re.compile(r"^top(\d+)$", re.IGNORECASE)


def parse_channel_specs(text: str, layers: Mapping[str, int],
                        means: Mapping[str, Sequence[float]] | None = None) -> dict[str, list[int]]:
    """``{layer: [channels]}`` in the model's layer order (the order of ``layers``).

    ``layers`` maps each conv layer name to its number of channels; ``means`` maps a layer to
    its per-channel means on the input image, needed only for ``topN``. A layer matched by
    several specs gets the union, in the order first asked for. Every mistake is one
    :class:`ReportError` line that names the offending part.
    """
    chosen: dict[str, list[int]] = {}
    for glob, items in _split(text):
        matched = [name for name in layers if fnmatch.fnmatchcase(name, glob)]
        if not matched:
            shown = ", ".join(list(layers)[:8]) + (", ..." if len(layers) > 8 else "")
            raise ReportError(f"Channel spec '{glob}:{','.join(items)}': '{glob}' matches no "
                              f"conv layer; the layers are {shown}.")
        for name in matched:
            picked = chosen.setdefault(name, [])
            for channel in _channels(name, layers[name], items, means):
                if channel not in picked:
                    picked.append(channel)
    return {name: chosen[name] for name in layers if name in chosen}


def _split(text: str) -> list[tuple[str, list[str]]]:
    specs: list[tuple[str, list[str]]] = []
    for token in (part.strip() for part in text.split(",")):
        if not token:
            raise ReportError(f"Channel spec '{text}' has an empty item (two commas in a row, "
                              "or a comma at an end).")
        if ":" in token:
            glob, _, first = token.rpartition(":")
            if not glob.strip():
                raise ReportError(f"Channel spec '{token}' has no layer before ':'.")
            specs.append((glob.strip(), [first.strip()] if first.strip() else []))
        elif not specs:
            raise ReportError(f"Channel spec '{text}' must start with LAYER:CHANNELS, "
                              f"e.g. features.10.conv.1.0:0-15 ('{token}' has no ':').")
        else:
            specs[-1][1].append(token)
    if not specs:
        raise ReportError("Channel spec is empty; use LAYER:CHANNELS, e.g. features.0.0:all.")
    for glob, items in specs:
        if not items:
            raise ReportError(f"Channel spec '{glob}:' lists no channels; use e.g. "
                              f"{glob}:0-15, {glob}:3,7, {glob}:top8 or {glob}:all.")
    return specs


def _channels(layer: str, count: int, items: list[str],
              means: Mapping[str, Sequence[float]] | None) -> list[int]:
    picked: list[int] = []
    for item in items:
        if item.lower() == "all":
            picked += range(count)
            continue
        top = _TOP.match(item)
        if top:
            picked += _top(layer, int(top.group(1)), means)
            continue
        found = _RANGE.match(item)
        if not found:
            raise ReportError(f"Channel spec for {layer}: '{item}' is not a channel, a range "
                              "such as 0-15, topN or all.")
        first, last = int(found.group(1)), int(found.group(2) or found.group(1))
        if first > last:
            raise ReportError(f"Channel spec for {layer}: range '{item}' runs backwards.")
        if last >= count:
            raise ReportError(f"Channel spec for {layer}: '{item}' is out of range; the layer "
                              f"has channels 0-{count - 1}.")
        picked += range(first, last + 1)
    return picked


def _top(layer: str, n: int, means: Mapping[str, Sequence[float]] | None) -> list[int]:
    if n < 1:
        raise ReportError(f"Channel spec for {layer}: top{n} asks for no channel; "
                          "use top1 or more.")
    if means is None or layer not in means:
        raise ReportError(f"Channel spec for {layer}: top{n} needs the channel means on an "
                          "input image, and none were given.")
    return rank_channels(list(means[layer]))[:n]  # ties: the lower index first
