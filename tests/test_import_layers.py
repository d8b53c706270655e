"""Dependencies point one way: the layer check over the package's imports (tests/layering.py).

``make lint`` runs the same check; these tests show it passes on the package and that it
really fails on an upward import, a cycle, and a module of no layer.
"""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import layering

ROOT = Path(__file__).resolve().parent.parent


def _package(tmp_path: Path, files: dict[str, str]) -> Path:
    """A copy of the package's layout with the given modules (path -> source)."""
    for name, source in files.items():
        path = tmp_path / "reportgen" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(source)
    return tmp_path


def test_the_package_has_no_upward_import_and_no_cycle():
    assert layering.problems(ROOT) == []
    done = subprocess.run([sys.executable, str(ROOT / "tests" / "layering.py")],
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stderr


def test_an_upward_import_is_named_with_its_line(tmp_path):
    root = _package(tmp_path, {
        "__init__.py": "",
        "forward/__init__.py": "",
        "forward/recorder.py": "import os\n\nfrom reportgen.report.model import Capture\n",
        "report/__init__.py": "",
        "report/model.py": "from reportgen.forward import recorder\n",
    })
    lines = layering.problems(root)
    assert ("reportgen/forward/recorder.py:3: reportgen.forward.recorder imports "
            "reportgen.report.model, a higher layer (reportgen.report above "
            "reportgen.forward)") in lines
    assert "import cycle among reportgen.forward.recorder, reportgen.report.model" in lines


def test_a_cycle_inside_one_package_and_a_lazy_import_count(tmp_path):
    root = _package(tmp_path, {
        "__init__.py": "",
        "dataset/__init__.py": "",
        "dataset/mine.py": "from reportgen.dataset import state\n",
        "dataset/state.py": "def load():\n    from reportgen.dataset.mine import mine\n",
    })
    assert layering.problems(root) == [
        "import cycle among reportgen.dataset.mine, reportgen.dataset.state"]


def test_siblings_of_a_layer_stay_apart_and_new_modules_need_a_layer(tmp_path):
    root = _package(tmp_path, {
        "__init__.py": "",
        "explain/__init__.py": "",
        "explain/cache.py": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n"
                            "    from reportgen.dataset.layer import LayerState\n",
        "dataset/__init__.py": "",
        "dataset/layer.py": "from reportgen import errors\n",
        "errors.py": "",
        "helpers.py": "",
    })
    assert layering.problems(root) == [
        "reportgen/explain/cache.py:3: reportgen.explain.cache imports reportgen.dataset.layer, "
        "a sibling of the same layer (reportgen.dataset beside reportgen.explain)",
        "reportgen/helpers.py: reportgen.helpers is in no layer: add it to LAYERS in "
        "tests/layering.py",
    ]
