"""Grad-CAM and per-channel contributions: equal to pytorch-grad-cam's, exact on a planted
linear head, and all layers from one forward and one backward pass."""
from __future__ import annotations

import copy
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn

from conftest import TinyNet, hooks_left, needs_offline_weights
from reportgen.errors import ReportError
from reportgen.explain.attribution import (
    attribute,
    cam_to_uint16,
    contributions,
    gather,
    grad_cam,
    resize_cam,
    save_cam_png,
)

ESPRESSO = 967


@pytest.fixture(scope="module")
def mobilenet():
    from reportgen.inputs.models import load_model

    return load_model("mobilenet_v2", "IMAGENET1K_V1")


@pytest.fixture(scope="module")
def coffee(mobilenet) -> torch.Tensor:
    from reportgen.inputs.images import load_image
    from reportgen.inputs.preprocess import Preprocessing

    return Preprocessing.from_preset(mobilenet.preprocessing)(load_image("coffee").rgb)


@needs_offline_weights
def test_grad_cam_matches_pytorch_grad_cam(mobilenet, coffee) -> None:
    pytest.importorskip("pytorch_grad_cam")
    cv2 = pytest.importorskip("cv2")
    from pytorch_grad_cam import GradCAM
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    layers = ["features.0.0", "features.10.conv.1.0", "features.18.0"]
    ours = attribute(mobilenet.module, coffee, layers=layers, categories=mobilenet.categories)
    assert (ours.class_index, ours.class_label) == (ESPRESSO, "espresso")  # top-1 by default
    modules = dict(mobilenet.module.named_modules())
    for layer in layers:
        with GradCAM(model=mobilenet.module, target_layers=[modules[layer]]) as reference:
            theirs = reference(input_tensor=coffee, targets=[ClassifierOutputTarget(ESPRESSO)])[0]
        cam = ours.layer(layer).cam
        # pytorch-grad-cam's scale_cam_image: min-max scale, then cv2 bilinear to input size
        scaled = (cam - cam.min()) / (1e-7 + (cam - cam.min()).max())
        resized = cv2.resize(np.float32(scaled), (224, 224))
        assert np.corrcoef(resized.ravel(), theirs.ravel())[0, 1] >= 0.99, layer
        ours_resized = resize_cam(scaled, (224, 224))  # our own resize agrees with cv2's
        assert np.abs(ours_resized - resized).max() < 1e-5


class PlantedHead(nn.Module):
    """conv -> ReLU(inplace) -> conv -> global average pool -> linear: after ``last`` the
    score is linear, so ``last``'s contributions must add up to the logit minus the bias."""

    def __init__(self, functional_inplace: bool = False) -> None:
        super().__init__()
        self.first = nn.Conv2d(3, 6, 3, padding=1)
        self.relu = nn.ReLU(inplace=True)
        self.last = nn.Conv2d(6, 5, 3, padding=1)
        self.fc = nn.Linear(5, 4)
        self.functional_inplace = functional_inplace

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.first(x)
        x = F.relu(x, inplace=True) if self.functional_inplace else self.relu(x)
        return self.fc(self.last(x).mean(dim=(2, 3)))


def _by_hand(model: PlantedHead, x: torch.Tensor, target: int) -> dict[str, tuple]:
    """Contributions and CAMs from plain autograd on out-of-place code."""
    first = model.first(x)
    last = model.last(torch.relu(first))
    score = model.fc(last.mean(dim=(2, 3)))[0, target]
    grads = torch.autograd.grad(score, [first, last])
    result = {}
    for name, act, grad in (("first", first, grads[0]), ("last", last, grads[1])):
        act, grad = act.detach()[0], grad[0]
        cam = torch.relu((grad.mean(dim=(1, 2))[:, None, None] * act).sum(0))
        result[name] = ((act * grad).sum(dim=(1, 2)), cam)
    return result


@pytest.mark.parametrize("functional_inplace", [False, True])
def test_contributions_add_up_to_the_logit_minus_bias(functional_inplace: bool) -> None:
    torch.manual_seed(0)
    model = PlantedHead(functional_inplace).eval()
    x = torch.randn(1, 3, 10, 12)
    forwards = []
    handle = model.register_forward_pre_hook(lambda *args: forwards.append(1))
    result = attribute(model, x, target=2)
    handle.remove()
    # An nn.ReLU(inplace=True) gets a copy of the conv output; a functional in-place op
    # cannot be seen coming, is noticed afterwards, and costs a second pass that clones.
    assert len(forwards) == (2 if functional_inplace else 1)
    with torch.no_grad():
        logit = float(model(x.clone())[0, 2])
    assert result.score == pytest.approx(logit, abs=1e-5)
    last = result.layer("last")
    bias = float(model.fc.bias[2].detach())
    assert sum(last.contributions) == pytest.approx(logit - bias, abs=1e-5)
    assert last.channel_weights == pytest.approx(
        (model.fc.weight[2] / (10 * 12)).tolist(), abs=1e-7)
    # the kept activation of "first" is the conv's output, not what the in-place ReLU made it
    expected = _by_hand(model, x, 2)
    for name in ("first", "last"):
        contributions, cam = expected[name]
        assert np.allclose(result.layer(name).contributions, contributions.numpy(), atol=1e-6)
        assert np.allclose(result.layer(name).cam, cam.numpy(), atol=1e-6)
        assert result.layer(name).map_size == (10, 12)


@needs_offline_weights
def test_all_layers_from_one_forward_and_one_backward(mobilenet, coffee) -> None:
    model = mobilenet.module
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    counts = {"model": 0, "backward": 0, "convs": 0}

    def forward_done(module: nn.Module, inputs: tuple, output: torch.Tensor) -> None:
        counts["model"] += 1
        output.register_hook(lambda grad: counts.__setitem__("backward", counts["backward"] + 1))

    def conv_ran(*args: object) -> None:
        counts["convs"] += 1

    handles = [model.register_forward_hook(forward_done)]
    handles += [conv.register_forward_hook(conv_ran) for conv in convs]
    try:
        result = attribute(model, coffee)
    finally:
        for handle in handles:
            handle.remove()
    assert len(result.layers) == len(convs) == 52
    assert counts == {"model": 1, "backward": 1, "convs": 52}


def test_class_by_label_index_or_top1_and_bad_requests() -> None:
    torch.manual_seed(0)
    model = TinyNet(classes=4).eval()
    x = torch.randn(1, 3, 16, 16)
    labels = ["ant", "bee", "cat", "dog"]
    top = int(model(x).argmax())
    assert attribute(model, x, categories=labels).class_index == top
    assert attribute(model, x, target="cat", categories=labels).class_index == 2
    assert attribute(model, x, target=1, categories=labels).class_label == "bee"
    assert attribute(model, x, target="3").class_label == "class 3"
    with pytest.raises(ReportError, match="Unknown class 'cow'"):
        attribute(model, x, target="cow", categories=labels)
    with pytest.raises(ReportError, match="out of range; the model has 4 classes"):
        attribute(model, x, target=4)
    with pytest.raises(ReportError, match="one image"):
        attribute(model, torch.randn(2, 3, 16, 16))
    with pytest.raises(ReportError, match="not a conv layer"):
        attribute(model, x, layers=["head"])
    assert attribute(model, x, layers=[]).layers == []  # the class alone, no backward needed


def test_one_gathering_step_and_each_method_is_arithmetic_on_it() -> None:
    """gather's A and dS/dA agree with plain hooks and autograd, and Grad-CAM and the
    contributions are computed from them alone (numpy here, torch there)."""
    torch.manual_seed(0)
    model = TinyNet(classes=4).eval()
    x = torch.randn(1, 3, 16, 16)
    found = gather(model, x, layers=["body.3", "shared"], target=1)
    plain = copy.deepcopy(model)  # the reference: no in-place ReLU overwrites an output
    for module in plain.modules():
        if getattr(module, "inplace", False):
            module.inplace = False
    outputs: dict[str, list[torch.Tensor]] = {"body.3": [], "shared": []}
    for name in outputs:
        plain.get_submodule(name).register_forward_hook(
            lambda module, inputs, output, name=name: outputs[name].append(output))
    score = plain(x)[0, 1]
    reference = torch.autograd.grad(score, [outputs["body.3"][0], *outputs["shared"]])
    for entry, output in (zip(found.layers, [outputs["body.3"][0], *outputs["shared"]],
                              strict=True)):
        assert torch.allclose(entry.activation, output[0].detach(), atol=1e-6)
    for entry, grad in zip(found.layers, reference, strict=True):
        assert torch.allclose(entry.gradient, grad[0], atol=1e-6)
    assert [entry.layer for entry in found.layers] == ["body.3", "shared", "shared@2"]
    assert (found.class_index, found.class_label) == (1, "class 1")
    assert found.score == pytest.approx(float(score.detach()))
    whole = attribute(model, x, layers=["body.3", "shared"], target=1)
    for entry, result in zip(found.layers, whole.layers, strict=True):
        a, g = entry.activation.numpy(), entry.gradient.numpy()
        weights = g.mean(axis=(1, 2))
        cam, torch_weights = grad_cam(entry.activation, entry.gradient)
        assert np.allclose(cam.numpy(), np.maximum(np.einsum("c,chw->hw", weights, a), 0),
                           atol=1e-6)
        assert np.allclose(torch_weights.numpy(), weights, atol=1e-7)
        assert np.allclose(contributions(entry.activation, entry.gradient).numpy(),
                           (a * g).sum(axis=(1, 2)), atol=1e-6)
        assert np.array_equal(result.cam, cam.numpy())


def test_model_left_as_found_even_frozen_and_in_train_mode() -> None:
    torch.manual_seed(0)
    model = TinyNet()
    model.requires_grad_(False)  # frozen: the outputs still get gradients
    model.train()
    before = {name: t.clone() for name, t in model.state_dict().items()}
    result = attribute(model, torch.randn(1, 3, 16, 16))
    assert [entry.layer for entry in result.layers] == [
        "stem", "body.1", "body.3", "body.5", "shared", "shared@2"]
    assert any(max(entry.contributions) != 0 for entry in result.layers)
    assert hooks_left(model) == [] and model.training
    assert all(not p.requires_grad and p.grad is None for p in model.parameters())
    assert all(torch.equal(before[name], t) for name, t in model.state_dict().items())


def test_cam_png_is_16_bit_grey(tmp_path: Path) -> None:
    cam = np.linspace(0, 1, 35, dtype=np.float32).reshape(5, 7)
    save_cam_png(cam, tmp_path / "cam.png")
    with Image.open(tmp_path / "cam.png") as opened:
        assert opened.mode in ("I;16", "I")
        pixels = np.asarray(opened)
    assert pixels.shape == (5, 7) and pixels.max() == 65535 and pixels.min() == 0
    assert np.array_equal(pixels.astype(np.uint16), cam_to_uint16(cam))
