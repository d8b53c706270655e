"""The Reproduce section: a command that really rebuilds the report, hashes, and a BibTeX entry."""
from __future__ import annotations

import html
import json
import re
import shlex
from pathlib import Path

from click.testing import CliRunner

import reportgen
from conftest import TinyNet, site_files
from reportgen.cli import cli
from reportgen.options import BuildOptions
from reportgen.report.model import InputRecord, ModelInfo, ReportRecord
from reportgen.report.reproduce import bibtex, equivalent_command, reproduction

ROOT = Path(__file__).resolve().parent.parent


def section(site: Path) -> str:
    text = (site / "index.html").read_text(encoding="utf-8")
    match = re.search(r'<section class="reproduce" id="reproduce">.*?</section>', text, re.S)
    assert match, "no Reproduce section"
    return match.group(0)


def code_blocks(fragment: str) -> list[str]:
    return [html.unescape(block) for block in re.findall(r"<pre><code>(.*?)</code></pre>",
                                                          fragment, re.S)]


def test_generated_command_rebuilds_the_same_report(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    reportgen.build_report("mobilenet_v2", "none", "coffee", tmp_path / "first", size=64,
                           seed=5, layers="features.0.0,features.1.*", cmap="viridis",
                           rectify=True, normalize="layer", tile_cap=16, compress_level=3)
    first = json.loads((tmp_path / "first" / "manifest.json").read_text())
    assert first["command"] is None  # built from Python: nothing was recorded
    blocks = code_blocks(section(tmp_path / "first"))
    command = blocks[0]
    assert command.startswith("reportgen build --model mobilenet_v2 --weights none")
    words = shlex.split(command)
    assert words[:2] == ["reportgen", "build"]

    result = CliRunner().invoke(cli, [*words[1:], "-d", "second"])
    assert result.exit_code == 0, result.output
    second = json.loads((tmp_path / "second" / "manifest.json").read_text())
    assert second["command"].startswith("reportgen build ")  # the CLI records its own
    for key in ("options", "weights", "image", "preprocessing", "layers", "predictions"):
        assert first[key] == second[key], key
    pictures = {name: data for name, data in site_files(tmp_path / "first").items()
                if name.startswith("img/")}
    assert pictures == {name: data for name, data in site_files(tmp_path / "second").items()
                        if name.startswith("img/")}
    # the CLI-built report shows the command as typed, then the spelled-out one
    recorded = code_blocks(section(tmp_path / "second"))
    assert recorded[0] == second["command"] and recorded[1] == command


def test_section_shows_versions_hashes_and_bibtex(tmp_path, gradient_image):
    report = reportgen.build_report(TinyNet(), None, gradient_image, tmp_path / "site")
    fragment = section(tmp_path / "site")
    versions = report.manifest["versions"]
    for name in ("reportgen", "torch", "torchvision", "numpy", "python"):
        assert f"<dt>{name}</dt><dd>{versions[name]}</dd>" in fragment
    assert report.manifest["image"]["sha256"] in fragment
    entry = code_blocks(fragment)[-1]
    assert entry.startswith("@software{reportgen,")
    assert f"version = {{{reportgen.__version__}}}" in entry
    assert "year = {2023}" in entry  # SOURCE_DATE_EPOCH=1700000000 (conftest)
    assert entry.count("{") == entry.count("}")


def test_own_module_gets_a_python_call_not_a_command(tmp_path, gradient_image):
    reportgen.build_report(TinyNet(), None, gradient_image, tmp_path / "site")
    fragment = section(tmp_path / "site")
    assert "No command line can rebuild it" in fragment
    python = code_blocks(fragment)[0]
    assert "reportgen.build_report(" in python and "my_model" in python
    assert "TinyNet" in python and "my_image" in python


def record(**changes) -> ReportRecord:
    """A report record without layers, as a manifest of a checkpoint and a file describes."""
    fields = dict(
        created="2031-02-03T04:05:06Z", versions={"reportgen": "1.2.3"}, command=None,
        model=ModelInfo("resnet18", "ResNet", 11_689_512, 20),
        weights={"name": "checkpoint", "file": "best run.pth", "sha256": "ab" * 32},
        preprocessing={}, options=BuildOptions(layers="layer4.*"), notes=[], layers=[])
    image = changes.pop("image", {"kind": "file", "source": "my photo.jpg", "sha256": "cd" * 32})
    fields.update(changes)
    return ReportRecord(**fields, inputs=[InputRecord(image, "img/input.png", [])])


def test_equivalent_command_for_a_checkpoint_and_a_file():
    manifest = record()
    command, reason = equivalent_command(manifest)
    assert reason is None
    assert shlex.split(command) == [
        "reportgen", "build", "--model", "resnet18", "--weights", "best run.pth", "--image",
        "my photo.jpg", "--layers", "layer4.*", "--normalize", "channel", "--cmap", "gray",
        "--tile-cap", "256", "--compress-level", "1"]
    array = record(image={"kind": "array", "source": "array", "sha256": "ef" * 32})
    assert equivalent_command(array)[0] is None
    shown = reproduction(array)
    assert shown.python and "weights='best run.pth'" in shown.python


def test_bibtex_escapes_and_has_the_build_year():
    entry = bibtex("1.2.3", "2031-02-03T04:05:06Z", "my_net&co")
    assert "year = {2031}" in entry and "version = {1.2.3}" in entry
    assert r"my\_net\&co" in entry


def test_index_includes_the_partial_once():
    index = (ROOT / "templates" / "index.html").read_text(encoding="utf-8")
    assert index.count('{% include "_reproduce.html" %}') == 1


def test_recorded_command_has_only_the_flags_given(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(cli, ["build", "-m", "mobilenet_v2", "-w", "none", "-i", "coffee",
                                      "--size", "32", "--layers", "features.0.0"])
    assert result.exit_code == 0, result.output
    command = json.loads((tmp_path / "site" / "manifest.json").read_text())["command"]
    assert "--rectify" not in command and "--self-contained" not in command
    result = CliRunner().invoke(cli, ["build", "-m", "mobilenet_v2", "-w", "none", "-i", "coffee",
                                      "--size", "32", "--layers", "features.0.0", "--rectify",
                                      "--self-contained"])
    assert result.exit_code == 0, result.output
    command = json.loads((tmp_path / "site" / "manifest.json").read_text())["command"]
    assert " --rectify " in command and command.endswith(" --self-contained")
