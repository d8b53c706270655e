"""What a build writes, byte for byte: a tiny network's whole site is checked in under
tests/gold/tiny (as coverage.py keeps tests/gold/html), so any change to the output, on
purpose or not, shows in review as a diff of those files.

After a change on purpose, rewrite the gold files and commit them with it:
``REPORTGEN_UPDATE_GOLD=1 python -m pytest tests/test_gold.py``.
"""
from __future__ import annotations

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
    gold = site_files(GOLD)
    assert sorted(built) == sorted(gold), "files added or removed (see the module docstring)"
    changed = [name for name in sorted(gold) if built[name] != gold[name]]
    assert changed == [], "bytes changed (see the module docstring)"
