"""The report's "Reproduce" section: how to rebuild it, with what, and how to cite it.

Everything comes from the manifest (nothing from the machine at render time), so the section
says what was recorded and two builds of the same thing stay byte-identical. A command run from
the CLI was recorded as typed; for a build from Python we spell out the equivalent command, or,
when the model or image only existed in memory, the equivalent ``build_report`` call.
"""
from __future__ import annotations

import re
import shlex
from dataclasses import dataclass
from typing import Any

#: Weights records that a command line cannot name.
_IN_MEMORY_MODEL = "as given"
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


def reproduction(manifest: dict[str, Any]) -> Reproduction:
    equivalent, reason = equivalent_command(manifest)
    hashes = []
    weights = manifest.get("weights", {})
    if weights.get("sha256"):
        hashes.append(("Weights", str(weights.get("file", weights.get("name"))),
                       weights["sha256"]))
    image = manifest.get("image", {})
    if image.get("sha256"):
        what = "Image" if image.get("kind") == "file" else "Image (decoded pixels)"
        hashes.append((what, str(image.get("source")), image["sha256"]))
    layers = manifest.get("layers") or [{}]
    first = layers[0].get("name", "LAYER")
    return Reproduction(
        command=manifest.get("command"), equivalent=equivalent,
        python=None if equivalent else python_call(manifest), reason=reason,
        figure=shlex.join(["reportgen", "figure", "--from", "site", "--select", str(first),
                           "-o", "figure.pdf"]),
        versions=dict(manifest.get("versions", {})), hashes=hashes, bibtex=bibtex(manifest))


def equivalent_command(manifest: dict[str, Any]) -> tuple[str | None, str | None]:
    """``reportgen build`` with every recorded option, or (None, why not)."""
    weights = manifest.get("weights", {})
    image = manifest.get("image", {})
    if weights.get("name") == _IN_MEMORY_MODEL:
        return None, (f"the model was the caller's own {manifest['model']['class']} module, "
                      "which only exists in their Python code")
    if image.get("kind") not in ("skimage", "file"):
        return None, "the image was passed from Python as an array or PIL image"
    options = manifest.get("options", {})
    words = ["reportgen", "build", "--model", manifest["model"]["name"],
             "--weights", _weights_argument(weights), "--image", str(image["source"])]
    if weights.get("name") == "none":
        words += ["--seed", str(options.get("seed", weights.get("seed", 0)))]
    if options.get("layers"):
        words += ["--layers", str(options["layers"])]
    words += ["--normalize", str(options.get("normalize", "channel")),
              "--cmap", str(options.get("cmap", "gray"))]
    if options.get("rectify"):
        words.append("--rectify")
    if options.get("size") is not None:
        words += ["--size", str(options["size"])]
    if options.get("tile_cap") is not None:
        words += ["--tile-cap", str(options["tile_cap"])]
    if options.get("compress_level") is not None:
        words += ["--compress-level", str(options["compress_level"])]
    return shlex.join(words), None


def _weights_argument(weights: dict[str, Any]) -> str:
    name = str(weights.get("name", "DEFAULT"))
    if name == "checkpoint":
        return str(weights.get("file", "checkpoint.pth"))
    return name  # "none" or the weights actually used, e.g. IMAGENET1K_V1 (not DEFAULT)


def python_call(manifest: dict[str, Any]) -> str:
    """The build_report call for inputs a command line cannot name."""
    weights = manifest.get("weights", {})
    image = manifest.get("image", {})
    options = manifest.get("options", {})
    if weights.get("name") == _IN_MEMORY_MODEL:
        model = f"my_model  # your {manifest['model']['class']} instance"
        weights_value = "None"
    else:
        model = repr(manifest["model"]["name"])
        weights_value = repr(_weights_argument(weights))
    if image.get("kind") in ("skimage", "file"):
        image_value = repr(str(image.get("source")))
    else:
        image_value = (f"my_image  # the {image.get('width')}x{image.get('height')} picture, "
                       f"pixels SHA-256 {str(image.get('sha256', ''))[:12]}...")
    lines = ["import reportgen", "", "reportgen.build_report(", f"    model={model},",
             f"    weights={weights_value},", f"    image={image_value},",
             "    site_dir='site',"]
    for key in ("layers", "normalize", "cmap", "rectify", "size", "tile_cap", "compress_level",
                "seed"):
        if key in options:
            lines.append(f"    {key}={options[key]!r},")
    lines.append(")")
    return "\n".join(lines)


def bibtex(manifest: dict[str, Any]) -> str:
    """A @software entry for reportgen at the version and year that built this report."""
    version = str(manifest.get("versions", {}).get("reportgen", ""))
    created = str(manifest.get("created", ""))
    year = created[:4] if re.match(r"\d{4}", created) else ""
    fields = [("title", _TITLE), ("author", "{The reportgen developers}"),
              ("version", version), ("year", year),
              ("note", f"Activation report of {manifest.get('model', {}).get('name', 'a model')}"
                       f" built on {created}")]
    body = ",\n".join(f"  {name} = {{{_bibtex_escape(value) if name != 'author' else value}}}"
                      for name, value in fields if value)
    return f"@software{{reportgen,\n{body}\n}}"


def _bibtex_escape(text: str) -> str:
    return re.sub(r"([&%$#_{}])", r"\\\1", text)
