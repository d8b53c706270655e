"""The wheel carries the templates: a non-editable install renders a report on its own."""
from __future__ import annotations

import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from reportgen.report.pages import SCRIPT_PARTS

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    pytest.importorskip("hatchling")
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation",
                    "-q", "-w", str(out), str(ROOT)], check=True)
    return next(out.glob("reportgen-*.whl"))


def test_wheel_contains_templates_and_static_files(wheel):
    names = zipfile.ZipFile(wheel).namelist()
    for template in ("index.html", "layer.html", "base.html", "static/style.css",
                     *(f"static/js/{part}" for part in SCRIPT_PARTS),
                     "static/singlefile/runtime.js",
                     "static/singlefile/runtime.css"):
        assert f"reportgen/templates/{template}" in names
    assert "reportgen/cli.py" in names
    assert not any(name.startswith("tests/") for name in names)


def test_installed_wheel_renders_a_report(wheel, tmp_path):
    target = tmp_path / "installed"
    subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target",
                    str(target), str(wheel)], check=True)
    script = (
        "import reportgen, torch\n"
        "from torch import nn\n"
        f"assert reportgen.__file__.startswith({str(target)!r}), reportgen.__file__\n"
        "net = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU())\n"
        "r = reportgen.build_report(net, None, 'camera', 'site', size=16)\n"
        "print(len(r.layers))\n")
    env = {**os.environ, "PYTHONPATH": str(target)}
    work = tmp_path / "elsewhere"
    work.mkdir()
    done = subprocess.run([sys.executable, "-c", script], cwd=work, env=env,
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "1"
    index = (work / "site" / "index.html").read_text()
    assert "<table class=\"layers\">" in index
