"""What the pages embed for their JavaScript, and the sidebar's grouping (no browser needed)."""
from __future__ import annotations

import html
import json
import re
from types import SimpleNamespace

import pytest
import torch
import torchvision
from torch import nn

from reportgen import build_report
from reportgen.forward.hooks import conv_layers
from reportgen.report.pages import SCRIPT_FOLDER, SCRIPT_PARTS, copy_static, script, template_dir
from reportgen.report.views import display_scale, toc


def _outline(items) -> list:
    return [[item.name, _outline(item.entries)] if item.is_group else item.label for item in items]


def _records(names: list[str]) -> list[SimpleNamespace]:
    return [SimpleNamespace(name=name, module_name=name.split("@")[0]) for name in names]


def test_toc_follows_module_paths_in_forward_order():
    names = [name for name, _ in conv_layers(torchvision.models.resnet18(weights=None))]
    outline = _outline(toc(_records(names)))
    assert outline[0] == "conv1"
    assert outline[1] == ["layer1", [["layer1.0", ["conv1", "conv2"]],
                                     ["layer1.1", ["conv1", "conv2"]]]]
    assert outline[2][1][0] == ["layer2.0", ["conv1", "conv2", "downsample.0"]]
    vgg = [name for name, _ in conv_layers(torchvision.models.vgg11(weights=None))]
    assert _outline(toc(_records(vgg))) == [
        ["features", ["0", "3", "6", "8", "11", "13", "16", "18"]]]


def test_toc_keeps_a_module_called_again_later_in_its_place():
    outline = _outline(toc(_records(["stem", "body.1", "body.3", "head", "body.1@2"])))
    assert outline == ["stem", ["body", ["1", "3"]], "head", "body.1@2"]


def test_display_scale_makes_small_maps_readable():
    assert display_scale(7, 7) == 10
    assert display_scale(14, 14) == 5
    assert display_scale(112, 112) == 1
    assert display_scale(256, 200) == 1


def _embedded(page: str) -> dict:
    match = re.search(r"data-channels='([^']*)'", page)
    assert match, "no embedded layer data"
    return json.loads(html.unescape(match.group(1)))


def test_pages_embed_the_manifest_rankings_and_tile_index(tmp_path, tiny_net):
    report = build_report(tiny_net, None, "chelsea", tmp_path / "site", size=32)
    for entry in report.manifest["layers"]:
        page = (report.site_dir / entry["page"]).read_text(encoding="utf-8")
        data = _embedded(page)
        assert f'data-layer="{html.escape(entry["name"])}"' in page
        assert data["name"] == entry["name"] and data["page"] == entry["page"]
        (image,) = data["images"]  # the one image's arrays, once: nothing repeats them
        assert not {"mean", "max", "positive", "flat", "ranking"} & data.keys()
        assert image["ranking"] == entry["ranking"]
        assert data["channels"] == entry["grid"]["channels"] == len(image["mean"])
        for key in ("cols", "gap", "tile_width", "tile_height", "width", "height"):
            assert data["grid"][key] == entry["grid"][key]
        assert image["grid"] == entry["activation"]
        for ours, theirs in zip(image["mean"], entry["channels"]["channel_mean"], strict=True):
            assert abs(ours - theirs) <= 5e-4 * max(1.0, abs(theirs))
        for key in ("low", "high"):
            assert data[key] == pytest.approx(entry["channels"][f"shown_{key}"], rel=5e-3)
        assert data["filters"]["src"] == entry["filters"]


class _OddNames(nn.Module):
    """Module names are user data: one that tries to close the attribute and the element."""

    def __init__(self) -> None:
        super().__init__()
        self._modules["a'></article><b>"] = nn.Conv2d(3, 2, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._modules["a'></article><b>"](x).mean(dim=(2, 3))


def test_embedded_json_cannot_break_out_of_its_attribute(tmp_path):
    report = build_report(_OddNames(), None, "chelsea", tmp_path / "site", size=16)
    page = (report.site_dir / report.manifest["layers"][0]["page"]).read_text(encoding="utf-8")
    assert "<b>" not in page and "<script" not in page.replace('<script src="static/', "")
    assert _embedded(page)["name"] == "a'></article><b>"


def test_report_js_is_every_part_once_in_order(tmp_path):
    """report.js is put together from templates/static/js/: a part left out of SCRIPT_PARTS
    would silently be missing from every report."""
    folder = template_dir() / "static" / SCRIPT_FOLDER
    assert sorted(SCRIPT_PARTS) == sorted(path.name for path in folder.glob("*.js"))
    text = script()
    starts = [text.index((folder / part).read_text(encoding="utf-8")) for part in SCRIPT_PARTS]
    assert starts == sorted(starts)
    urls = copy_static(tmp_path)
    assert (tmp_path / urls["report.js"]).read_text(encoding="utf-8") == text
    assert not (tmp_path / "static" / SCRIPT_FOLDER).exists()
