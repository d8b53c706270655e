"""What the model's output says: the top classes per image, and whether the names fit it."""
from __future__ import annotations

import logging
from typing import Any

import torch

from reportgen.errors import ReportError
from reportgen.report.model import Prediction

log = logging.getLogger(__name__)


def is_logits(logits: Any) -> bool:
    """A classifier's (N, classes) output; other outputs have no predictions."""
    return isinstance(logits, torch.Tensor) and logits.dim() == 2


def predictions(logits: Any, categories: list[str] | None, number: int = 0,
                top: int = 5) -> list[Prediction]:
    """The top predictions for image ``number`` of the batch."""
    if not is_logits(logits):
        return []
    if categories and len(categories) != logits.shape[1]:
        categories = None
    probabilities = logits[number].float().softmax(dim=0)
    values, indices = probabilities.topk(min(top, probabilities.numel()))
    result = []
    for value, index in zip(values.tolist(), indices.tolist(), strict=True):
        label = categories[index] if categories and index < len(categories) else f"class {index}"
        result.append(Prediction(label, int(index), float(value)))
    return result


def category_notes(logits: Any, categories: list[str] | None, must_match: bool = False
                   ) -> list[str]:
    """A warning (and a note in the report) when the names do not match the outputs; an
    error when they must (a --categories file made for this model). One line however many
    images: the names and the outputs disagree for all of them."""
    if not categories or not is_logits(logits) or len(categories) == logits.shape[1]:
        return []
    if must_match:
        raise ReportError(f"--categories has {len(categories)} label"
                          f"{'s' if len(categories) != 1 else ''} but the model has "
                          f"{logits.shape[1]} outputs; give one label per output, in order.")
    note = (f"categories has {len(categories)} names but the model has {logits.shape[1]} "
            "outputs; the predictions are labelled by index instead.")
    log.warning("%s", note)
    return [note]
