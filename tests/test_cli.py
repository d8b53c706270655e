"""The command line: exit codes, messages, progress on stderr, the last line."""
from __future__ import annotations

import json
import subprocess
import sys

import pytest
from click.testing import CliRunner

from reportgen import __version__
from reportgen.cli import cli


def run(*args: str, cwd=None):
    return CliRunner().invoke(cli, list(args), catch_exceptions=False)


def test_version():
    result = run("--version")
    assert result.exit_code == 0
    assert result.output.startswith(f"reportgen {__version__} (Python ")


def test_help_lists_commands():
    result = run("-h")
    assert result.exit_code == 0
    for command in ("build", "layers", "models"):
        assert command in result.output


def test_layers_prints_every_conv_with_shapes():
    result = run("layers", "--model", "vgg16")
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[0].split()[:2] == ["layer", "in"]
    assert lines[1].split()[:4] == ["features.0", "3", "->", "64"]
    assert "1x64x224x224" in lines[1]
    assert "1x512x14x14" in lines[13]
    assert lines[-1].startswith("13 conv layers")


def test_layers_of_resnet_include_downsample_convs():
    result = run("layers", "-m", "resnet18")
    assert "layer3.0.downsample.0" in result.output
    assert result.output.splitlines()[-1].startswith("20 conv layers")


def test_unknown_model_is_a_usage_error():
    result = run("layers", "--model", "vgg61")
    assert result.exit_code == 2
    assert "Unknown model 'vgg61'. Did you mean vgg19, vgg16, vgg13?" in result.output
    assert "Traceback" not in result.output


def test_build_writes_report_and_says_where(tmp_path):
    site = tmp_path / "out"
    result = run("build", "-m", "resnet18", "-w", "none", "-i", "camera", "-d", str(site),
                 "--layers", "conv1,layer1.*", "--size", "64")
    assert result.exit_code == 0, result.output
    last = result.output.strip().splitlines()[-1]
    assert last.startswith("Report of 5 conv layers written to ")
    assert str(site / "index.html") in last and last.endswith(" s")
    manifest = json.loads((site / "manifest.json").read_text())
    assert manifest["model"]["name"] == "resnet18"
    assert manifest["weights"]["name"] == "none"
    assert manifest["preprocessing"]["crop"] == 64


def test_bad_options_exit_2(tmp_path):
    result = run("build", "-m", "resnet18", "-w", "none", "--cmap", "viridiss",
                 "-d", str(tmp_path / "s"))
    assert result.exit_code == 2
    assert "Unknown colormap 'viridiss'; did you mean viridis" in result.output
    result = run("build", "--normalize", "global")
    assert result.exit_code == 2


def test_real_process_gives_one_line_and_exit_2(tmp_path):
    process = subprocess.run(
        [sys.executable, "-m", "reportgen", "build", "-m", "resnet18", "-w", "none",
         "-i", str(tmp_path / "missing.png"), "-d", str(tmp_path / "s")],
        capture_output=True, text=True, cwd=tmp_path)
    assert process.returncode == 2
    assert process.stderr.strip() == (
        "Error: Image 'missing.png' does not exist. Pass an image file or an skimage sample "
        "name such as astronaut, coffee, chelsea or camera.")
    assert process.stdout == ""


def test_manifest_command_rebuilds_without_leaking_paths(tmp_path):
    image = tmp_path / "deep" / "photo.png"
    image.parent.mkdir()
    from PIL import Image

    Image.new("RGB", (40, 30), (200, 10, 10)).save(image)
    site = tmp_path / "out"
    result = run("build", "-m", "resnet18", "-w", "none", "-i", str(image), "-d", str(site),
                 "--layers", "conv1", "--size", "32", "--rectify")
    assert result.exit_code == 0, result.output
    manifest = json.loads((site / "manifest.json").read_text())
    assert manifest["command"] == (
        "reportgen build --model resnet18 --weights none --image photo.png --site-dir out "
        "--layers conv1 --rectify --size 32")
    for path in site.rglob("*"):
        if path.is_file():
            assert str(tmp_path).encode() not in path.read_bytes(), path


def test_layers_of_a_model_that_cannot_be_built_on_meta():
    """RegNet computes widths with tensors while building; it still lists, via skip_init."""
    result = run("layers", "-m", "regnet_x_400mf")
    assert result.exit_code == 0, result.output
    assert result.output.splitlines()[1].startswith("stem.0")


def test_every_build_option_is_a_build_flag_with_its_default():
    """The click options are made from BuildOptions: none is missing, none has its own
    default, and the help shows each one."""
    import dataclasses

    from reportgen.options import BuildOptions

    params = {param.name: param for param in cli.commands["build"].params}
    shown = run("build", "--help").output
    for item in dataclasses.fields(BuildOptions):
        flag = item.metadata.get("flag")
        if flag is None:
            continue
        param = params[item.name]
        assert flag in param.opts + param.secondary_opts, item.name
        assert flag in shown, flag
        if not param.multiple:
            assert param.default == item.default, item.name


def test_normalize_help_names_the_robust_default():
    shown = " ".join(run("build", "--help").output.split())
    assert "Min-max range per channel" not in shown
    assert "'channel' a robust range per channel (1st-99th percentile" in shown


@pytest.mark.parametrize(("args", "flags", "needed"), [
    (["--top-k", "4"], "--top-k", "--dataset"),
    (["--limit", "5"], "--limit", "--dataset"),
    (["--batch-size", "8"], "--batch-size", "--dataset"),
    (["--workers", "0"], "--workers", "--dataset"),
    (["--no-resume"], "--no-resume", "--dataset"),
    (["--decode", "cpu"], "--decode", "--dataset"),
    (["--top-k", "4", "--limit", "5"], "--top-k and --limit", "--dataset"),
    (["--feature-vis-steps", "8"], "--feature-vis-steps", "--feature-vis"),
    (["--feature-vis-size", "32"], "--feature-vis-size", "--feature-vis"),
])
def test_options_that_would_be_ignored_are_refused_before_loading(tmp_path, args, flags,
                                                                   needed):
    site = tmp_path / "site"
    result = run("build", "-m", "resnet18", "-w", "none", "-d", str(site), *args)
    assert result.exit_code == 2, result.output
    lines = result.output.strip().splitlines()
    assert lines == [f"Error: {flags} only mean{'' if ' and ' in flags else 's'} something "
                     f"with {needed}, which was not given; add {needed} or leave "
                     f"{'them' if ' and ' in flags else 'it'} out."]
    assert not site.exists()


def test_defaults_of_options_that_need_another_pass_everywhere():
    """Only a value other than the default is refused: the keyword API, a default CLI run
    and an older manifest that recorded the defaults all still work."""
    from reportgen.options import BuildOptions

    BuildOptions(top_k=9, workers=2, feature_vis_steps=512)
    old = BuildOptions.from_recorded({"top_k": 5, "dataset": None, "feature_vis_size": 64,
                                      "cmap": "magma"})
    assert (old.top_k, old.feature_vis_size, old.cmap) == (9, 128, "magma")


@pytest.mark.parametrize("dataset", [False, True])
def test_ctrl_c_says_what_it_left_and_exits_130(tmp_path, monkeypatch, dataset):
    """Not 'Aborted!' and exit 1: exit 130, and say that the dataset state was saved and
    that the same command continues it."""
    import reportgen.build
    from reportgen.dataset.state import state_path

    site = tmp_path / "site"

    def interrupted(*args, **kwargs):
        if dataset:
            state_path(site).write_bytes(b"saved")
        raise KeyboardInterrupt

    monkeypatch.setattr(reportgen.build, "build_report", interrupted)
    photos = tmp_path / "photos"
    photos.mkdir()
    result = run("build", "-d", str(site), *(["--dataset", str(photos)] if dataset else []))
    assert result.exit_code == 130
    assert "Aborted!" not in result.output
    last = result.output.strip().splitlines()[-1]
    if dataset:
        assert last == ("Interrupted. The dataset pass's progress is saved in "
                        ".site.dataset-state.pt (beside the site folder); run the same command "
                        "to continue from there.")
    else:
        assert last == f"Interrupted. Nothing was written; '{site}' is as it was."
