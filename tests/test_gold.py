"""What a build writes, byte for byte: a tiny network's whole site is checked in under
tests/gold/tiny (as coverage.py keeps tests/gold/html), so any change to the output, on
purpose or not, shows in review as a diff of those files.

After a change on purpose, rewrite the gold files and commit them with it:
``REPORTGEN_UPDATE_GOLD=1 python -m pytest tests/test_gold.py``.

The library versions the report records (Python, torch, ...) are the one thing allowed to
differ: a machine with another torch build (GitHub's CPU-only wheels) reads them as its own.
"""
from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest

from conftest import site_files

GOLD = Path(__file__).parent / "gold" / "tiny"
#: Colours and a rectified view exercise the colormap path; SOURCE_DATE_EPOCH (conftest)
#: fixes the time stamp.
OPTIONS = {"cmap": "magma"}


def test_the_tiny_site_is_the_gold_one(tiny_report, tmp_path):
    report = tiny_report(site=tmp_path / "site", **OPTIONS)
    built = site_files(report.site_dir)
    if os.environ.get("REPORTGEN_UPDATE_GOLD"):
        shutil.rmtree(GOLD, ignore_errors=True)
        shutil.copytree(report.site_dir, GOLD)
        pytest.skip(f"rewrote {len(built)} gold files in {GOLD}")
    gold = _with_versions(site_files(GOLD), _versions(GOLD), _versions(report.site_dir))
    assert sorted(built) == sorted(gold), "files added or removed (see the module docstring)"
    changed = [name for name in sorted(gold) if built[name] != gold[name]]
    assert changed == [], "bytes changed (see the module docstring)"


def _versions(site: Path) -> dict[str, str]:
    return dict(json.loads((site / "manifest.json").read_text(encoding="utf-8"))["versions"])


def _with_versions(files: dict[str, bytes], recorded: dict[str, str],
                   here: dict[str, str]) -> dict[str, bytes]:
    """The gold text files with the versions they record replaced by this machine's."""
    changed = {old: here[name] for name, old in recorded.items()
               if name in here and here[name] != old}
    if not changed:
        return files
    swapped = {}
    for name, data in files.items():
        if name.endswith((".html", ".json", ".js", ".css")):
            for old, new in changed.items():
                data = data.replace(old.encode(), new.encode())
        swapped[name] = data
    return swapped
