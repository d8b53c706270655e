"""Every checkpoint people actually have, still read with weights_only=True (or safetensors).

torchvision reference scripts (with argparse.Namespace), Lightning (keys under ``model.``,
paths in ``hyper_parameters``), numpy scalars and arrays beside the weights, EMA weights
(model_ema, state_dict_ema, --weights-key), safetensors; anything else holding a Python class
is still refused unless --trust-checkpoint, and a checkpoint without weights lists what it
holds.
"""
from __future__ import annotations

import argparse
import json
import os
from collections import OrderedDict
from pathlib import Path, PosixPath, PurePosixPath, PureWindowsPath

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from conftest import TinyNet
from reportgen import ReportError, build_report
from reportgen.cli import cli
from reportgen.inputs import weightfiles
from reportgen.inputs.checkpoints import fit_keys
from reportgen.inputs.models import load_model

EXPLOIT_MARKER = Path("/tmp") / f"reportgen-byo-exploit-{os.getpid()}"


def trained() -> TinyNet:
    torch.manual_seed(11)
    return TinyNet()


def same_weights(module: torch.nn.Module, source: torch.nn.Module) -> bool:
    theirs = source.state_dict()
    return all(torch.equal(tensor, theirs[name]) for name, tensor in module.state_dict().items())


def reference_checkpoint(net: torch.nn.Module, ema: torch.nn.Module | None = None) -> dict:
    """What torchvision's references/classification/train.py saves."""
    args = argparse.Namespace(model="tinynet", lr=0.5, epochs=90, weights=None,
                              lr_steps=[30, 60], device="cuda", amp=False)
    optimizer = torch.optim.SGD(net.parameters(), lr=0.5, momentum=0.9)
    checkpoint = {"model": net.state_dict(), "optimizer": optimizer.state_dict(),
                  "lr_scheduler": torch.optim.lr_scheduler.StepLR(optimizer, 30).state_dict(),
                  "epoch": 89, "args": args}
    if ema is not None:  # ExponentialMovingAverage(AveragedModel): module. prefix, n_averaged
        checkpoint["model_ema"] = OrderedDict(
            [(f"module.{k}", v) for k, v in ema.state_dict().items()]
            + [("n_averaged", torch.tensor(1234))])
    return checkpoint


def test_torchvision_reference_checkpoint_with_argparse_namespace(tmp_path):
    net = trained()
    path = tmp_path / "checkpoint.pth"
    torch.save(reference_checkpoint(net), path)
    loaded = load_model(TinyNet(), path)
    assert same_weights(loaded.module, net)
    assert loaded.weights["key"] == "model"


def test_reference_checkpoint_of_a_torchvision_model_from_the_cli(tmp_path):
    from torchvision.models import resnet18

    torch.manual_seed(2)
    net = resnet18(num_classes=5)
    torch.save(reference_checkpoint(net), tmp_path / "model_89.pth")
    result = CliRunner().invoke(cli, ["build", "-m", "resnet18", "-w",
                                      str(tmp_path / "model_89.pth"), "-i", "coffee",
                                      "-d", str(tmp_path / "s"), "--layers", "conv1",
                                      "--size", "32"])
    assert result.exit_code == 0, result.output
    assert "Report of 1 conv layer" in result.output


def test_lightning_checkpoint_with_a_model_prefix(tmp_path):
    net = trained()
    state = {f"model.{k}": v for k, v in net.state_dict().items()}
    state["criterion.weight"] = torch.ones(4)  # a LightningModule's own extra buffer
    path = tmp_path / "epoch=3-step=100.ckpt"
    torch.save({"epoch": 3, "global_step": 100, "pytorch-lightning_version": "2.5.0",
                "state_dict": state, "optimizer_states": [{}], "lr_schedulers": [],
                "hyper_parameters": {"lr": 0.001, "backbone": "tiny"}}, path)
    loaded = load_model(TinyNet(), path)
    assert same_weights(loaded.module, net)
    assert loaded.weights["prefix_stripped"] == "model."
    assert any("prefix 'model.'" in note and "1 key outside it" in note
               for note in loaded.notes)


def test_prefixes_are_found_not_guessed():
    net = trained()
    keys = net.state_dict().keys()
    for prefix in ("module.", "_orig_mod.", "_orig_mod.model.", "net.backbone."):
        state = {prefix + k: v for k, v in net.state_dict().items()}
        assert fit_keys(state, keys).prefix == prefix
    exact = fit_keys(net.state_dict(), keys)
    assert exact.prefix is None and exact.state.keys() == keys


def test_ema_weights_are_found_and_chosen_with_weights_key(tmp_path):
    net, ema = trained(), TinyNet()  # different values: we can tell which was loaded
    both = tmp_path / "both.pth"
    torch.save(reference_checkpoint(net, ema), both)
    regular = load_model(TinyNet(), both)
    assert same_weights(regular.module, net)
    assert any("EMA weights under 'model_ema'" in note for note in regular.notes)
    averaged = load_model(TinyNet(), both, weights_key="model_ema")
    assert same_weights(averaged.module, ema)
    assert averaged.weights["key"] == "model_ema"

    only_ema = tmp_path / "ema_only.pth"
    torch.save({"model_ema": ema.state_dict()}, only_ema)
    assert same_weights(load_model(TinyNet(), only_ema).module, ema)
    timm_style = tmp_path / "timm_train.pth.tar"
    torch.save({"epoch": 1, "arch": "tiny", "state_dict": net.state_dict(),
                "state_dict_ema": ema.state_dict()}, timm_style)
    report = build_report(TinyNet(), timm_style, "coffee", tmp_path / "s", size=16,
                          weights_key="state_dict_ema")
    assert report.record.weights["key"] == "state_dict_ema"
    assert report.record.options.weights_key == "state_dict_ema"


def test_weights_key_from_the_cli_is_recorded(tmp_path, monkeypatch):
    net, ema = trained(), TinyNet()
    torch.save(reference_checkpoint(net, ema), tmp_path / "ckpt.pth")
    (tmp_path / "tiny.py").write_text("from conftest import TinyNet\n")
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(cli, ["build", "-m", "tiny.py:TinyNet", "-w", "ckpt.pth",
                                      "--weights-key", "model_ema", "-i", "coffee",
                                      "-d", "s", "--size", "16"])
    assert result.exit_code == 0, result.output
    manifest = json.loads((tmp_path / "s" / "manifest.json").read_text())
    assert manifest["weights"]["key"] == "model_ema"
    assert manifest["options"]["weights_key"] == "model_ema"
    assert "--weights-key model_ema" in manifest["command"]
    with pytest.raises(ReportError, match="--weights-key 'ema' is not in checkpoint "
                                          "'ckpt.pth': its top-level keys are 'model'"):
        load_model(TinyNet(), tmp_path / "ckpt.pth", weights_key="ema")
    with pytest.raises(ReportError, match="'epoch' in checkpoint 'ckpt.pth' is not a "
                                          "state_dict \\(it holds int\\)"):
        load_model(TinyNet(), tmp_path / "ckpt.pth", weights_key="epoch")


def test_no_state_dict_lists_the_top_level_keys(tmp_path):
    path = tmp_path / "odd.pth"
    torch.save({"weights_v2": [torch.ones(2)], "epoch": 3, "note": "hello"}, path)
    with pytest.raises(ReportError) as caught:
        load_model(TinyNet(), path)
    message = caught.value.message
    assert "holds no state_dict: its top-level keys are 'weights_v2' (a list of 1), " \
           "'epoch' (int), 'note' (str)" in message
    assert "--weights-key KEY" in message


def test_safetensors_checkpoint(tmp_path):
    from safetensors.torch import save_file

    net = trained()
    path = tmp_path / "model.safetensors"
    save_file({f"model.{k}": v.contiguous() for k, v in net.state_dict().items()}, str(path))
    report = build_report(TinyNet(), path, "coffee", tmp_path / "s", size=16)
    assert report.record.weights["file"] == "model.safetensors"
    assert len(report.record.weights["sha256"]) == 64
    renamed = tmp_path / "weights.bin"  # the format is recognised by its header too
    renamed.write_bytes(path.read_bytes())
    assert same_weights(load_model(TinyNet(), renamed).module, net)
    broken = tmp_path / "broken.safetensors"
    broken.write_bytes(path.read_bytes()[:100])
    with pytest.raises(ReportError, match="'broken.safetensors' is not a valid safetensors"):
        load_model(TinyNet(), broken)


class NotAllowed:
    def __init__(self) -> None:
        self.lr = 0.1


class Exploit:
    def __reduce__(self):
        return (os.system, (f"touch {EXPLOIT_MARKER}",))


def test_any_other_class_is_still_refused(tmp_path):
    net = trained()
    for extra, name in ((NotAllowed(), "NotAllowed"), (Exploit(), "system")):
        path = tmp_path / f"{name}.pth"
        checkpoint = reference_checkpoint(net)
        checkpoint["extra"] = extra
        torch.save(checkpoint, path)
        EXPLOIT_MARKER.unlink(missing_ok=True)
        with pytest.raises(ReportError, match=f"contains Python objects \\(.*{name}\\)"):
            load_model(TinyNet(), path)
        assert not EXPLOIT_MARKER.exists()
    namespace_abuse = tmp_path / "abuse.pth"  # a Namespace cannot smuggle a class inside
    torch.save({"model": net.state_dict(), "args": argparse.Namespace(hook=NotAllowed())},
               namespace_abuse)
    with pytest.raises(ReportError, match="NotAllowed"):
        load_model(TinyNet(), namespace_abuse)
    assert (argparse.Namespace,) == weightfiles.SAFE_GLOBALS


def test_what_training_scripts_save_beside_the_weights(tmp_path):
    net = trained()
    before = torch.serialization.get_safe_globals()
    checkpoint = {"state_dict": {f"model.{k}": v for k, v in net.state_dict().items()},
                  "best_acc": np.float64(0.93), "epoch": np.int64(41), "stop": np.bool_(False),
                  "confusion": np.eye(4, dtype=np.int32), "dtype": np.dtype("float16"),
                  "hyper_parameters": {"data_dir": PosixPath("/data/mnist"),
                                       "runs": PurePosixPath("runs"),
                                       "win": PureWindowsPath(r"C:\runs")},
                  "args": argparse.Namespace(lr=0.1)}
    path = tmp_path / "epoch=41.ckpt"
    torch.save(checkpoint, path)
    assert same_weights(load_model(TinyNet(), path).module, net)
    # Saved by numpy 1 (numpy.core) and on Windows (a WindowsPath): a legacy-format pickle
    # whose names are spelled so.
    legacy = tmp_path / "legacy.pth"
    torch.save({"model": net.state_dict(), "acc": np.float32(0.5), "mean": np.zeros(3),
                "root": PureWindowsPath(r"D:\data")}, legacy,
               _use_new_zipfile_serialization=False)
    data = legacy.read_bytes()
    assert b"numpy._core.multiarray" in data and b"pathlib\nPureWindowsPath" in data
    legacy.write_bytes(data.replace(b"numpy._core.multiarray", b"numpy.core.multiarray")
                       .replace(b"pathlib\nPureWindowsPath", b"pathlib\nWindowsPath"))
    assert same_weights(load_model(TinyNet(), legacy).module, net)
    assert torch.serialization.get_safe_globals() == before  # nothing added for the caller


def test_trust_checkpoint_unpickles_fully_after_a_warning(tmp_path, monkeypatch):
    net = trained()
    checkpoint = reference_checkpoint(net)
    checkpoint["config"] = NotAllowed()  # a class of the user's own code, importable
    torch.save(checkpoint, tmp_path / "own.pth")
    (tmp_path / "tiny.py").write_text("from conftest import TinyNet\n")
    monkeypatch.chdir(tmp_path)
    refused = CliRunner().invoke(cli, ["build", "-m", "tiny.py:TinyNet", "-w", "own.pth",
                                       "-i", "coffee", "-d", "s", "--size", "16"])
    assert refused.exit_code == 2
    assert "(test_byo_checkpoints.NotAllowed)" in refused.output
    assert "--trust-checkpoint" in refused.output
    result = CliRunner().invoke(cli, ["build", "-m", "tiny.py:TinyNet", "-w", "own.pth",
                                      "--trust-checkpoint", "-i", "coffee", "-d", "s",
                                      "--size", "16"])
    assert result.exit_code == 0, result.output
    warning = result.output.index("can run any code the file holds")
    assert warning < result.output.index("Report of")
    manifest = json.loads((tmp_path / "s" / "manifest.json").read_text())
    assert manifest["options"]["trust_checkpoint"] is True
    assert "--trust-checkpoint" in manifest["command"]
    assert same_weights(load_model(TinyNet(), "own.pth", trust_checkpoint=True).module, net)
    with pytest.raises(ReportError, match="--trust-checkpoint unpickles a checkpoint file, "
                                          "but --weights is none"):
        load_model(TinyNet(), "none", trust_checkpoint=True)


def test_checkpoint_notes_name_the_keys_left_out_and_reach_the_terminal(tmp_path, monkeypatch):
    net, ema = trained(), TinyNet()
    state = {f"model.{k}": v for k, v in net.state_dict().items()}
    state["criterion.weight"] = torch.ones(4)
    state["criterion.bias"] = torch.zeros(4)
    torch.save({"state_dict": state, "state_dict_ema": ema.state_dict()}, tmp_path / "c.ckpt")
    (tmp_path / "tiny.py").write_text("from conftest import TinyNet\n")
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(cli, ["build", "-m", "tiny.py:TinyNet", "-w", "c.ckpt",
                                      "-i", "coffee", "-d", "s", "--size", "16"])
    assert result.exit_code == 0, result.output
    assert ("Checkpoint keys had the prefix 'model.', which was stripped; 2 keys outside it "
            "left out (criterion.bias, criterion.weight).") in result.output
    assert "The checkpoint also holds EMA weights under 'state_dict_ema'" in result.output
