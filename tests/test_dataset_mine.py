"""The streaming pass agrees with a brute-force pass, whatever the batching."""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from conftest import hooks_left
from dataset_helpers import (
    JUNK,
    Reference,
    brute_force,
    expected_bottom,
    expected_top,
    make_dataset,
    one_torch_thread,  # noqa: F401
    random_resnet18,
)
from reportgen.dataset.files import DatasetFiles, list_dataset
from reportgen.dataset.hooks import column_maxima, first_peaks
from reportgen.dataset.layer import LayerState
from reportgen.dataset.mine import MineOptions, MineResult, mine
from reportgen.dataset.stats import QuantileSample, priority, rank_error
from reportgen.dataset.topk import TopK, key_images, key_scores, sort_keys
from reportgen.errors import ReportError
from reportgen.inputs.preprocess import Preprocessing

LAYERS = ("conv1", "layer1.0.conv2", "layer3.1.conv1")
PRE = Preprocessing(64, 64)
K = 5


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> DatasetFiles:
    return list_dataset(make_dataset(tmp_path_factory.mktemp("dataset")))


@pytest.fixture(scope="module")
def model() -> nn.Module:
    return random_resnet18()


@pytest.fixture(scope="module")
def reference(model: nn.Module, files: DatasetFiles) -> Reference:
    paths = [files.path(i) for i in range(len(files))]
    return brute_force(model, paths, PRE, list(LAYERS))


@pytest.fixture(scope="module")
def result(model: nn.Module, files: DatasetFiles) -> MineResult:
    return mine(model, files, PRE, MineOptions(LAYERS, k=K), batch_size=8, progress=False)


def _tops(result: MineResult, layer: str) -> list[list[tuple[int, float, int, int]]]:
    state = result.layers[layer]
    return [[(e.image, e.score, e.y, e.x) for e in state.examples(c)]
            for c in range(state.channels)]


def _assert_same(a: MineResult, b: MineResult) -> None:
    """Same images and positions; scores equal up to the model's own batch-size jitter."""
    assert list(a.layers) == list(b.layers)
    for name in a.layers:
        for top_a, top_b in zip(_tops(a, name), _tops(b, name), strict=False):
            assert [(i, y, x) for i, _, y, x in top_a] == [(i, y, x) for i, _, y, x in top_b]
            assert np.allclose([s for _, s, _, _ in top_a], [s for _, s, _, _ in top_b],
                               atol=1e-5, rtol=1e-5)
        sa, sb = a.layers[name], b.layers[name]
        assert sa.stats.count == sb.stats.count
        assert torch.allclose(sa.stats.mean, sb.stats.mean, atol=1e-5)
        assert torch.allclose(sa.quantiles(), sb.quantiles(), atol=1e-5)
        assert (sorted(sa.sample.images[:sa.sample.size])
                == sorted(sb.sample.images[:sb.sample.size]))
    assert a.skipped == b.skipped and a.decoded == b.decoded


def test_top_k_equals_brute_force(result: MineResult, reference: Reference) -> None:
    assert list(result.layers) == list(LAYERS)
    for name in LAYERS:
        state = result.layers[name]
        width = state.map_size[1]
        for channel in range(state.channels):
            want = expected_top(reference, name, channel, K)
            got = state.examples(channel)
            assert [e.image for e in got] == [image for image, _, _ in want], (name, channel)
            assert [e.y * width + e.x for e in got] == [where for _, _, where in want]
            assert np.allclose([e.score for e in got], [s for _, s, _ in want],
                               atol=1e-5, rtol=1e-5)


def test_most_inhibiting_equal_brute_force(result: MineResult, reference: Reference) -> None:
    """The bottom-k of the spatial minima: lowest first, only maps that go below zero."""
    seen = 0
    for name in LAYERS:
        state = result.layers[name]
        width = state.map_size[1]
        for channel in range(state.channels):
            want = expected_bottom(reference, name, channel, K)
            got = state.inhibiting(channel).examples
            assert [e.image for e in got] == [image for image, _, _ in want], (name, channel)
            assert [e.y * width + e.x for e in got] == [where for _, _, where in want]
            assert np.allclose([e.score for e in got], [s for _, s, _ in want],
                               atol=1e-5, rtol=1e-5)
            seen += len(got)
    assert seen


def test_statistics_equal_brute_force(result: MineResult, reference: Reference) -> None:
    for name in LAYERS:
        state, full = result.layers[name], reference.scores[name].double()
        assert state.stats.count == full.shape[0] == sum(reference.ok)
        assert torch.allclose(state.stats.mean, full.mean(0), atol=1e-5)
        assert torch.allclose(state.stats.mins.double(), full.amin(0), atol=1e-5)
        assert torch.allclose(state.stats.maxs.double(), full.amax(0), atol=1e-5)
        # Fewer images than the sample holds: the quantiles are numpy's, exactly.
        want = np.quantile(full.numpy(), [0.5, 0.9, 0.99], axis=0)
        assert np.allclose(state.quantiles().numpy(), want, atol=1e-5)
        summary = state.summaries()[3]
        assert summary.count == full.shape[0] and abs(summary.p90 - want[1, 3]) < 1e-5


def test_junk_is_skipped_with_reasons(result: MineResult, files: DatasetFiles) -> None:
    assert [item.path for item in result.skipped] == sorted(JUNK)
    assert all(item.reason for item in result.skipped)
    assert result.decoded == len(files) - len(JUNK)


@pytest.mark.parametrize("batch_size, workers", [(1, 0), (3, 2), (8, 2)])
def test_result_does_not_depend_on_batching(model: nn.Module, files: DatasetFiles,
                                            result: MineResult, batch_size: int,
                                            workers: int) -> None:
    other = mine(model, files, PRE, MineOptions(LAYERS, k=K), batch_size=batch_size,
                 workers=workers, progress=False)
    _assert_same(result, other)


def test_partial_runs_merge_into_the_full_run(model: nn.Module, files: DatasetFiles,
                                              result: MineResult) -> None:
    odd = mine(model, files, PRE, MineOptions(LAYERS, k=K), batch_size=4,
               indices=range(1, len(files), 2), progress=False)
    even = mine(model, files, PRE, MineOptions(LAYERS, k=K), batch_size=8,
                indices=range(0, len(files), 2), progress=False)
    for name in LAYERS:
        merged = even.layers[name].merge(odd.layers[name])
        expected = result.layers[name]
        assert torch.equal(key_images(merged.top.keys), key_images(expected.top.keys))
        assert torch.equal(merged.top.positions, expected.top.positions)
        assert torch.equal(key_images(merged.bottom.keys), key_images(expected.bottom.keys))
        assert torch.equal(merged.bottom.positions, expected.bottom.positions)
        assert merged.stats.count == expected.stats.count
        assert torch.allclose(merged.stats.maxs, expected.stats.maxs, atol=1e-5)
        assert torch.allclose(merged.quantiles(), expected.quantiles(), atol=1e-5)


def test_rectify_ranks_the_shown_map(model: nn.Module, files: DatasetFiles) -> None:
    rectified = mine(model, files, PRE, MineOptions(("layer3.1.conv1",), k=3, rectify=True),
                     batch_size=8, progress=False)
    reference = brute_force(model, [files.path(i) for i in range(len(files))], PRE,
                            ["layer3.1.conv1"], rectify=True)
    state = rectified.layers["layer3.1.conv1"]
    dead = 0
    for channel in range(state.channels):
        got = state.examples(channel)
        want = expected_top(reference, "layer3.1.conv1", channel, 3)
        assert [(e.image, e.y * state.map_size[1] + e.x) for e in got] == [
            (image, where) for image, _, where in want]
        assert all(e.score >= 0 for e in got)
        dead += not want
    # channels that never go above 0 here: all images tie at 0, so none is ranked first
    assert dead and sum(state.constant(c) for c in range(state.channels)) == dead


def test_hooks_removed_and_model_restored(model: nn.Module, files: DatasetFiles) -> None:
    model.train()
    small = list_dataset(files.root, limit=3)
    mine(model, small, PRE, MineOptions(("conv1",)), progress=False)
    assert model.training and not hooks_left(model)
    model.eval()


def test_no_decodable_image_fails_with_the_reason(model: nn.Module, files: DatasetFiles,
                                                  tmp_path: Path) -> None:
    for name in JUNK:
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_bytes((files.root / name).read_bytes())
    with pytest.raises(ReportError, match="None of the 4 dataset files"):
        mine(model, list_dataset(tmp_path), PRE, MineOptions(("conv1",)), progress=False)


def test_unknown_layer_is_a_report_error(model: nn.Module, files: DatasetFiles) -> None:
    with pytest.raises(ReportError, match="'fc' is not a conv layer of"):
        mine(model, files, PRE, MineOptions(("fc",)), progress=False)


# ------------------------------------------------------------------ planted, no model


def test_keys_rank_by_score_then_lower_image() -> None:
    scores = torch.tensor([1.0, -0.0, 0.0, -2.5, float("inf"), 1.0, float("nan"), -1e-30,
                           float("-inf"), 3.0])
    images = torch.arange(len(scores))
    keys = sort_keys(scores, images)
    order = keys.argsort(descending=True).tolist()
    clean = [(-float("inf") if s != s else s) for s in scores.tolist()]
    assert order == sorted(range(len(scores)), key=lambda i: (-(clean[i] + 0.0), i))
    assert torch.equal(key_images(keys), images)
    assert key_scores(keys)[[0, 3, 4, 9]].tolist() == [1.0, -2.5, float("inf"), 3.0]


def test_topk_ties_go_to_the_lower_image_whatever_the_batches() -> None:
    scores = torch.tensor([[2.0], [5.0], [5.0], [1.0], [5.0], [2.0]])  # 6 images, 1 channel
    images = torch.arange(6)

    def nowhere(rows: torch.Tensor, channels: torch.Tensor) -> torch.Tensor:
        return rows * 0

    for split in ([6], [1] * 6, [4, 2], [2, 3, 1]):
        top, start = TopK.empty(1, 4), 0
        for size in split:
            top = top.update(scores[start:start + size], images[start:start + size], nowhere)
            start += size
        assert key_images(top.keys[0]).tolist() == [1, 2, 4, 0]


def _planted_layer(values: list[float], k: int, sample: int) -> LayerState:
    state = LayerState.new("planted", "planted", 1, (1, 1), k=k, sample_size=sample)
    scores = torch.tensor(values).view(-1, 1)
    images = torch.arange(len(values))
    state.update(scores, images, np.array([priority(f"{i}.png") for i in range(len(values))]),
                 lambda rows, channels: rows * 0, scores, lambda rows, channels: rows * 0)
    return state


@pytest.mark.parametrize(("values", "ties", "beyond"), [
    ([5.0, 3.0, 3.0, 1.0, 0.0], [(1, 2)], False),
    ([5.0, 4.0, 3.0, 3.0, 3.0], [], True),  # the 3rd shown ties with two that are not
    ([2.0, 2.0, 2.0, 2.0, 1.0], [(0, 2)], True),
    ([5.0, 4.0, 3.0, 2.0, 1.0], [], False),
])
def test_ties_inside_a_top_k_are_found(values: list[float], ties: list[tuple[int, int]],
                                       beyond: bool) -> None:
    for order in (values, values[::-1]):  # whatever order the images come in
        ranking = _planted_layer(order, k=3, sample=8).ranking(0)
        assert (ranking.ties, ranking.beyond, ranking.constant) == (ties, beyond, False)
        assert [example.score for example in ranking.examples] == sorted(values)[::-1][:3]


@pytest.mark.parametrize("value", [0.0, 2.5])
def test_a_channel_tied_over_the_dataset_makes_no_ranking_claim(value: float) -> None:
    """A dead channel (all peaks 0) or a constant one: no examples, no percentile."""
    state = _planted_layer([value] * 12, k=3, sample=4)
    assert state.constant(0) and state.ranking(0).constant
    assert state.examples(0) == [] and math.isnan(state.percentile(0, value))
    assert not _planted_layer([value] * 11 + [value + 1], k=3, sample=4).constant(0)


def test_percentile_of_a_planted_channel() -> None:
    state = _planted_layer([float(i) for i in range(100)], k=5, sample=200)
    assert state.percentile(0, 97.5) == 98.0  # 0..97 are below
    assert state.percentile(0, 0.0) == 0.0 and state.percentile(0, 1000.0) == 100.0
    assert state.percentile(0, 50.0) == 50.0
    # A sample of 10: values above the 5th best are still exact, the rest estimated.
    sampled = _planted_layer([float(i) for i in range(100)], k=5, sample=10)
    assert sampled.percentile(0, 97.5) == 98.0 and sampled.percentile(0, 99.5) == 100.0
    assert abs(sampled.percentile(0, 50.0) - 50.0) <= 100 * rank_error(10, 100, 0.01)


def test_every_channel_at_once_agrees_with_a_count_and_with_one_channel() -> None:
    """percentiles() does every channel in one go; it agrees with the one-channel call and,
    where exact, with counting the scores below the value; a channel every image ties on
    has no percentile."""
    generator = np.random.default_rng(3)
    values = generator.normal(size=(60, 7)).astype(np.float32)
    values[:, 2] = np.round(values[:, 2])  # ties
    values[:, 5] = 0.0  # a dead channel
    state = LayerState.new("planted", "planted", 7, (3, 4), k=4, sample_size=100)
    state.update(torch.from_numpy(values), torch.arange(60),
                 np.array([priority(f"{i}.png") for i in range(60)]),
                 lambda rows, channels: (rows * 7 + channels) % 12,
                 torch.from_numpy(values) - 1.0, lambda rows, channels: rows * 0)
    asked = [float(v) for v in generator.normal(size=7)]
    asked[2], asked[5] = 1.0, 0.0
    shares = state.percentiles(asked)
    for channel in range(7):
        if channel == 5:
            assert math.isnan(shares[channel]) and math.isnan(state.percentile(5, 0.0))
            continue
        count = 100.0 * float((values[:, channel] < np.float32(asked[channel])).mean())
        assert shares[channel] == pytest.approx(count, abs=1e-9)
        assert state.percentile(channel, asked[channel]) == shares[channel]
    assert state.percentiles([9.0, -9.0], [3, 1]) == [100.0, 0.0]
    best = np.argsort(-values[:, 0], kind="stable")[:4]
    assert [e.image for e in state.examples(0)] == best.tolist()
    assert [e.score for e in state.examples(0)] == values[best, 0].tolist()
    assert state.examples(5) == []  # no ranking where every image ties


def test_top_k_keys_are_made_once_per_batch(model: nn.Module, files: DatasetFiles,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    """The hooks make each layer's keys (they need them to pick the maps worth locating);
    the batch's top-k merge reuses them rather than making them again."""
    from reportgen.dataset import hooks, topk

    made = {"hooks": 0, "topk": 0}
    for module, name in ((hooks, "hooks"), (topk, "topk")):
        monkeypatch.setattr(module, "sort_keys", lambda *args, real=module.sort_keys,
                            name=name: made.__setitem__(name, made[name] + 1) or real(*args))
    passes = []
    handle = model.register_forward_pre_hook(lambda module, inputs: passes.append(1))
    try:
        mine(model, files, PRE, MineOptions(LAYERS, k=K), batch_size=8, progress=False)
    finally:
        handle.remove()
    # two per layer and batch: the maxima's keys and the negated minima's (most inhibiting)
    assert passes and made == {"hooks": 2 * len(LAYERS) * len(passes), "topk": 0}


def test_sample_quantiles_within_the_stated_error() -> None:
    generator = np.random.default_rng(0)
    images, channels, capacity = 20000, 6, 1000
    data = np.concatenate([generator.normal(size=(images, 2)),
                           generator.exponential(size=(images, 2)),
                           generator.integers(0, 5, size=(images, 2))], axis=1).astype(np.float32)
    priorities = np.array([priority(f"images/{i:05d}.jpg") for i in range(images)])
    sample = QuantileSample.empty(channels, capacity)
    for start in range(0, images, 512):
        stop = start + 512
        sample.update(priorities[start:stop], np.arange(start, min(stop, images)),
                      torch.from_numpy(data[start:stop]))
    assert sample.size == capacity
    chosen = sorted(np.argsort(priorities, kind="stable")[:capacity])
    assert sorted(sample.images.tolist()) == [int(i) for i in chosen]
    levels = [0.5, 0.9, 0.99]
    estimated = sample.quantiles(levels).numpy()
    bound = rank_error(capacity, images, delta=0.001)
    for channel in range(channels):
        column = np.sort(data[:, channel])
        for row, level in enumerate(levels):
            value = estimated[row, channel]
            below = np.searchsorted(column, value, "left") / images
            at_most = np.searchsorted(column, value, "right") / images
            assert below - bound <= level <= at_most + bound, (channel, level)


def test_samples_merge_exactly() -> None:
    generator = np.random.default_rng(1)
    data = torch.from_numpy(generator.normal(size=(300, 3)).astype(np.float32))
    priorities = np.array([priority(f"{i}.png") for i in range(300)])
    images = np.arange(300)

    def run(rows: np.ndarray, step: int) -> QuantileSample:
        sample = QuantileSample.empty(3, 50)
        for start in range(0, len(rows), step):
            chunk = rows[start:start + step]
            sample.update(priorities[chunk], images[chunk], data[torch.from_numpy(chunk)])
        return sample

    whole = run(images, 64)
    merged = run(images[::3], 7).merge(run(np.setdiff1d(images, images[::3]), 100))
    assert sorted(merged.images[:merged.size]) == sorted(whole.images[:whole.size])
    assert torch.equal(merged.quantiles([0.1, 0.5, 0.9]), whole.quantiles([0.1, 0.5, 0.9]))


@pytest.mark.parametrize("channels_last", [False, True])
def test_first_peak_is_the_first_in_row_major_order(channels_last: bool) -> None:
    maps = torch.zeros(2, 4, 5, 6)
    maps[0, 0, 3, 1] = maps[0, 0, 1, 4] = 2.0  # two columns tie: row 1 comes first
    maps[0, 1, 2, 3] = maps[0, 1, 4, 3] = 1.0  # one column, two rows
    maps[0, 2] = -1.0  # constant: the first position
    maps[0, 3, 4, 5] = 7.0
    maps[1, 0, 0, 5] = maps[1, 0, 0, 2] = 3.0  # same row: the left one
    maps[1, 1] = torch.arange(30.0).view(5, 6)
    if channels_last:
        maps = maps.contiguous(memory_format=torch.channels_last)
    columns = column_maxima(maps)
    peaks = columns.amax(dim=2)
    assert torch.equal(peaks, maps.flatten(2).amax(dim=2))
    images, channels = torch.tensor([0, 0, 0, 0, 1, 1]), torch.tensor([0, 1, 2, 3, 0, 1])
    found = first_peaks(maps, columns, peaks, images, channels)
    assert found.tolist() == [1 * 6 + 4, 2 * 6 + 3, 0, 4 * 6 + 5, 2, 29]
    assert found.tolist() == maps.flatten(2).argmax(dim=2)[images, channels].tolist()


def test_progress_bar_only_when_asked_or_on_a_tty(model: nn.Module, files: DatasetFiles,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    small = list_dataset(files.root, limit=2)
    mine(model, small, PRE, MineOptions(("conv1",)), device="cpu")  # stderr is not a TTY
    assert capsys.readouterr().err == ""
    mine(model, small, PRE, MineOptions(("conv1",)), progress=True)
    assert "2/2" in capsys.readouterr().err


def test_devices(model: nn.Module, files: DatasetFiles) -> None:
    with pytest.raises(ReportError, match="Unknown device"):
        mine(model, files, PRE, device="tpu-please")
    if not torch.cuda.is_available():
        with pytest.raises(ReportError, match="no CUDA GPU"):
            mine(model, files, PRE, device="cuda")


def test_a_run_hands_its_result_to_the_cpu(result: MineResult) -> None:
    """A GPU run's state is copied to the CPU once, at the end (CI runs the same call)."""
    for name, state in result.layers.items():
        assert state.top.keys.device.type == "cpu"
        assert state.sample.scores.device.type == "cpu"
        moved = state.to("cpu")
        assert [moved.examples(c) for c in range(state.channels)] == \
            [state.examples(c) for c in range(state.channels)]
        assert moved.summaries() == state.summaries(), name
