"""Your own model from the command line: file.py:factory, package.module:factory, --model-arg.

Every spec is checked before anything is loaded or printed, and the manifest and the Reproduce
section record it exactly, so the report can be rebuilt.
"""
from __future__ import annotations

import json
import shlex
import sys
import textwrap
from pathlib import Path

import pytest
from click.testing import CliRunner

import reportgen
from conftest import site_files
from reportgen.cli import cli
from reportgen.errors import ReportError
from reportgen.inputs.modelspec import (
    FILE,
    MODULE,
    TIMM,
    TORCHVISION,
    model_kwargs,
    normalize_model_args,
    parse_model_spec,
)
from reportgen.options import BuildOptions

NET_PY = textwrap.dedent('''
    import torch
    from torch import nn


    class Net(nn.Module):
        """A small RGB net whose head size comes from --model-arg."""

        def __init__(self, num_classes: int = 4, width: int = 6, act: str = "relu"):
            super().__init__()
            self.conv1 = nn.Conv2d(3, width, 3, padding=1)
            self.conv2 = nn.Conv2d(width, width, 3, padding=1)
            self.fc = nn.Linear(width, num_classes)
            self.act = act

        def forward(self, x):
            x = torch.relu(self.conv2(torch.relu(self.conv1(x))))
            return self.fc(x.mean(dim=(2, 3)))


    def build(classes: int = 3) -> nn.Module:
        return Net(num_classes=classes)


    def not_a_model():
        return 42


    class Plain:
        pass
''')


def run(*args: str):
    result = CliRunner().invoke(cli, list(args))
    return result, getattr(result, "stderr", result.output)


@pytest.fixture
def model_file(tmp_path, monkeypatch) -> Path:
    """models/net.py in a fresh current folder."""
    monkeypatch.chdir(tmp_path)
    folder = tmp_path / "models"
    folder.mkdir()
    path = folder / "net.py"
    path.write_text(NET_PY)
    return path


def test_spec_forms_are_read_without_importing_anything():
    assert parse_model_spec("resnet18").kind == TORCHVISION
    timm = parse_model_spec("timm:resnet18.a1_in1k")
    assert (timm.kind, timm.target) == (TIMM, "resnet18.a1_in1k")
    module = parse_model_spec("mypkg.models:build")
    assert (module.kind, module.target, module.attribute) == (MODULE, "mypkg.models", "build")
    file = parse_model_spec("models/net.py:Net")
    assert (file.kind, file.target, file.attribute) == (FILE, "models/net.py", "Net")
    assert file.recorded == "models/net.py:Net"  # relative: exactly as given
    assert parse_model_spec("/home/alice/net.py:Net").recorded == "net.py:Net"
    assert parse_model_spec("../secret/net.py:Net").recorded == "net.py:Net"
    windows = parse_model_spec("C:\\work\\net.py:Net")
    assert (windows.kind, windows.attribute) == (FILE, "Net")


@pytest.mark.parametrize("text, fragment", [
    ("models/net.py", "no factory in it"),
    ("net.py", "no factory in it"),
    ("mypkg.models:", "is not the name of a class or function"),
    ("my-pkg.models:build", "is not a module path"),
    ("timm:", "names no timm model"),
])
def test_malformed_specs_say_which_form(text, fragment):
    with pytest.raises(ReportError, match=fragment):
        parse_model_spec(text)


def test_model_args_are_python_literals_recorded_canonically():
    words = normalize_model_args(["num_classes=10", "widths=(16, 32)", "act=gelu",
                                  "scale=0.5", "name='x y'", "flag=True"])
    assert words == ("num_classes=10", "widths=(16, 32)", "act='gelu'", "scale=0.5",
                     "name='x y'", "flag=True")
    assert model_kwargs(words) == {"num_classes": 10, "widths": (16, 32), "act": "gelu",
                                   "scale": 0.5, "name": "x y", "flag": True}
    assert normalize_model_args({"num_classes": 10}) == ("num_classes=10",)
    assert BuildOptions(model_args={"num_classes": 10}).model_args == ("num_classes=10",)
    for bad, fragment in (("num_classes", "not KEY=VALUE"), ("2x=1", "Python name"),
                          ("x=[1, 2", "not a Python literal")):
        with pytest.raises(ReportError, match=fragment):
            normalize_model_args([bad])
    with pytest.raises(ReportError, match="given twice"):
        normalize_model_args(["a=1", "a=2"])
    with pytest.raises(ReportError, match="only Python literals"):
        normalize_model_args({"act": object()})


def test_model_file_with_model_args_from_the_cli(model_file, tmp_path):
    result, stderr = run("build", "-m", "models/net.py:Net", "--model-arg", "num_classes=10",
                         "--model-arg", "width=5", "-w", "none", "-i", "coffee", "-d", "out",
                         "--size", "32")
    assert result.exit_code == 0, result.output
    assert "Loading models/net.py:Net ..." in stderr
    manifest = json.loads((tmp_path / "out" / "manifest.json").read_text())
    assert manifest["model"]["name"] == "models/net.py:Net"
    assert manifest["model"]["kind"] == "file" and manifest["model"]["class"] == "Net"
    assert len(manifest["model"]["file_sha256"]) == 64
    assert manifest["options"]["model_args"] == ["num_classes=10", "width=5"]
    assert [layer["name"] for layer in manifest["layers"]] == ["conv1", "conv2"]
    assert manifest["layers"][0]["output_shape"] == [1, 5, 32, 32]
    assert all(p["label"].startswith("class ") for p in manifest["predictions"])
    assert {p["index"] for p in manifest["predictions"]} <= set(range(10))
    assert manifest["command"] == (
        "reportgen build --model models/net.py:Net --weights none --image coffee "
        "--site-dir out --size 32 --model-arg num_classes=10 --model-arg width=5")
    page = (tmp_path / "out" / "index.html").read_text()
    assert "Model code" in page and manifest["model"]["file_sha256"] in page


def test_the_recorded_commands_rebuild_a_factory_report(model_file, tmp_path):
    reportgen.build_report("models/net.py:Net", "none", "coffee", tmp_path / "first",
                           size=24, seed=3, model_args={"num_classes": 7}, cmap="magma")
    first = json.loads((tmp_path / "first" / "manifest.json").read_text())
    index = (tmp_path / "first" / "index.html").read_text()
    equivalent = next(line for line in index.splitlines()
                      if line.startswith("<pre><code>reportgen build"))
    command = equivalent.removeprefix("<pre><code>").removesuffix("</code></pre>")
    words = shlex.split(command.replace("&#39;", "'"))
    assert "--model-arg" in words and "num_classes=7" in words and "--seed" in words
    result, _ = run(*words[1:], "-d", "second")
    assert result.exit_code == 0, result.output
    second = json.loads((tmp_path / "second" / "manifest.json").read_text())
    for key in ("options", "weights", "model", "preprocessing", "predictions", "layers"):
        assert first[key] == second[key], key
    pictures = {k: v for k, v in site_files(tmp_path / "first").items() if k.startswith("img/")}
    assert pictures == {k: v for k, v in site_files(tmp_path / "second").items()
                        if k.startswith("img/")}


def test_a_module_factory_from_the_current_folder(model_file, tmp_path, monkeypatch):
    for name in ("mypkg", "mypkg.mod"):
        monkeypatch.delitem(sys.modules, name, raising=False)
    package = tmp_path / "mypkg"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "mod.py").write_text(NET_PY)
    before = list(sys.path)
    report = reportgen.build_report("mypkg.mod:build", "none", "coffee", tmp_path / "s",
                                    size=16, model_args=["classes=2"])
    assert report.record.model.name == "mypkg.mod:build"
    assert report.record.model.kind == "module"
    assert {p.index for p in report.predictions} == {0, 1}
    assert sys.path == before  # the current folder was importable only while building
    for name in ("mypkg", "mypkg.mod"):
        sys.modules.pop(name, None)


def test_bad_specs_fail_before_loading_or_printing(model_file, tmp_path):
    cases = [
        (["-m", "absentpkg.mod:build"], "Cannot import 'absentpkg.mod'"),
        (["-m", "models/gone.py:Net"], "Model file 'gone.py' does not exist"),
        (["-m", "models/net.py:Nte"], "'net.py' has no 'Nte'; it defines Net, build"),
        (["-m", "models/net.py:Plain"], "not an nn.Module"),
        (["-m", "models/net.py:Net", "--model-arg", "classes=3"],
         "cannot be called with classes=3"),
        (["-m", "models/net.py:Net", "-w", "IMAGENET1K_V1"], "takes DEFAULT"),
        (["-m", "models/net.py:not_a_model"], "returned a int, not an nn.Module"),
    ]
    for args, fragment in cases:
        result, stderr = run("build", *args, "-d", str(tmp_path / "s"), "--size", "16")
        assert result.exit_code == 2, (args, result.output)
        assert fragment in stderr, (args, stderr)
        assert "Traceback" not in result.output
        if "gone" in args[1] or "Nte" in args[1] or "absentpkg" in args[1]:
            assert "Loading" not in stderr  # validated before anything is printed
    assert not (tmp_path / "s").exists()


def test_default_weights_of_a_factory_are_seeded(model_file, tmp_path):
    first = reportgen.build_report("models/net.py:Net", "DEFAULT", "coffee", tmp_path / "a",
                                   size=16, seed=1)
    again = reportgen.build_report("models/net.py:Net", "DEFAULT", "coffee", tmp_path / "b",
                                   size=16, seed=1)
    assert first.record.weights["name"] == "DEFAULT" and first.record.weights["seed"] == 1
    assert first.manifest["layers"] == again.manifest["layers"]


def test_torchvision_builders_take_model_args_too(tmp_path):
    report = reportgen.build_report("resnet18", "none", "coffee", tmp_path / "s", size=32,
                                    layers="conv1", model_args={"num_classes": 3})
    assert len(report.predictions) == 3
    with pytest.raises(ReportError, match="cannot be built with num_clases=3"):
        reportgen.build_report("resnet18", "none", "coffee", tmp_path / "t", size=32,
                               model_args={"num_clases": 3})


def test_an_edited_model_file_is_imported_anew(model_file, tmp_path):
    first = reportgen.build_report("models/net.py:Net", "none", "coffee", tmp_path / "a",
                                   size=16)
    model_file.write_text(NET_PY.replace("width: int = 6", "width: int = 9"))
    second = reportgen.build_report("models/net.py:Net", "none", "coffee", tmp_path / "b",
                                    size=16)
    assert first.layers[0].stats.shape[0] == 6 and second.layers[0].stats.shape[0] == 9
    assert first.record.model.source_sha256 != second.record.model.source_sha256


def test_options_that_would_be_ignored_are_refused(tmp_path):
    from conftest import TinyNet

    with pytest.raises(ReportError, match="model_args build a model named by a spec"):
        reportgen.build_report(TinyNet(), None, "coffee", tmp_path / "s",
                               model_args={"classes": 3})
    with pytest.raises(ReportError, match="--weights-key model_ema picks the weights inside a "
                                          "checkpoint file, but --weights is DEFAULT"):
        reportgen.build_report("resnet18", "DEFAULT", "coffee", tmp_path / "s",
                               weights_key="model_ema")
