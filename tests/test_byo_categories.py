"""--categories FILE: the labels of a fine-tune's outputs, one per line or a JSON list."""
from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from reportgen import ReportError
from reportgen.cli import cli
from reportgen.inputs.categories import read_categories

NET = ("import torch\nfrom torch import nn\n"
       "class Net(nn.Module):\n"
       "    def __init__(self, num_classes=10):\n"
       "        super().__init__()\n"
       "        self.conv = nn.Conv2d(3, 4, 3)\n"
       "        self.fc = nn.Linear(4, num_classes)\n"
       "    def forward(self, x):\n"
       "        return self.fc(self.conv(x).mean(dim=(2, 3)))\n")
LABELS = [f"digit {n}" for n in range(10)]


@pytest.fixture
def project(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "net.py").write_text(NET)
    (tmp_path / "labels.txt").write_text("\n".join(LABELS) + "\n\n")
    (tmp_path / "labels.json").write_text(json.dumps(LABELS))
    return tmp_path


def build(*extra: str):
    return CliRunner().invoke(cli, ["build", "-m", "net.py:Net", "-w", "none", "-i", "coffee",
                                    "--size", "16", *extra])


@pytest.mark.parametrize("file", ["labels.txt", "labels.json"])
def test_categories_file_labels_the_predictions(project, file):
    result = build("--categories", file, "-d", "s")
    assert result.exit_code == 0, result.output
    manifest = json.loads((project / "s" / "manifest.json").read_text())
    labels = [p["label"] for p in manifest["predictions"]]
    assert len(labels) == 5 and set(labels) <= set(LABELS)
    assert all(p["label"] == LABELS[p["index"]] for p in manifest["predictions"])
    assert f"--categories {file}" in manifest["command"]
    assert "digit " in (project / "s" / "index.html").read_text()


def test_a_categories_file_of_the_wrong_length_is_an_error(project):
    (project / "five.txt").write_text("a\nb\nc\nd\ne\n")
    result = build("--categories", "five.txt", "-d", "s")
    assert result.exit_code == 2
    assert "--categories has 5 labels but the model has 10 outputs" in result.output
    assert "Traceback" not in result.output
    assert not (project / "s").exists()  # nothing written


def test_bad_categories_files(project):
    (project / "gap.txt").write_text("a\n\nb\n")
    (project / "object.json").write_text('{"0": "cat"}')
    (project / "broken.json").write_text('["cat", ')
    for name, fragment in (("gap.txt", "has an empty line (2)"),
                           ("object.json", "must hold a non-empty JSON list"),
                           ("broken.json", "is not valid JSON"),
                           ("missing.txt", "'missing.txt' does not exist")):
        result = build("--categories", name, "-d", "s")
        assert result.exit_code == 2, name
        assert fragment in result.output, (name, result.output)
    with pytest.raises(ReportError, match="is a folder"):
        read_categories(project)
