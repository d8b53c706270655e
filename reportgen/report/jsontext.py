"""The manifest's JSON text, byte for byte what ``json.dumps`` writes, at a fraction of its cost.

``json.dumps(..., indent=1)`` cannot use the C encoder (only ``indent=None`` does), so every
number of every per-channel list went through a Python generator: 0.18 s of a 0.9 s VGG16
report, plus a recursive pass turning NaN into null before it. Here a list of plain numbers
(or of booleans) is joined in one step with ``map``; dicts, strings and everything else follow
``json``'s own rules. Anything outside those rules (a non-string key, an unknown type) falls
back to ``json.dumps`` itself, so the bytes, and the errors, are always ``json``'s.
"""
from __future__ import annotations

import json
import math
from json.encoder import encode_basestring
from typing import Any

_BOOLS = {True: "true", False: "false"}


class _Unusual(Exception):
    """A value this writer does not handle itself: let ``json`` do all of it."""


def indented(value: Any) -> str:
    """``json.dumps(finite(value), sort_keys=True, indent=1, allow_nan=False,
    ensure_ascii=False)``, where ``finite`` writes a non-finite float as null (JSON has no NaN:
    a diverged random net)."""
    try:
        parts: list[str] = []
        _write(value, 0, parts)
        return "".join(parts)
    except _Unusual:
        return json.dumps(finite(value), sort_keys=True, indent=1, allow_nan=False,
                          ensure_ascii=False)


def finite(value: Any) -> Any:
    """``value`` with every non-finite float replaced by None, tuples as lists."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {key: finite(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [finite(item) for item in value]
    return value


def _scalar(value: Any) -> str:
    """One value that is not a list or a dict, in the order of ``json``'s own checks."""
    if isinstance(value, str):
        return encode_basestring(value)
    if value is None:
        return "null"
    if value is True or value is False:
        return _BOOLS[value]
    if isinstance(value, int):
        return int.__repr__(value)
    if isinstance(value, float):
        return float.__repr__(value) if math.isfinite(value) else "null"
    raise _Unusual


def _numbers(items: list[Any] | tuple[Any, ...]) -> list[str] | None:
    """Each item's text when all are plain numbers or all booleans (one ``map``), else None."""
    kinds = set(map(type, items))
    if kinds <= {float, int}:
        try:
            if float in kinds and not all(map(math.isfinite, items)):
                return None  # a NaN among them: the item by item way writes it as null
        except OverflowError:  # an int too large for a float: no NaN, but no shortcut either
            return None
        return list(map(repr, items))
    if kinds == {bool}:
        return list(map(_BOOLS.__getitem__, items))
    return None


def _write(value: Any, level: int, parts: list[str]) -> None:
    if isinstance(value, (list, tuple)):
        if not value:
            parts.append("[]")
            return
        inner = "\n" + " " * (level + 1)
        texts = _numbers(value)
        if texts is not None:
            parts.append("[" + inner + ("," + inner).join(texts) + "\n" + " " * level + "]")
            return
        parts.append("[")
        for number, item in enumerate(value):
            parts.append(("," if number else "") + inner)
            _write(item, level + 1, parts)
        parts.append("\n" + " " * level + "]")
    elif isinstance(value, dict):
        if not value:
            parts.append("{}")
            return
        if not all(isinstance(key, str) for key in value):
            raise _Unusual
        inner = "\n" + " " * (level + 1)
        parts.append("{")
        for number, (key, item) in enumerate(sorted(value.items())):
            parts.append(("," if number else "") + inner + encode_basestring(key) + ": ")
            _write(item, level + 1, parts)
        parts.append("\n" + " " * level + "}")
    else:
        parts.append(_scalar(value))
