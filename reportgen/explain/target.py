"""Which class score attribution explains: ``--explain`` parsed once, into a value.

As pytorch-grad-cam's ``ClassifierOutputTarget(category)``, a :class:`ClassTarget` picks one
score out of the model's output. ``--explain`` alone (``"top"``: the top-1 class), a class
index (``967``) or a category label (``espresso``) becomes one here and nowhere else: the
build checks a label against the categories before the long stages, and attribution picks
the score after its forward pass, with the same rules and the same messages.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from reportgen.errors import ReportError

#: What ``--explain`` without a value records: the top-1 class.
TOP = "top"


@dataclass(frozen=True)
class ClassTarget:
    """The top-1 class (neither field), a class index, or a category label."""

    index: int | None = None
    label: str | None = None

    @classmethod
    def parse(cls, given: ClassTarget | int | str | None) -> ClassTarget:
        """``None``/``"top"`` -> the top-1 class; ``967``/``"967"`` -> an index; else a label."""
        if isinstance(given, ClassTarget):
            return given
        if given is None or given == TOP:
            return cls()
        if isinstance(given, int):
            return cls(index=given)
        if given.strip().lstrip("-").isdigit():
            return cls(index=int(given))
        return cls(label=given)

    def check(self, categories: Sequence[str] | None) -> None:
        """Refuse a label that is not one of ``categories`` (known before any pass runs)."""
        if self.label is not None and (not categories or self.label not in categories):
            raise ReportError(f"Unknown class '{self.label}'; give a class index or one of the "
                              "model's category labels.")

    def pick(self, logits: torch.Tensor,
             categories: Sequence[str] | None) -> tuple[int, str]:
        """(class index, its label) for one image's class scores, (1, K)."""
        classes = int(logits.shape[1])
        self.check(categories)
        if self.label is not None:
            assert categories is not None  # check() refused None
            index = list(categories).index(self.label)
        elif self.index is None:
            index = int(logits[0].detach().argmax())
        else:
            index = self.index
        if not 0 <= index < classes:
            raise ReportError(f"Class index {index} is out of range; the model has {classes} "
                              "classes.")
        label = categories[index] if categories and index < len(categories) else f"class {index}"
        return index, label
