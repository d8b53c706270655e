"""The report's "Reproduce" section: how to rebuild it, with what, and how to cite it.

Everything comes from the report record (nothing from the machine at render time), so the section
says what was recorded and two builds of the same thing stay byte-identical. A command run from
the CLI was recorded as typed; for a build from Python we spell out the equivalent command, or,
when the model or image only existed in memory, the equivalent ``build_report`` call.
"""
from __future__ import annotations

import re
import shlex
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from reportgen.options import BuildOptions
from reportgen.report.model import ReportRecord

_TITLE = "reportgen: see what every convolution layer of a CNN sees"


@dataclass(frozen=True)
class Reproduction:
    """What the template shows."""

    command: str | None  # as recorded by the CLI
    equivalent: str | None  # every option spelled out; None when no command line can do it
    python: str | None  # the build_report call, when the inputs only existed in memory
    reason: str | None  # why there is no command line
    figure: str  # how to draw a figure for a paper from this report
    versions: dict[str, str]
    hashes: list[tuple[str, str, str]]  # (what, name, sha256)
    bibtex: str


def reproduction(record: ReportRecord) -> Reproduction:
    equivalent, reason = equivalent_command(record)
    hashes = []
    weights, image = record.weights, record.image
    if record.model.source_sha256:
        hashes.append(("Model code", record.model.name.rpartition(":")[0],
                       record.model.source_sha256))
    if weights.get("sha256"):
        hashes.append(("Weights", str(weights.get("file", weights.get("name"))),
                       weights["sha256"]))
    if image.get("sha256"):
        what = "Image" if image.get("kind") == "file" else "Image (decoded pixels)"
        hashes.append((what, str(image.get("source")), image["sha256"]))
    first = record.layers[0].name if record.layers else "LAYER"
    return Reproduction(
        command=record.command, equivalent=equivalent,
        python=None if equivalent else python_call(record), reason=reason,
        figure=shlex.join(["reportgen", "figure", "--from", "site", "--select", str(first),
                           "-o", "figure.pdf"]),
        versions=dict(record.versions), hashes=hashes,
        bibtex=bibtex(record.versions.get("reportgen", ""), record.created, record.model.name))


def equivalent_command(record: ReportRecord) -> tuple[str | None, str | None]:
    """``reportgen build`` with every recorded option, or (None, why not)."""
    if record.in_memory_model:
        return None, (f"the model was the caller's own {record.model.class_name} module, "
                      "which only exists in their Python code")
    images = [view.image for view in record.inputs]
    if any(image.get("kind") == "tensor" for image in images):
        return None, "the model's input was a tensor passed from Python (preprocess=False)"
    if any(image.get("kind") not in ("skimage", "file") for image in images):
        return None, "the image was passed from Python as an array or PIL image"
    return rebuild_command(record.model.name, _weights_argument(record.weights),
                           [str(image["source"]) for image in images], record.options,
                           seeded="seed" in record.weights), None


def rebuild_command(model: str | None, weights: str | None, images: Sequence[str],
                    options: BuildOptions, *, seeded: bool = True, typed: bool = False,
                    site_dir: str | None = None, categories: str | None = None) -> str:
    """``reportgen build`` with these inputs (None: left at its default) and options: every
    recorded option spelled out, or with ``typed`` only those that differ from their defaults
    (the command as typed, which the CLI records). The one writer of a rebuild command; the
    caller gives paths already cut to what may be published."""
    words = ["reportgen", "build"]
    words += ["--model", model] if model is not None else []
    words += ["--weights", weights] if weights is not None else []
    for image in images:
        words += ["--image", image]
    words += ["--site-dir", site_dir] if site_dir is not None else []
    words += options.command_words(seeded, typed=typed)
    words += ["--categories", categories] if categories is not None else []
    return shlex.join(words)


def _weights_argument(weights: dict[str, Any]) -> str:
    name = str(weights.get("name", "DEFAULT"))
    if name == "checkpoint":
        return str(weights.get("file", "checkpoint.pth"))
    return name  # "none" or the weights actually used, e.g. IMAGENET1K_V1 (not DEFAULT)


def python_call(record: ReportRecord) -> str:
    """The build_report call for inputs a command line cannot name."""
    image = record.image
    if record.in_memory_model:
        model = f"my_model  # your {record.model.class_name} instance"
        weights_value = "None"
    else:
        model = repr(record.model.name)
        weights_value = repr(_weights_argument(record.weights))
    if len(record.inputs) > 1:
        image_value = repr([str(view.image.get("source")) for view in record.inputs])
    elif image.get("kind") in ("skimage", "file"):
        image_value = repr(str(image.get("source")))
    elif image.get("kind") == "tensor":
        image_value = (f"my_tensor  # the {image.get('channels')}x{image.get('height')}x"
                       f"{image.get('width')} {image.get('dtype')} tensor, SHA-256 "
                       f"{str(image.get('sha256', ''))[:12]}...")
    else:
        image_value = (f"my_image  # the {image.get('width')}x{image.get('height')} picture, "
                       f"pixels SHA-256 {str(image.get('sha256', ''))[:12]}...")
    lines = ["import reportgen", "", "reportgen.build_report(", f"    model={model},",
             f"    weights={weights_value},", f"    image={image_value},",
             "    site_dir='site',"]
    lines += [f"    {key}={value!r}," for key, value in record.options.recorded().items()]
    if not record.options.preprocess:
        lines.append("    preprocess=False,")
    lines.append(")")
    return "\n".join(lines)


def bibtex(version: str, created: str, model_name: str) -> str:
    """A @software entry for reportgen at the version and year that built this report."""
    year = created[:4] if re.match(r"\d{4}", created) else ""
    fields = [("title", _TITLE), ("author", "{The reportgen developers}"),
              ("version", version), ("year", year),
              ("note", f"Activation report of {model_name or 'a model'} built on {created}")]
    body = ",\n".join(f"  {name} = {{{_bibtex_escape(value) if name != 'author' else value}}}"
                      for name, value in fields if value)
    return f"@software{{reportgen,\n{body}\n}}"


def _bibtex_escape(text: str) -> str:
    return re.sub(r"([&%$#_{}])", r"\\\1", text)
