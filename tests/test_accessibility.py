"""Third-party checkers agree: axe-core finds no violation, the Nu HTML validator no error.

axe-core (all rules at its default tags) runs inside Chromium on the overview, two layer pages
and an open channel view, in light and dark; the Nu validator (vnu.jar, Java) checks the same
pages' HTML, the channel view as the browser's DOM after it opened. Both come from npm into the
ignored test-artifacts/node folder the first time (CI has npm and Java; elsewhere the tests
are skipped when they cannot be had).
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from conftest import needs_offline_weights

pytestmark = [pytest.mark.browser, needs_offline_weights]

ROOT = Path(__file__).resolve().parents[1]
NODE = ROOT / "test-artifacts" / "node"
PACKAGES = ("axe-core@4.14.1", "vnu-jar@26.9.27")
AXE = NODE / "node_modules" / "axe-core" / "axe.min.js"
VNU = NODE / "node_modules" / "vnu-jar" / "build" / "dist" / "vnu.jar"
LAYERS = ("features.0.0", "features.18.0")  # the first page, and the largest (1,280 channels)


def _unavailable(reason: str) -> None:
    if os.environ.get("CI"):
        pytest.fail(reason, pytrace=False)
    pytest.skip(reason)


@pytest.fixture(scope="session")
def checkers() -> tuple[Path, Path]:
    if not (AXE.is_file() and VNU.is_file()):
        npm = shutil.which("npm")
        if not npm:
            _unavailable("npm is needed to install axe-core and vnu-jar")
        NODE.mkdir(parents=True, exist_ok=True)
        done = subprocess.run([npm, "install", "--no-save", "--no-audit", "--no-fund",
                               "--prefix", str(NODE), *PACKAGES], capture_output=True, text=True)
        if done.returncode != 0 or not (AXE.is_file() and VNU.is_file()):
            _unavailable(f"npm install {' '.join(PACKAGES)} failed: {done.stderr[-300:]}")
    if not shutil.which("java"):
        _unavailable("Java is needed for the Nu HTML validator (vnu.jar)")
    return AXE, VNU


def _pages(manifest: dict[str, Any]) -> list[str]:
    pages = {layer["name"]: layer["page"] for layer in manifest["layers"]}
    return ["index.html", *(pages[name] for name in LAYERS)]


def _axe(page: Any, axe: Path) -> list[str]:
    page.add_script_tag(path=str(axe))
    result = page.evaluate("async () => (await axe.run(document)).violations.map("
                           "v => v.id + ' (' + v.impact + '): ' + v.nodes.slice(0, 3).map("
                           "n => n.target.join(' ')).join(' | '))")
    return list(result)


@pytest.mark.parametrize("scheme", ["light", "dark"])
def test_axe_finds_no_violation(browser, server, manifest, checkers, scheme):
    axe, _ = checkers
    context = browser.new_context(viewport={"width": 1440, "height": 900}, color_scheme=scheme)
    page = context.new_page()
    try:
        found = {}
        for name in _pages(manifest):
            page.goto(server + name)
            page.wait_for_load_state("load")
            found[name] = _axe(page, axe)
        layer = manifest["layers"][0]
        page.goto(f"{server}{layer['page']}#{layer['name']}:5")
        page.locator(f'[data-channel="{layer["name"]}:5"]').wait_for(state="visible")
        found["channel view"] = _axe(page, axe)
    finally:
        context.close()
    assert {name: issues for name, issues in found.items() if issues} == {}


def _vnu(vnu: Path, files: list[Path]) -> list[str]:
    done = subprocess.run(["java", "-jar", str(vnu), "--errors-only", "--format", "json",
                           *map(str, files)], capture_output=True, text=True)
    messages = json.loads(done.stderr or done.stdout or '{"messages": []}')["messages"]
    return [f"{Path(m.get('url', '')).name}:{m.get('lastLine')}: {m['message']}"
            for m in messages if m.get("type") == "error"]


def test_nu_validator_finds_no_error(browser, report, server, manifest, checkers, tmp_path):
    _, vnu = checkers
    files = [report.site_dir / name for name in _pages(manifest)]
    context = browser.new_context(viewport={"width": 1440, "height": 900})
    page = context.new_page()
    try:
        layer = manifest["layers"][0]
        page.goto(f"{server}{layer['page']}#{layer['name']}:5")
        page.locator(f'[data-channel="{layer["name"]}:5"]').wait_for(state="visible")
        opened = tmp_path / "channel-view.html"
        opened.write_text(page.content(), encoding="utf-8")  # the DOM, doctype included
    finally:
        context.close()
    assert _vnu(vnu, [*files, opened]) == []
