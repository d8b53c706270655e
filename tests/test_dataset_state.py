"""Ctrl-C and rerun gives exactly the uninterrupted result; a different run starts over."""
from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from torch import nn

from dataset_helpers import make_dataset, one_torch_thread, random_resnet18  # noqa: F401
from reportgen.dataset.files import DatasetFiles, list_dataset
from reportgen.dataset.mine import MineOptions, MineProgress, MineResult, mine
from reportgen.dataset.state import state_path
from reportgen.dataset.topk import key_images
from reportgen.inputs.preprocess import Preprocessing

PRE = Preprocessing(48, 48)
OPTIONS = MineOptions(("conv1", "layer2.0.conv1"), k=4, sample_size=8)


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> DatasetFiles:
    return list_dataset(make_dataset(tmp_path_factory.mktemp("dataset"), faces=9))


@pytest.fixture(scope="module")
def model() -> nn.Module:
    return random_resnet18(seed=1)


@pytest.fixture(scope="module")
def uninterrupted(model: nn.Module, files: DatasetFiles) -> MineResult:
    return mine(model, files, PRE, OPTIONS, batch_size=4, progress=False)


def _interrupt_after(batches: int) -> Callable[[MineProgress], None]:
    def on_batch(progress: MineProgress) -> None:
        if progress.batches == batches:
            raise KeyboardInterrupt

    return on_batch


def _assert_identical(a: MineResult, b: MineResult) -> None:
    assert list(a.layers) == list(b.layers)
    for name, state in a.layers.items():
        other = b.layers[name]
        assert torch.equal(state.top.keys, other.top.keys)
        assert torch.equal(state.top.positions, other.top.positions)
        assert torch.equal(state.bottom.keys, other.bottom.keys)  # the most inhibiting, too
        assert torch.equal(state.bottom.positions, other.bottom.positions)
        assert state.stats.count == other.stats.count
        assert torch.equal(state.stats.sums, other.stats.sums)
        assert torch.equal(state.stats.mins, other.stats.mins)
        assert torch.equal(state.stats.maxs, other.stats.maxs)
        assert torch.equal(state.quantiles(), other.quantiles())
    assert a.skipped == b.skipped and a.decoded == b.decoded


def test_interrupted_run_resumes_to_the_same_result(model: nn.Module, files: DatasetFiles,
                                                   uninterrupted: MineResult,
                                                   tmp_path: Path) -> None:
    state = state_path(tmp_path / "site")
    assert state.parent == tmp_path and state.name.startswith(".")
    with pytest.raises(KeyboardInterrupt):
        mine(model, files, PRE, OPTIONS, batch_size=4, state_file=state, checkpoint_every=8,
             on_batch=_interrupt_after(5), progress=False)
    assert state.exists()
    resumed = mine(model, files, PRE, OPTIONS, batch_size=4, state_file=state,
                   progress=False)
    assert resumed.resumed_from == 16  # the checkpoint after batch 4; batch 5 is redone
    _assert_identical(uninterrupted, resumed)
    assert not state.exists() and list(tmp_path.iterdir()) == []


def test_resume_with_other_batching_and_twice(model: nn.Module, files: DatasetFiles,
                                             uninterrupted: MineResult, tmp_path: Path) -> None:
    state = state_path(tmp_path / "site")
    with pytest.raises(KeyboardInterrupt):
        mine(model, files, PRE, OPTIONS, batch_size=4, state_file=state, checkpoint_every=1,
             on_batch=_interrupt_after(2), progress=False)
    with pytest.raises(KeyboardInterrupt):
        mine(model, files, PRE, OPTIONS, batch_size=3, workers=2, state_file=state,
             checkpoint_every=1, on_batch=_interrupt_after(3), progress=False)
    resumed = mine(model, files, PRE, OPTIONS, batch_size=5, state_file=state, progress=False)
    assert resumed.resumed_from == 8 + 9
    for name, layer in uninterrupted.layers.items():
        other = resumed.layers[name]
        assert torch.equal(layer.top.positions, other.top.positions)
        assert torch.equal(layer.bottom.positions, other.bottom.positions)
        assert torch.equal(key_images(layer.bottom.keys), key_images(other.bottom.keys))
        assert torch.equal(layer.sample.quantiles([0.5]), other.sample.quantiles([0.5]))
        for channel in range(layer.channels):
            assert ([e.image for e in layer.examples(channel)] ==
                    [e.image for e in other.examples(channel)])


def test_a_different_run_or_resume_false_starts_over(model: nn.Module, files: DatasetFiles,
                                                     tmp_path: Path,
                                                     caplog: pytest.LogCaptureFixture) -> None:
    state = state_path(tmp_path / "site")
    with pytest.raises(KeyboardInterrupt):
        mine(model, files, PRE, OPTIONS, batch_size=4, state_file=state, checkpoint_every=1,
             on_batch=_interrupt_after(2), progress=False)
    saved = state.read_bytes()
    with caplog.at_level(logging.WARNING), pytest.raises(KeyboardInterrupt):
        mine(model, files, PRE, MineOptions(OPTIONS.layers, k=3, sample_size=8), batch_size=4,
             state_file=state, checkpoint_every=100,
             on_batch=_interrupt_after(1), progress=False)
    assert "different run" in caplog.text
    assert state.read_bytes() == saved  # nothing saved yet by the other run
    fresh = mine(model, files, PRE, OPTIONS, batch_size=4, state_file=state, resume=False,
                 progress=False)
    assert fresh.resumed_from == 0 and not state.exists()


def test_a_state_of_an_older_format_is_not_misread(model: nn.Module, files: DatasetFiles,
                                                    uninterrupted: MineResult, tmp_path: Path,
                                                    caplog: pytest.LogCaptureFixture) -> None:
    """Version 1 states had no bottom-k and one image fewer per ranking: start over."""
    state = state_path(tmp_path / "site")
    with pytest.raises(KeyboardInterrupt):
        mine(model, files, PRE, OPTIONS, batch_size=4, state_file=state, checkpoint_every=1,
             on_batch=_interrupt_after(2), progress=False)
    data = torch.load(state, weights_only=True)
    torch.save({**data, "version": 1}, state)
    with caplog.at_level(logging.WARNING):
        result = mine(model, files, PRE, OPTIONS, batch_size=4, state_file=state,
                      progress=False)
    assert result.resumed_from == 0 and "Ignoring saved dataset state" in caplog.text
    _assert_identical(uninterrupted, result)


def test_a_damaged_state_file_is_ignored(model: nn.Module, files: DatasetFiles,
                                         uninterrupted: MineResult, tmp_path: Path,
                                         caplog: pytest.LogCaptureFixture) -> None:
    state = state_path(tmp_path / "site")
    state.write_bytes(b"PK\x03\x04 not a torch file")
    with caplog.at_level(logging.WARNING):
        result = mine(model, files, PRE, OPTIONS, batch_size=4, state_file=state,
                      progress=False)
    assert "unreadable" in caplog.text and result.resumed_from == 0
    _assert_identical(uninterrupted, result)


def test_a_device_decoded_run_resumes_only_as_one(model: nn.Module, files: DatasetFiles,
                                                  tmp_path: Path) -> None:
    """--decode device (run here on the CPU) resumes to its own uninterrupted result, and a
    state saved by one decoder is not resumed by the other (their pixels differ on a GPU)."""
    whole = mine(model, files, PRE, OPTIONS, batch_size=4, decode="device", progress=False)
    state = state_path(tmp_path / "site")
    with pytest.raises(KeyboardInterrupt):
        mine(model, files, PRE, OPTIONS, batch_size=4, state_file=state, checkpoint_every=8,
             on_batch=_interrupt_after(5), decode="device", progress=False)
    assert mine(model, files, PRE, OPTIONS, batch_size=4, state_file=state,
                progress=False).resumed_from == 0  # the CPU decoder starts over
    with pytest.raises(KeyboardInterrupt):
        mine(model, files, PRE, OPTIONS, batch_size=4, state_file=state, checkpoint_every=8,
             on_batch=_interrupt_after(5), decode="device", progress=False)
    resumed = mine(model, files, PRE, OPTIONS, batch_size=4, state_file=state,
                   decode="device", progress=False)
    assert resumed.resumed_from == 16
    _assert_identical(whole, resumed)


def test_the_state_is_saved_by_elapsed_time(model: nn.Module, files: DatasetFiles,
                                            uninterrupted: MineResult, tmp_path: Path) -> None:
    """By default a checkpoint is due when ``checkpoint_seconds`` have passed since the last
    one, whatever the number of files: no time means after every batch, a long time never."""
    state = state_path(tmp_path / "site")
    with pytest.raises(KeyboardInterrupt):
        mine(model, files, PRE, OPTIONS, batch_size=4, state_file=state,
             checkpoint_seconds=3600, on_batch=_interrupt_after(4), progress=False)
    assert not state.exists()  # 16 files, but not an hour
    with pytest.raises(KeyboardInterrupt):
        mine(model, files, PRE, OPTIONS, batch_size=4, state_file=state,
             checkpoint_seconds=0, on_batch=_interrupt_after(3), progress=False)
    resumed = mine(model, files, PRE, OPTIONS, batch_size=4, state_file=state, progress=False)
    assert resumed.resumed_from == 12  # saved after each of the 3 batches
    _assert_identical(uninterrupted, resumed)
