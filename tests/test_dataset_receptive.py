"""Receptive fields: known by hand for planted nets and ResNet-18's first stages, and equal to
the gradient support of an all-positive version of the real model at random positions."""
from __future__ import annotations

import copy

import pytest
import torch
import torchvision
from torch import nn

from dataset_helpers import one_torch_thread  # noqa: F401
from reportgen.dataset.receptive import Box, ReceptiveField, receptive_fields
from reportgen.errors import ReportError
from reportgen.forward.hooks import ConvHooks


class Planted(nn.Module):
    """two 3x3 convs (a 5x5 field), then a stride-2 3x3 conv, a max pool, and a residual."""

    def __init__(self) -> None:
        super().__init__()
        self.a = nn.Conv2d(3, 4, 3, padding=1)
        self.b = nn.Conv2d(4, 4, 3, padding=1)
        self.down = nn.Conv2d(4, 4, 3, stride=2, padding=1)
        self.pool = nn.MaxPool2d(2)
        self.branch = nn.Conv2d(4, 4, 5, padding=2)
        self.skip = nn.Conv2d(4, 4, 1)
        self.after = nn.Conv2d(4, 2, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.pool(self.down(torch.relu(self.b(self.a(x)))))
        out: torch.Tensor = self.after(self.skip(x) + self.branch(x))
        return out


def test_planted_fields_are_the_hand_computed_ones() -> None:
    fields = receptive_fields(Planted())
    assert fields["a"] == ReceptiveField((3, 3), (1, 1), (-1, -1))
    assert fields["b"] == ReceptiveField((5, 5), (1, 1), (-2, -2))
    assert fields["down"] == ReceptiveField((7, 7), (2, 2), (-3, -3))
    # pool 2/2 after down: 7 + 2 = 9 wide, stride 4, offset -3
    assert fields["skip"] == ReceptiveField((9, 9), (4, 4), (-3, -3))
    assert fields["branch"] == ReceptiveField((25, 25), (4, 4), (-11, -11))
    assert fields["after"] == fields["branch"]  # the residual's wider side wins


def test_a_grey_model_is_measured_on_one_channel() -> None:
    grey = Planted()
    grey.a = nn.Conv2d(1, 4, 3, padding=1)
    assert receptive_fields(grey) == receptive_fields(Planted())


def test_dilated_max_pooling_is_one_line() -> None:
    model = Planted()
    model.pool = nn.MaxPool2d(2, dilation=2)
    with pytest.raises(ReportError, match="dilated max pooling"):
        receptive_fields(model)


def test_boxes_and_cells() -> None:
    field = ReceptiveField((7, 7), (2, 2), (-3, -3))
    assert field.box(0, 0) == Box(-3, -3, 4, 4)
    assert field.box(5, 1) == Box(7, -1, 14, 6)
    assert field.box(0, 0).clipped(32, 32) == Box(0, 0, 4, 4)
    assert field.cell(5, 1) == Box(9, 1, 11, 3)  # the 2x2 centre of the 7x7 field


def test_a_module_called_twice_gets_one_field_per_call() -> None:
    class Twice(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv = nn.Conv2d(3, 3, 3, padding=1)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            out: torch.Tensor = self.conv(self.conv(x))
            return out

    fields = receptive_fields(Twice())
    assert fields["conv"].size == (3, 3) and fields["conv@2"].size == (5, 5)


KNOWN = {
    "resnet18": {"conv1": ((7, 7), (2, 2), (-3, -3)),
                 "layer1.0.conv1": ((19, 19), (4, 4), (-9, -9)),
                 "layer1.1.conv2": ((43, 43), (4, 4), (-21, -21)),
                 "layer2.0.conv1": ((51, 51), (8, 8), (-25, -25)),
                 "layer2.0.downsample.0": ((43, 43), (8, 8), (-21, -21)),
                 "layer4.1.conv2": ((435, 435), (32, 32), (-217, -217))},
    "mobilenet_v2": {"features.0.0": ((3, 3), (2, 2), (-1, -1)),
                     "features.1.conv.0.0": ((7, 7), (2, 2), (-3, -3)),
                     "features.2.conv.1.0": ((11, 11), (4, 4), (-5, -5)),
                     "features.18.0": ((491, 491), (32, 32), (-245, -245))},
}


def _all_positive(model: nn.Module) -> nn.Module:
    """The real model with |weights|, no biases, BatchNorm as a no-op, ReLU6 unclamped and
    max pooling averaged: written apart from ``positive_copy`` so the two check each other."""
    model = copy.deepcopy(model).double().eval()
    for module in model.modules():
        if isinstance(module, nn.Conv2d):
            with torch.no_grad():
                module.weight.abs_().add_(1e-3)
                if module.bias is not None:
                    module.bias.zero_()
        if isinstance(module, nn.BatchNorm2d):
            with torch.no_grad():
                module.load_state_dict({**module.state_dict(),
                                        "running_mean": torch.zeros(module.num_features),
                                        "running_var": torch.full((module.num_features,),
                                                                  1 - module.eps),
                                        "weight": torch.ones(module.num_features),
                                        "bias": torch.zeros(module.num_features)})
        for name, child in module.named_children():
            if isinstance(child, nn.ReLU6):
                setattr(module, name, nn.ReLU())
            elif isinstance(child, nn.MaxPool2d):
                setattr(module, name, nn.AvgPool2d(child.kernel_size, child.stride,
                                                   child.padding))
    return model


@pytest.mark.parametrize("name", ["resnet18", "mobilenet_v2"])
def test_real_models_match_known_fields_and_gradient_support(name: str) -> None:
    torch.manual_seed(0)
    model: nn.Module = torchvision.models.get_model(name, weights=None)
    fields = receptive_fields(model)
    for layer, (size, stride, offset) in KNOWN[name].items():
        assert fields[layer] == ReceptiveField(size, stride, offset), layer
    positive = _all_positive(model)
    generator = torch.Generator().manual_seed(1)
    layers = list(fields)[::4] + [list(fields)[-1]]
    side = 112
    outputs: dict[str, torch.Tensor] = {}
    image = torch.ones(4, 3, side, side, dtype=torch.float64, requires_grad=True)
    with torch.enable_grad(), ConvHooks(positive, lambda n, c, m, o: outputs.__setitem__(n, o),
                                        layers):
        positive(image)
    for layer in layers:
        output = outputs[layer]
        height, width = output.shape[2:]
        positions = [(int(torch.randint(height, (1,), generator=generator)),
                      int(torch.randint(width, (1,), generator=generator))) for _ in range(3)]
        positions.append((height // 2, width // 2))
        seed = torch.stack([output[i, :, y, x].sum() for i, (y, x) in enumerate(positions)]).sum()
        (gradient,) = torch.autograd.grad(seed, image, retain_graph=True)
        for i, (y, x) in enumerate(positions):
            support = (gradient[i].abs().sum(0) > 0).nonzero()
            found = Box(int(support[:, 0].min()), int(support[:, 1].min()),
                        int(support[:, 0].max()) + 1, int(support[:, 1].max()) + 1)
            assert found == fields[layer].box(y, x).clipped(side, side), (layer, y, x)
