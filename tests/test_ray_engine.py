"""--engine ray gives the local engine's result, also when an actor dies mid-run.

One local Ray instance with 2 CPUs serves the whole module (no network, no cluster). Ray is the
optional extra 'reportgen[ray]'; the Makefile installs it, so in CI (CI=true) a missing Ray is
a failure, and elsewhere these tests are skipped.
"""
from __future__ import annotations

import json
import logging
import os
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch
import torchvision
from torch import nn

from dataset_helpers import JUNK, make_dataset, one_torch_thread  # noqa: F401
from reportgen import build_report
from reportgen.dataset import ray_engine
from reportgen.dataset.files import DatasetFiles, list_dataset
from reportgen.dataset.mine import MineOptions, MineProgress, MineResult, mine
from reportgen.dataset.ray_engine import INSTALL_HINT, RaySettings, import_ray, mine_ray
from reportgen.errors import ReportError
from reportgen.inputs.preprocess import Preprocessing
from reportgen.options import BuildOptions

try:
    import ray
except ImportError:
    if os.environ.get("CI"):  # CI installs .[test,lint,ray]: Ray missing there is a bug
        raise
    pytest.skip("Ray is not installed (pip install 'reportgen[ray]')", allow_module_level=True)

pytestmark = pytest.mark.ray

LAYERS = ("conv1", "layer1.0.conv2", "layer3.1.conv1")
PRE = Preprocessing(64, 64)
K = 5
# Smaller than the dataset (27 images decode), so only the files ranked lowest by priority
# send sample rows (ray_engine.REACH), and the sample must still be the local engine's.
SAMPLE = 8
OPTIONS = MineOptions(LAYERS, k=K, sample_size=SAMPLE)
# Two actors of half a CPU each, and decoding beside them, on the instance's 2 CPUs.
SETTINGS = RaySettings(actors=2, cpus_per_actor=0.5)


@pytest.fixture(scope="module", autouse=True)
def local_ray() -> Iterator[None]:
    # Actors unpickle this module's models by value: they need not import the tests folder.
    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False,
             configure_logging=False)
    yield
    ray.shutdown()


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> DatasetFiles:
    return list_dataset(make_dataset(tmp_path_factory.mktemp("dataset"), faces=12))


def net() -> nn.Module:
    # Built here rather than with dataset_helpers.random_resnet18: Ray pickles this function
    # by value into the actors, where the tests' helper module cannot be imported.
    torch.manual_seed(0)
    built: nn.Module = torchvision.models.get_model("resnet18", weights=None)
    return built.eval()


@pytest.fixture(scope="module")
def local(files: DatasetFiles) -> MineResult:
    return mine(net(), files, PRE, OPTIONS, batch_size=8, progress=False)


@pytest.fixture(scope="module")
def distributed(files: DatasetFiles) -> MineResult:
    return mine_ray(net(), files, PRE, OPTIONS, batch_size=3, settings=SETTINGS,
                    progress=False)


def assert_same(local: MineResult, other: MineResult) -> None:
    """Same images in the same order (up to exact ties), scores within 1e-4, same stats."""
    assert list(other.layers) == list(local.layers)
    assert other.decoded == local.decoded
    for name, want in local.layers.items():
        got = other.layers[name]
        for channel in range(want.channels):
            ours, theirs = want.examples(channel), got.examples(channel)
            assert [e.image for e in theirs] == [e.image for e in ours] or (
                sorted(e.score for e in ours) == sorted(e.score for e in theirs))
            assert np.allclose([e.score for e in theirs], [e.score for e in ours],
                               rtol=1e-4, atol=1e-6)
            assert {(e.image, e.y, e.x) for e in theirs} == {(e.image, e.y, e.x) for e in ours}
        assert got.stats.count == want.stats.count
        assert torch.allclose(got.stats.mins, want.stats.mins, rtol=1e-4, atol=1e-6)
        assert torch.allclose(got.stats.maxs, want.stats.maxs, rtol=1e-4, atol=1e-6)
        assert torch.allclose(got.stats.mean, want.stats.mean, rtol=1e-4, atol=1e-6)
        # The same images in the sample, so the same quantiles (up to float rounding), which
        # are then within the sketch's stated error of the true ones by construction.
        assert sorted(got.sample.images[:got.sample.size]) == sorted(
            want.sample.images[:want.sample.size])
        assert torch.allclose(got.quantiles(), want.quantiles(), rtol=1e-4, atol=1e-6)


def test_ray_gives_the_local_engines_result(local: MineResult, distributed: MineResult) -> None:
    assert_same(local, distributed)
    assert distributed.seconds > 0 and distributed.startup_seconds < 1.0  # Ray was running


def test_corrupt_files_are_skipped_with_the_local_engines_reasons(
        local: MineResult, distributed: MineResult) -> None:
    assert [(s.index, s.path, s.reason) for s in distributed.skipped] == [
        (s.index, s.path, s.reason) for s in local.skipped]
    assert {s.path for s in distributed.skipped} == set(JUNK)


def test_a_url_dataset_gives_the_folders_result(local: MineResult, files: DatasetFiles) -> None:
    """file:// is read through pyarrow like s3:// or gs:// (which need a network)."""
    remote = list_dataset(files.root.as_uri())
    result = mine_ray(net(), remote, PRE, OPTIONS, batch_size=8, settings=SETTINGS,
                      progress=False)
    assert_same(local, result)
    assert [(s.path, s.reason) for s in result.skipped] == [
        (s.path, s.reason) for s in local.skipped]


class DiesOnce(nn.Module):
    """The test net, whose actor process kills itself (SIGKILL) on its second batch, once."""

    def __init__(self, marker: Path) -> None:
        super().__init__()
        self.inner = net()
        self.marker = str(marker)
        self.calls = 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        if self.calls == 2 and not os.path.exists(self.marker):
            Path(self.marker).write_text(str(os.getpid()))
            os.kill(os.getpid(), 9)
        result: torch.Tensor = self.inner(x)
        return result


def test_an_actor_killed_mid_run_is_retried_and_the_result_is_unchanged(
        local: MineResult, files: DatasetFiles, tmp_path: Path) -> None:
    marker = tmp_path / "killed"
    layers = tuple(f"inner.{name}" for name in LAYERS)
    result = mine_ray(DiesOnce(marker), files, PRE, MineOptions(layers, k=K, sample_size=SAMPLE),
                      batch_size=4,
                      settings=RaySettings(actors=1, cpus_per_actor=0.5), progress=False)
    assert marker.exists()  # an actor did die
    renamed = MineResult(result.files, result.options, result.preprocessing,
                         {name.removeprefix("inner."): state.part(
                             name.removeprefix("inner."), state.module, 0, state.channels,
                             state.map_size) for name, state in result.layers.items()},
                         result.decoded, result.skipped)
    assert_same(local, renamed)


def test_ctrl_c_stops_the_runs_actors(files: DatasetFiles) -> None:
    def interrupt(progress: MineProgress) -> None:
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        mine_ray(net(), files, PRE, OPTIONS, batch_size=4, settings=SETTINGS, progress=False,
                 on_batch=interrupt)
    deadline = time.monotonic() + 30
    while ray.available_resources().get("CPU", 0) < 2 and time.monotonic() < deadline:
        time.sleep(0.2)
    assert ray.available_resources().get("CPU", 0) == 2  # the actors gave their CPUs back


def test_too_many_corrupt_sample_candidates_rerun_the_pass_exactly(
        local: MineResult, files: DatasetFiles, monkeypatch: pytest.MonkeyPatch,
        caplog: pytest.LogCaptureFixture) -> None:
    # With REACH 1 only the 8 lowest-priority files may send sample rows, and one of them is
    # junk: too few decode, so the pass runs again with every row.
    monkeypatch.setattr(ray_engine, "REACH", 1)
    with caplog.at_level(logging.WARNING, logger="reportgen"):
        result = mine_ray(net(), files, PRE, OPTIONS, batch_size=8, settings=SETTINGS,
                          progress=False)
    assert "running the pass again" in caplog.text
    assert_same(local, result)


def test_build_with_ray_writes_the_local_engines_examples(tmp_path: Path) -> None:
    dataset = make_dataset(tmp_path / "data", faces=3)
    sites = {}
    for engine in ("local", "ray"):
        extra = {"ray_actors": 1} if engine == "ray" else {}
        sites[engine] = build_report(net(), None, None, tmp_path / engine, size=64,
                                     layers=["layer1.0.conv1"], dataset=dataset, top_k=3,
                                     batch_size=4, workers=0, engine=engine, **extra)
    local, distributed = (sites[engine].manifest for engine in ("local", "ray"))
    assert distributed["dataset"] == local["dataset"]
    assert distributed["options"] == local["options"]  # the engine is not recorded
    for want, got in zip(local["layers"], distributed["layers"], strict=True):
        ours = json.loads((sites["local"].site_dir / want["examples"]).read_text())
        theirs = json.loads((sites["ray"].site_dir / got["examples"]).read_text())
        for side in ("top", "inhibiting"):
            assert [[e["image"] for e in c[side]] for c in theirs] == [
                [e["image"] for e in c[side]] for c in ours]


def test_without_ray_the_engine_says_how_to_install_it(monkeypatch: pytest.MonkeyPatch) -> None:
    import importlib

    real = importlib.import_module

    def no_ray(name: str, package: str | None = None) -> object:
        if name == "ray" or name.startswith("ray."):
            raise ImportError(name)
        return real(name, package)

    monkeypatch.setattr(importlib, "import_module", no_ray)
    with pytest.raises(ReportError) as raised:
        import_ray()
    assert raised.value.message == INSTALL_HINT and "\n" not in INSTALL_HINT


def test_ray_options_are_checked() -> None:
    with pytest.raises(ReportError, match="Unknown engine"):
        BuildOptions(engine="spark")
    with pytest.raises(ReportError, match="need --engine ray"):
        BuildOptions(ray_address="auto")
    with pytest.raises(ReportError, match="at least 1"):
        BuildOptions(engine="ray", ray_actors=0, dataset="photos")
    with pytest.raises(ReportError, match="needs --dataset"):
        BuildOptions(engine="ray")  # nothing for Ray to do: refused, not ignored
    assert "engine" not in BuildOptions(engine="ray", dataset="photos").recorded()
