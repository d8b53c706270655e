"""``reportgen layers``: every conv layer with its output shape, without any weights.

The model is built and run on the ``meta`` device, which computes shapes without memory or
arithmetic, so even the largest torchvision models answer in about a second.
"""
from __future__ import annotations

from typing import Any

import torch

from reportgen.errors import ReportError
from reportgen.forward.hooks import ConvHooks, ConvSpec, record_name
from reportgen.inputs.models import build_architecture, check_model_name
from reportgen.options import LAYER_TABLE_SIZE
from reportgen.report.formatting import format_pair


def conv_table(model: str, size: int = LAYER_TABLE_SIZE) -> list[dict[str, Any]]:
    check_model_name(model)
    if size < 1:
        raise ReportError(f"--size must be positive, not {size}.")
    rows: list[dict[str, Any]] = []

    def on_output(name: str, call: int, module: Any, output: torch.Tensor) -> None:
        spec = ConvSpec.of(name, module)
        rows.append({"name": record_name(name, call), "spec": spec,
                     "output": tuple(int(v) for v in output.shape)})

    network = build_architecture(model, on_meta=True)
    if any(not tensor.is_meta for tensor in network.parameters()):
        network = network.to_empty(device="meta")  # shapes only: drop the CPU storage
    try:
        with ConvHooks(network, on_output) as hooks:
            hooks.run(torch.empty(1, 3, size, size, device="meta"))
    except RuntimeError as error:
        raise ReportError(f"{model} cannot run on a {size}x{size} input: "
                          f"{str(error).splitlines()[0]}") from None
    return rows


def format_table(rows: list[dict[str, Any]]) -> str:
    header = ("layer", "in -> out", "kernel", "stride", "padding", "dilation", "groups",
              "output", "params")
    lines = [header]
    for row in rows:
        spec: ConvSpec = row["spec"]
        lines.append((row["name"], f"{spec.in_channels} -> {spec.out_channels}",
                      _pair_x(spec.kernel), _pair_x(spec.stride), _pair_x(spec.padding),
                      _pair_x(spec.dilation), str(spec.groups),
                      "x".join(str(v) for v in row["output"]), f"{spec.parameters:,}"))
    widths = [max(len(line[i]) for line in lines) for i in range(len(header))]
    text = ["  ".join(cell.ljust(widths[i]) if i == 0 else cell.rjust(widths[i])
                      for i, cell in enumerate(line)).rstrip() for line in lines]
    total = sum(row["spec"].parameters for row in rows)
    text.append(f"{len(rows)} conv layers, {total:,} conv parameters")
    return "\n".join(text)


def _pair_x(value: Any) -> str:
    return format_pair(value, separator="x")
