"""Which layers a report shows: ``--layers`` globs over the model's module names.

Without ``--layers``: every ``nn.Conv2d``. With it, each comma-separated glob selects the conv
layers it matches, as it always has (``layer4.*`` is layer4's convs, not its norms and ReLUs);
a glob that matches no conv layer selects the other modules it names instead, such as a ViT's
blocks (``encoder.layers.encoder_layer_?``) or a ResNet's (``layer4.?``).
``@blocks`` is short for "the blocks": every module that is repeated among its siblings and
is not a plain container (nn.Sequential, nn.ModuleList, nn.ModuleDict), a convolution or a
leaf, outermost first, for example a ViT's 12 encoder blocks or a ResNet's 8 BasicBlocks.
"""
from __future__ import annotations

import fnmatch
from collections import Counter

from torch import nn

from reportgen.errors import ReportError
from reportgen.forward.hooks import conv_layers

BLOCKS = "@blocks"
_CONTAINERS = (nn.Sequential, nn.ModuleList, nn.ModuleDict)


def choose_layers(model: nn.Module, pattern: str | None) -> list[str]:
    """The module names to hook, in the model's order; an error lists the layers when a glob
    matches nothing."""
    convs = [name for name, _ in conv_layers(model)]
    if not pattern:
        return convs
    others = [name for name, module in model.named_modules()
              if name and not isinstance(module, nn.Conv2d)]
    chosen: set[str] = set()
    for glob in (part.strip() for part in pattern.split(",")):
        if not glob:
            continue
        if glob == BLOCKS:
            blocks = block_names(model)
            if not blocks:
                raise ReportError(f"--layers {BLOCKS}: {type(model).__name__} has no repeated "
                                  "blocks; name its layers with globs ('reportgen layers' "
                                  "lists the conv layers).")
            chosen.update(blocks)
            continue
        matched = [name for name in convs if fnmatch.fnmatchcase(name, glob)]
        chosen.update(matched or [name for name in others if fnmatch.fnmatchcase(name, glob)])
    if not chosen:
        shown = ", ".join(convs[:12]) + (f", ... ({len(convs)} in all)" if len(convs) > 12
                                         else "")
        blocks = block_names(model)
        hint = (f"; other layers such as {blocks[0]} can be named too ({BLOCKS} selects its "
                f"{len(blocks)} blocks)" if blocks else "")
        raise ReportError(f"--layers '{pattern}' matches no conv layer; the layers are "
                          f"{shown}{hint}.")
    return [name for name, _ in model.named_modules() if name in chosen]


def block_names(model: nn.Module) -> list[str]:
    """The model's blocks: outermost modules repeated among their siblings (see above)."""
    found: list[str] = []

    def visit(prefix: str, module: nn.Module) -> None:
        children = list(module.named_children())
        counts = Counter(type(child) for _, child in children)
        for name, child in children:
            full = f"{prefix}.{name}" if prefix else name
            if type(child) in _CONTAINERS:
                visit(full, child)
            elif isinstance(child, nn.Conv2d) or next(child.children(), None) is None:
                continue
            elif counts[type(child)] >= 2:
                found.append(full)
            else:
                visit(full, child)

    visit("", model)
    return found
