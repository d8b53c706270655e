"""Layers that are not convolutions: transformer and residual blocks shown as C maps of H×W."""
from __future__ import annotations

import json

import pytest
import torch
from click.testing import CliRunner
from torch import nn

from conftest import TinyNet
from reportgen import ReportError, build_report
from reportgen.cli import cli
from reportgen.forward.features import NCHW, NHWC, TOKENS, FeatureView, read_feature_map
from reportgen.forward.selection import block_names, choose_layers

VIT_BLOCKS = "encoder.layers.encoder_layer_?,encoder.layers.encoder_layer_1?"


def test_vit_blocks_are_shown_like_conv_layers(tmp_path):
    result = CliRunner().invoke(cli, ["build", "-m", "vit_b_16", "-w", "none", "-i", "coffee",
                                      "-d", str(tmp_path / "s"), "--layers", VIT_BLOCKS])
    assert result.exit_code == 0, result.output
    assert "Report of 12 layers written to" in result.output
    site = tmp_path / "s"
    manifest = json.loads((site / "manifest.json").read_text())
    layers = manifest["layers"]
    assert [layer["name"] for layer in layers] == [
        f"encoder.layers.encoder_layer_{n}" for n in range(12)]
    for layer in layers:
        assert layer["output_shape"] == [1, 768, 14, 14]
        assert layer["kind"] == "other" and layer["conv"] is None and layer["filters"] is None
        assert layer["layer"]["class_name"] == "EncoderBlock"
        assert layer["layer"]["read_as"] == TOKENS and layer["layer"]["dropped_tokens"] == 1
        assert len(layer["channels"]["channel_mean"]) == 768
        assert sorted(layer["ranking"]["mean"]) == list(range(768))
        assert (site / layer["page"]).is_file() and (site / layer["activation"]).is_file()
    page = (site / layers[3]["page"]).read_text()
    assert "768 channels of 14×14" in page
    assert "a token sequence (1×197×768) read as a 14×14 grid of 768 channels; the class " \
           "token dropped" in page
    assert "Filters exist only for convolutions" in page
    assert 'scope="row">Weights' not in page
    index = (site / "index.html").read_text()
    assert "<h2>Layers</h2>" in index and "EncoderBlock (not a convolution)" in index


def test_blocks_shorthand(tmp_path):
    from torchvision.models import resnet18, vit_b_16

    with torch.device("meta"):
        vit, resnet = vit_b_16(), resnet18()
    assert choose_layers(vit, "@blocks") == choose_layers(vit, VIT_BLOCKS)
    assert len(block_names(vit)) == 12
    assert block_names(resnet) == [f"layer{i}.{j}" for i in range(1, 5) for j in range(2)]
    assert choose_layers(resnet, "layer4.?") == ["layer4.0", "layer4.1"]
    # a glob that matches conv layers still selects only those, as it always did
    assert choose_layers(resnet, "layer4.*") == [
        name for name, module in resnet.named_modules()
        if name.startswith("layer4.") and isinstance(module, nn.Conv2d)]
    assert choose_layers(vit, "conv_proj,@blocks")[0] == "conv_proj"
    with torch.device("meta"):
        from torchvision.models import vgg11
        vgg = vgg11()
    with pytest.raises(ReportError, match="VGG has no repeated blocks"):
        choose_layers(vgg, "@blocks")
    with pytest.raises(ReportError, match="matches no conv layer; the layers are conv1, "
                                          ".*@blocks selects its 8 blocks"):
        choose_layers(resnet, "decoder.*")


def test_residual_blocks_and_convs_together(tmp_path):
    report = build_report("resnet18", "none", "coffee", tmp_path / "s", size=64,
                          layers="conv1,layer4.?")
    names = [layer.name for layer in report.layers]
    assert names == ["conv1", "layer4.0", "layer4.1"]
    assert report.layers[0].is_conv and report.layers[0].filters is not None
    block = report.layers[1]
    assert not block.is_conv and block.filters is None
    assert block.spec.read_as == NCHW and block.stats.shape == (512, 2, 2)
    assert "3 layers (1 conv)" in repr(report)
    assert report.manifest["layers"][0]["kind"] == "conv"


def test_reading_outputs_as_maps():
    square = (64, 64)
    nchw = read_feature_map(torch.zeros(1, 64, 56, 56), square)
    assert isinstance(nchw, FeatureView) and nchw.read_as == NCHW
    swin = torch.arange(56 * 56 * 96, dtype=torch.float).reshape(1, 56, 56, 96)
    nhwc = read_feature_map(swin, square)
    assert isinstance(nhwc, FeatureView) and nhwc.read_as == NHWC
    assert nhwc.batch.shape == (1, 96, 56, 56) and nhwc.batch[0, 5, 3, 4] == swin[0, 3, 4, 5]
    tokens = torch.randn(1, 197, 12)
    vit = read_feature_map(tokens, square)
    assert isinstance(vit, FeatureView) and vit.dropped_tokens == 1
    assert torch.equal(vit.batch[0, :, 0, 1], tokens[0, 2])  # token 1 of the grid
    registers = read_feature_map(torch.randn(1, 196 + 5, 8), square)
    assert isinstance(registers, FeatureView) and registers.dropped_tokens == 5
    plain = read_feature_map((torch.randn(1, 49, 8), "attention"), square)
    assert isinstance(plain, FeatureView) and plain.dropped_tokens == 0 and plain.from_tuple
    wide = read_feature_map(torch.zeros(1, 8, 10, 30), (40, 120))  # a non-square input
    assert isinstance(wide, FeatureView) and wide.read_as == NCHW
    for output, why in ((torch.zeros(1, 1000), "neither a feature map"),
                        (torch.zeros(1, 60, 8), "do not make a square grid"),
                        (torch.zeros(1, 4, 4, 4, dtype=torch.long), "not floating point"),
                        ({"logits": 1}, "is a dict, not a tensor")):
        assert why in str(read_feature_map(output, square))


def test_layers_that_cannot_be_shown_are_named(tmp_path, gradient_image):
    report = build_report(TinyNet(), None, gradient_image, tmp_path / "s", size=16,
                          layers="stem,head")
    assert [layer.name for layer in report.layers] == ["stem"]
    assert any("1 chosen layer is not shown" in note and "head: its output (1, 4)" in note
               for note in report.record.notes)
    with pytest.raises(ReportError, match="None of the layers --layers chose can be shown"):
        build_report(TinyNet(), None, gradient_image, tmp_path / "t", size=16, layers="head")
    assert not (tmp_path / "t").exists()


def test_layer_listing_and_model_list_name_the_blocks():
    runner = CliRunner()
    listing = runner.invoke(cli, ["layers", "-m", "vit_b_16"])
    assert listing.exit_code == 0, listing.output
    lines = listing.output.splitlines()
    assert lines[-1].startswith("1 conv layers")
    assert lines[-2].startswith("12 blocks, not convolutions (@blocks in --layers): "
                                "encoder.layers.encoder_layer_0 ... "
                                "encoder.layers.encoder_layer_11; outputs 1x197x768 as 768 "
                                "channels of 14x14")
    models = runner.invoke(cli, ["models"])
    assert models.exit_code == 0
    line = next(line for line in models.output.splitlines() if line.startswith("vit_b_16"))
    assert "transformer" in line and "@blocks" in line
    assert next(line for line in models.output.splitlines()
                if line.startswith("resnet18")) == "resnet18"


def test_figure_of_a_block(tmp_path):
    from reportgen.publish.figure import make_figure

    made = make_figure(tmp_path / "blocks.png", ["layer4.1:0,1", "conv1:0"], model="resnet18",
                       weights="none", image="coffee", size=64)
    assert made.panels[0].shape == (512, 2, 2)


class TokenNet(nn.Module):
    """A conv stem, then a class token and a block over 4x4 tokens, as a small ViT does."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, 8, 4, stride=4)
        self.cls = nn.Parameter(torch.randn(1, 1, 8))
        self.block = nn.Linear(8, 8)
        self.head = nn.Linear(8, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        tokens = self.stem(x).flatten(2).transpose(1, 2)  # (N, 16, 8)
        tokens = torch.cat([self.cls.expand(x.shape[0], -1, -1), tokens], dim=1)
        return self.head(self.block(tokens)[:, 0])


def test_token_blocks_with_several_images_and_the_dataset_limit(tmp_path):
    torch.manual_seed(0)
    net = TokenNet()
    report = build_report(net, None, ["coffee", "chelsea"], tmp_path / "s", size=16,
                          layers="stem,block")
    block = report.layers[1]
    assert block.name == "block" and block.stats.shape == (8, 4, 4)
    assert len(block.images) == 2 and block.images[0].stats != block.images[1].stats
    assert block.spec.dropped_tokens == 1
    with torch.inference_mode():  # the second image's maps are its own tokens, on the grid
        from reportgen.inputs.images import load_image
        from reportgen.inputs.preprocess import Preprocessing

        batch = Preprocessing.from_preset(None, 16)(load_image("chelsea").rgb)
        tokens = net.block(torch.cat([net.cls, net.stem(batch).flatten(2).transpose(1, 2)], 1))
    assert block.images[1].stats.channel_max == pytest.approx(
        tokens[0, 1:].amax(dim=0).tolist(), rel=1e-4)
    folder = tmp_path / "photos"
    folder.mkdir()
    from PIL import Image

    Image.new("RGB", (20, 20), (9, 90, 200)).save(folder / "a.png")
    with pytest.raises(ReportError, match="--dataset mines conv layers only; leave block"):
        build_report(TokenNet(), None, "coffee", tmp_path / "t", size=16, layers="stem,block",
                     dataset=folder)
