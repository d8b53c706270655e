"""``--categories FILE``: the names of the model's outputs, one per line or as a JSON list.

Read without torch (the CLI reads the file before anything heavy). Whether the count matches
the model's outputs is only known after the forward pass; build_report checks it there (an
error for a file, which was made for this model; a warning for a list from Python).
"""
from __future__ import annotations

import json
from pathlib import Path

from reportgen.errors import ReportError


def read_categories(path: str | Path) -> tuple[str, ...]:
    """Labels in output order: a JSON list of strings, or one label per line (blank lines at
    the end are ignored; a blank line between labels is a mistake)."""
    file = Path(path)
    try:
        text = file.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise ReportError(f"Categories file '{file.name}' does not exist.") from None
    except IsADirectoryError:
        raise ReportError(f"Categories file '{file.name}' is a folder; pass a text file with "
                          "one label per line, or a JSON list.") from None
    except (OSError, UnicodeDecodeError) as error:
        raise ReportError(f"Cannot read categories file '{file.name}': {error}.") from None
    if file.suffix.lower() == ".json" or text.lstrip().startswith(("[", "{")):
        return _json_labels(text, file.name)
    lines = [line.strip() for line in text.splitlines()]
    while lines and not lines[-1]:
        lines.pop()
    if not lines:
        raise ReportError(f"Categories file '{file.name}' is empty; give one label per line.")
    blank = [number for number, line in enumerate(lines, start=1) if not line]
    if blank:
        raise ReportError(f"Categories file '{file.name}' has an empty line ({blank[0]}); "
                          "give one label per line, in the order of the model's outputs.")
    return tuple(lines)


def _json_labels(text: str, shown: str) -> tuple[str, ...]:
    try:
        labels = json.loads(text)
    except ValueError as error:
        raise ReportError(f"Categories file '{shown}' starts like JSON but is not valid JSON "
                          f"({error}).") from None
    if (not isinstance(labels, list) or not labels
            or not all(isinstance(label, (str, int, float)) for label in labels)):
        raise ReportError(f"Categories file '{shown}' must hold a non-empty JSON list of "
                          "labels, such as [\"cat\", \"dog\"].")
    return tuple(str(label) for label in labels)
