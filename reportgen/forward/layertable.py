"""``reportgen layers``: every conv layer with its output shape, without any weights.

The model is built and run on the ``meta`` device, which computes shapes without memory or
arithmetic, so even the largest torchvision models answer in about a second. The model's
blocks that are not convolutions (``--layers @blocks``) are listed after the convs.
"""
from __future__ import annotations

from typing import Any

import torch

from reportgen.errors import ReportError
from reportgen.formatting import format_pair
from reportgen.forward.features import FeatureView, feature_spec, read_feature_map
from reportgen.forward.hooks import ConvHooks, ConvSpec, conv_layers, record_name
from reportgen.forward.selection import BLOCKS, block_names
from reportgen.inputs.inputsize import size_failures_explained
from reportgen.inputs.modelinput import input_channels
from reportgen.inputs.models import build_skeleton
from reportgen.options import LAYER_TABLE_SIZE


def conv_table(model: str, size: int = LAYER_TABLE_SIZE,
               model_args: tuple[str, ...] = ()) -> list[dict[str, Any]]:
    """One row per conv call (``spec``: its ConvSpec), then one per block call (``block``:
    its FeatureSpec, or the reason its output cannot be shown)."""
    if size < 1:
        raise ReportError(f"--size must be positive, not {size}.")
    network = build_skeleton(model, model_args)
    if any(not tensor.is_meta for tensor in network.parameters()):
        network = network.to_empty(device="meta")  # shapes only: drop the CPU storage
    convs = {name for name, _ in conv_layers(network)}
    blocks = block_names(network)
    rows: list[dict[str, Any]] = []
    block_rows: list[dict[str, Any]] = []

    def on_output(name: str, call: int, module: Any, output: Any) -> None:
        if name in convs:
            rows.append({"name": record_name(name, call), "spec": ConvSpec.of(name, module),
                         "output": tuple(int(v) for v in output.shape)})
            return
        view = read_feature_map(output, (size, size))
        block_rows.append({"name": record_name(name, call), "block": (
            feature_spec(name, module, view) if isinstance(view, FeatureView) else view)})

    channels = input_channels(network)[0]
    batch = torch.empty(1, channels, size, size, device="meta")
    try:
        with size_failures_explained(network, batch, model), \
                ConvHooks(network, on_output, [*convs, *blocks]) as hooks:
            hooks.run(batch)
    except RuntimeError as error:
        raise ReportError(f"{model} cannot run on a {size}x{size} input: "
                          f"{str(error).splitlines()[0]}") from None
    return rows + block_rows


def format_table(rows: list[dict[str, Any]]) -> str:
    header = ("layer", "in -> out", "kernel", "stride", "padding", "dilation", "groups",
              "output", "params")
    lines = [header]
    blocks = [row for row in rows if "block" in row]
    rows = [row for row in rows if "spec" in row]
    for row in rows:
        spec: ConvSpec = row["spec"]
        lines.append((row["name"], f"{spec.in_channels} -> {spec.out_channels}",
                      _pair_x(spec.kernel), _pair_x(spec.stride), _pair_x(spec.padding),
                      _pair_x(spec.dilation), str(spec.groups),
                      "x".join(str(v) for v in row["output"]), f"{spec.parameters:,}"))
    widths = [max(len(line[i]) for line in lines) for i in range(len(header))]
    text = ["  ".join(cell.ljust(widths[i]) if i == 0 else cell.rjust(widths[i])
                      for i, cell in enumerate(line)).rstrip() for line in lines]
    if blocks:
        text.append(_blocks_line(blocks))
    total = sum(row["spec"].parameters for row in rows)
    text.append(f"{len(rows)} conv layers, {total:,} conv parameters")
    return "\n".join(text)


def _blocks_line(blocks: list[dict[str, Any]]) -> str:
    """The blocks that are not convolutions, in one line: first and last, and their outputs."""
    names = [row["name"] for row in blocks]
    shown = ", ".join(names) if len(names) <= 3 else f"{names[0]} ... {names[-1]}"
    outputs = []
    for row in blocks:
        block = row["block"]
        text = (f"{'x'.join(str(v) for v in block.output_shape)} as {block.out_channels} "
                f"channels of {block.map_size[0]}x{block.map_size[1]}"
                if not isinstance(block, str) else "not shown as maps")
        if text not in outputs:
            outputs.append(text)
    return (f"{len(blocks)} blocks, not convolutions ({BLOCKS} in --layers): {shown}; outputs "
            f"{', '.join(outputs[:3])}{', ...' if len(outputs) > 3 else ''}")


def _pair_x(value: Any) -> str:
    return format_pair(value, separator="x")
