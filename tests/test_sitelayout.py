"""One home for the site's layout: every path under a report's folder is named by
reportgen.sitelayout, which needs no torch, and a layer's slug is made once."""
from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import reportgen
from reportgen import sitelayout

PACKAGE = Path(reportgen.__file__).parent
#: What a hand-built site path starts with.
SITE_PREFIXES = ("img/", "static/", "examples/", "layer-")


def _string_parts(tree: ast.AST) -> list[tuple[int, str]]:
    """Every literal string, and each literal head of an f-string, with its line; an
    f-string that puts a folder constant (``f"{IMAGE_DIR}/..."``) in a path reads as
    ``img/``."""
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            found.append((node.lineno, node.value))
        elif isinstance(node, ast.JoinedStr) and node.values:
            head = node.values[0]
            if isinstance(head, ast.Constant) and isinstance(head.value, str):
                found.append((node.lineno, head.value))
            if any(isinstance(part, ast.FormattedValue) and isinstance(part.value, ast.Name)
                   and part.value.id.endswith("_DIR") for part in node.values):
                found.append((node.lineno, "img/ (a folder constant in an f-string)"))
    return found


def test_no_module_but_sitelayout_spells_a_site_path():
    offenders = []
    for path in sorted(PACKAGE.rglob("*.py")):
        if path.name == "sitelayout.py":
            continue
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for line, text in _string_parts(tree):
            # a path has no space; prose ("layer-wide colour scale") does
            if text.startswith(SITE_PREFIXES) and (" " not in text or "f-string" in text):
                offenders.append(f"{path.relative_to(PACKAGE)}:{line}: {text!r}")
    assert offenders == []


def test_sitelayout_imports_no_torch():
    code = ("import sys, reportgen.sitelayout; "
            "print(any(name == 'torch' or name.startswith('torch.') for name in sys.modules))")
    shown = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                           check=True)
    assert shown.stdout.strip() == "False"


def test_slugs_are_safe_unique_and_avoid_the_reserved_names():
    taken = sitelayout.new_slugs()
    made = [sitelayout.slugify(name, taken)
            for name in ("index", "features.0", "Features.0", "../etc/passwd", "a b", "")]
    assert made == ["index-2", "features.0", "Features.0-2", "etc_passwd", "a_b", "layer"]
    assert all("/" not in slug and ".." not in slug for slug in made)


def test_paths_are_relative_to_the_site_and_distinct():
    slug = "features.1"
    paths = [sitelayout.input_png(0), sitelayout.input_png(1), sitelayout.layer_page(slug),
             sitelayout.activation_png(slug), sitelayout.activation_png(slug, 1),
             sitelayout.filters_png(slug), sitelayout.cam_png(slug),
             sitelayout.examples_json(slug), sitelayout.crop_sheet(slug, 0),
             sitelayout.feature_vis_sheet(slug, 0), sitelayout.static_file("style.css")]
    assert len(set(paths)) == len(paths)
    assert all(not path.startswith("/") and ".." not in path for path in paths)
    assert sitelayout.input_png(1) == "img/input-2.png"
    assert sitelayout.activation_png(slug, 2) == "img/features.1-act-3.png"
