"""How numbers and pairs read in pages and in terminal tables alike."""
from __future__ import annotations

from typing import Any


def format_number(value: Any, digits: int = 4) -> str:
    if value is None:
        return "–"
    if isinstance(value, int):
        return f"{value:,}"
    return f"{value:.{digits}g}"


def format_pair(value: Any, separator: str = "×") -> str:
    """(3, 3) -> "3", (1, 7) -> "1×7"; a string (padding="same") is shown as it is."""
    if isinstance(value, (tuple, list)):
        return separator.join(str(v) for v in value) if len(set(value)) > 1 else str(value[0])
    return str(value)
