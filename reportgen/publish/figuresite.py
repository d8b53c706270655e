"""What a built report offers a figure beyond its maps: dataset examples, feature
visualisations and Grad-CAM, read from the site's own files through its manifest.json.

The figure command draws these from the pictures the report published (sprite-sheet crops and
the 16-bit Grad-CAM PNG) rather than computing them again: a paper's figure then shows exactly
what the report showed. A panel the report does not have is refused before any work, naming
the build flag that would provide it.
"""
from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from reportgen.errors import ReportError
from reportgen.report.manifest import SavedReport
from reportgen.sitelayout import INPUT_PNG

#: What a channel's row can show, in the order ``--panels`` lists them by default.
PANELS = ("map", "examples", "featurevis", "gradcam")
#: The build flag that puts each panel's pictures into a report.
PROVIDED_BY = {"examples": "--dataset FOLDER", "featurevis": "--feature-vis LAYER:CH",
               "gradcam": "--explain"}
#: Rows for a layer selected without channels: its most active ones that have every panel.
ROW_CHANNELS = 4


def parse_panels(text: str | Sequence[str]) -> tuple[str, ...]:
    """``map,examples,featurevis,gradcam`` (any of them, in the order to draw them)."""
    words = text.split(",") if isinstance(text, str) else list(text)
    chosen = tuple(dict.fromkeys(word.strip() for word in words if word.strip()))
    wrong = [word for word in chosen if word not in PANELS]
    if wrong or not chosen:
        raise ReportError(f"--panels '{','.join(wrong) if wrong else text}' is not a list of "
                          f"panels; use some of {', '.join(PANELS)}, such as "
                          "map,examples,featurevis.")
    return chosen


@dataclass(frozen=True)
class GradCam:
    """A layer's Grad-CAM as the report saved it (CAM / its max, at the map's size), the
    report's input picture to lay it over, the class it explains, each channel's share."""

    cam: np.ndarray  # (H, W) float in 0..1
    picture: np.ndarray  # the first image as the model saw it, RGB uint8
    label: str
    contribution: list[float]


class ReportPictures:
    """A built report's examples, feature visualisations and Grad-CAM, by layer and channel."""

    def __init__(self, saved: SavedReport) -> None:
        self.site = saved.path.parent
        self.layers: dict[str, dict[str, Any]] = {
            str(entry["name"]): entry for entry in saved.data.get("layers", [])}
        self._sheets: dict[str, np.ndarray] = {}  # one read per sheet, for all its crops
        self._examples: dict[str, list[list[dict[str, Any]]]] = {}

    def layer(self, name: str) -> dict[str, Any]:
        entry = self.layers.get(name)
        if entry is None:
            raise ReportError(f"--select {name}: the report in '{self.site}' has no layer "
                              f"'{name}'; its layers are {', '.join(self.layers)}.")
        return entry

    def channels(self, name: str, asked: tuple[int, ...] | None, panels: tuple[str, ...]
                 ) -> list[int]:
        """The channels to draw rows for, each checked to have every panel asked for: those
        listed, or the layer's :data:`ROW_CHANNELS` most active ones that have them all."""
        entry = self.layer(name)
        count = int(entry["output_shape"][1])
        for panel in panels:
            if panel in ("examples", "gradcam"):
                self._require(entry, panel, None)
        if asked is not None:
            chosen = list(dict.fromkeys(asked))
            for channel in chosen:
                if channel >= count:
                    raise ReportError(f"--select {name}: channel {channel} does not exist; "
                                      f"the layer has {count} channels (0-{count - 1}).")
                if "featurevis" in panels:
                    self._require(entry, "featurevis", channel)
            return chosen
        ranked = [int(k) for k in entry.get("ranking", {}).get("mean", range(count))]
        if "featurevis" in panels:
            visualised = set(entry.get("feature_vis", {}).get("channels", {}))
            ranked = [k for k in ranked if str(k) in visualised]
            if not ranked:
                self._require(entry, "featurevis", None)
        return ranked[:ROW_CHANNELS]

    def _require(self, entry: dict[str, Any], panel: str, channel: int | None) -> None:
        key = {"examples": "examples", "featurevis": "feature_vis",
               "gradcam": "attribution"}[panel]
        found = entry.get(key)
        if found and (channel is None or str(channel) in found.get("channels", {})):
            return
        name = entry["name"]
        what = {"examples": f"no dataset examples of {name}",
                "featurevis": f"no feature visualisation of {name}" +
                              (f":{channel}" if channel is not None else ""),
                "gradcam": f"no Grad-CAM of {name}"}[panel]
        flag = PROVIDED_BY[panel].replace("LAYER:CH", f"{name}:{channel}" if channel is not None
                                          else name)
        raise ReportError(f"--panels {panel}: the report in '{self.site}' has {what}; build "
                          f"it with {flag}.")

    def examples(self, name: str, channel: int, count: int) -> list[np.ndarray]:
        """The channel's best ``count`` dataset crops (fewer when the dataset had fewer)."""
        return [self._crop(example["crop"]) for example in self._listed(name)[channel][:count]]

    def examples_available(self, name: str) -> int:
        """How many examples a channel of the layer has at most (the build's --top-k)."""
        return max((len(channel) for channel in self._listed(name)), default=0)

    def _listed(self, name: str) -> list[list[dict[str, Any]]]:
        if name not in self._examples:
            path = self.site / self.layer(name)["examples"]
            try:
                channels = json.loads(path.read_text(encoding="utf-8"))
                # per channel {top, inhibiting, notes}; a report before schema 4, a list
                self._examples[name] = [channel["top"] if isinstance(channel, dict)
                                        else channel for channel in channels]
            except (OSError, ValueError, KeyError, TypeError) as error:
                raise ReportError(f"Cannot read the report's examples '{path}': {error}.") \
                    from None
        return self._examples[name]

    def feature_vis(self, name: str, channel: int) -> np.ndarray:
        return self._crop(self.layer(name)["feature_vis"]["channels"][str(channel)]["crop"])

    def grad_cam(self, name: str) -> GradCam:
        why = self.layer(name)["attribution"]
        cam = _pixels(self.site / why["cam"], None).astype(np.float32) / 65535.0  # 16-bit
        return GradCam(cam, _pixels(self.site / INPUT_PNG, "RGB"), str(why["label"]),
                       [float(value) for value in why["contribution"]])

    def _crop(self, crop: dict[str, Any]) -> np.ndarray:
        src = str(crop["src"])
        if src not in self._sheets:
            self._sheets[src] = _pixels(self.site / src, "RGB")
        x, y = int(crop["x"]), int(crop["y"])
        return self._sheets[src][y:y + int(crop["height"]), x:x + int(crop["width"])]


def _pixels(path: Path, mode: str | None) -> np.ndarray:
    """A picture of the report's, converted to ``mode`` (None: as stored)."""
    try:
        with Image.open(path) as png:
            return np.asarray(png.convert(mode) if mode else png)
    except OSError as error:
        raise ReportError(f"Cannot read the report's picture '{path}': {error}.") from None
