"""Feature visualisation: the pictures really maximise their channels, deterministically,
cached, packed into sprites, and the model is left exactly as it was."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

from conftest import TinyNet, hooks_left, needs_offline_weights
from reportgen.errors import ReportError
from reportgen.explain import featurevis, objectives
from reportgen.explain.cache import (
    FeatureVisCache,
    default_cache_dir,
    visualise_cached,
)
from reportgen.explain.channels import parse_channel_specs
from reportgen.explain.featurevis import (
    FeatureVisSettings,
    PreparedLayer,
    Visualisation,
    batch_size_for,
    in_batches,
    layer_means,
    pictures_to_batch,
    visualise,
)
from reportgen.explain.folding import fold_batchnorm
from reportgen.explain.sprites import feature_vis_entry, write_sprites
from reportgen.explain.tap import LayerTap, untouched
from reportgen.inputs.preprocess import Preprocessing
from reportgen.inputs.weightfiles import model_fingerprint

ENV_VAR = "REPORTGEN_CACHE_DIR"
PHOTOS = ("astronaut", "coffee", "chelsea", "rocket", "camera", "immunohistochemistry",
          "hubble_deep_field", "retina", "grass", "brick")
LAYER = "features.10.conv.1.0"
TINY = Preprocessing(resize=32, crop=32)
QUICK = dict(preprocessing=TINY, steps=4, size=24)


@pytest.fixture(scope="module")
def mobilenet():
    from reportgen.inputs.models import load_model

    return load_model("mobilenet_v2", "IMAGENET1K_V1")


@needs_offline_weights
def test_each_picture_excites_its_own_channel_most(mobilenet):
    """Own picture beats ten photos for every channel, and the other pictures for >= 90 %."""
    from reportgen.inputs.images import load_image

    model, pre = mobilenet.module, Preprocessing.from_preset(mobilenet.preprocessing)
    photos = torch.cat([pre(load_image(name).rgb) for name in PHOTOS])
    with untouched(model) as running, LayerTap(running, LAYER) as tap:
        photo_means = layer_means(tap, photos, rectify=False)
    # Strongly used channels: the twelve most active on the astronaut, as "top12" picks them.
    counts = {LAYER: photo_means.shape[1]}
    channels = parse_channel_specs(f"{LAYER}:top12", counts, {LAYER: photo_means[0].tolist()})
    channels = channels[LAYER]
    # 48 steps already gave every channel a clear margin; 64 for room (default 512).
    made = visualise(model, LAYER, channels, preprocessing=pre, steps=64, threads=1)
    settings = FeatureVisSettings.of(pre)
    with untouched(model) as running, LayerTap(running, LAYER) as tap:
        own_means = layer_means(tap, pictures_to_batch([v.picture for v in made], settings),
                                rectify=False)
    beats_others = 0
    for row, (visualisation, channel) in enumerate(zip(made, channels, strict=True)):
        own = float(own_means[row, channel])
        assert visualisation.objective == pytest.approx(own, abs=1e-5)
        assert own > float(photo_means[:, channel].max()), channel
        others = torch.cat([own_means[:row, channel], own_means[row + 1:, channel]])
        beats_others += own > float(others.max())
    assert beats_others >= 0.9 * len(channels)


def test_same_seed_same_pixels_other_seed_other_pixels() -> None:
    torch.manual_seed(0)
    model = TinyNet()
    first = visualise(model, "body.3", [0, 5], seed=3, **QUICK)
    again = visualise(model, "body.3", [0, 5], seed=3, **QUICK)
    other = visualise(model, "body.3", [0, 5], seed=4, **QUICK)
    for a, b, c in zip(first, again, other, strict=True):
        assert a.picture.dtype == np.uint8 and a.picture.shape == (24, 24, 3)
        assert np.array_equal(a.picture, b.picture) and a.objective == b.objective
        assert not np.array_equal(a.picture, c.picture)


def test_a_channel_does_not_depend_on_its_batch() -> None:
    torch.manual_seed(0)
    model = TinyNet()
    alone = visualise(model, "stem", [2], **QUICK)[0]
    batched = visualise(model, "stem", [7, 2, 4], batch_size=3, **QUICK)[1]
    assert batched.channel == 2
    assert np.abs(alone.picture.astype(int) - batched.picture.astype(int)).max() <= 1


def test_callers_rng_and_threads_untouched() -> None:
    torch.manual_seed(5)
    model = TinyNet()
    state = torch.random.get_rng_state()
    threads = torch.get_num_threads()
    visualise(model, "stem", [0], threads=1, **QUICK)
    assert torch.equal(torch.random.get_rng_state(), state)
    assert torch.get_num_threads() == threads


def test_model_left_exactly_as_found() -> None:
    torch.manual_seed(0)
    model = TinyNet()
    model.train()
    model.body.eval()  # a mixed state must come back as it was, module by module
    model.stem.weight.requires_grad_(False)
    before = {name: tensor.clone() for name, tensor in model.state_dict().items()}
    modes = {name: sub.training for name, sub in model.named_modules()}
    flags = {name: p.requires_grad for name, p in model.named_parameters()}
    visualise(model, "shared@2", [1, 3], **QUICK)
    assert hooks_left(model) == []
    assert {name: sub.training for name, sub in model.named_modules()} == modes
    assert {name: p.requires_grad for name, p in model.named_parameters()} == flags
    assert all(torch.equal(before[name], tensor) for name, tensor in model.state_dict().items())
    assert all(p.grad is None for p in model.parameters())


def test_hooks_removed_when_the_model_fails() -> None:
    class Broken(TinyNet):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            raise RuntimeError("boom")

    model = Broken()
    with pytest.raises(RuntimeError, match="boom"):
        visualise(model, "stem", [0], **QUICK)
    assert hooks_left(model) == [] and model.training


def test_forward_stops_at_the_layer() -> None:
    torch.manual_seed(0)
    model = TinyNet()
    calls = {"shared": 0, "head": 0}
    for name in calls:
        getattr(model, name).register_forward_hook(
            lambda module, inputs, output, name=name: calls.__setitem__(name, calls[name] + 1))
    visualise(model, "body.5", [0], **QUICK)
    assert calls == {"shared": 0, "head": 0}
    visualise(model, "shared", [0], **QUICK)  # the first call is enough: never the second
    assert calls == {"shared": QUICK["steps"] + 1, "head": 0}


def test_batchnorm_is_folded_except_where_the_raw_output_is_needed() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.ReLU(inplace=True),
                          nn.Conv2d(4, 4, 3), nn.BatchNorm2d(4)).eval()
    for norm in (model[1], model[4]):
        norm.running_mean.uniform_(-1, 1)
        norm.running_var.uniform_(0.5, 2)
    folded = fold_batchnorm(model, keep={"3"})
    norms = [n for n in folded.graph.nodes if n.op == "call_module"
             and isinstance(folded.get_submodule(n.target), nn.BatchNorm2d)]
    assert [n.target for n in norms] == ["4"]
    x = torch.randn(2, 3, 12, 12)
    with torch.no_grad():
        assert torch.allclose(folded(x), model(x), atol=1e-5)
    assert folded.get_submodule("3") is model[3]  # kept conv: the caller's own object
    assert isinstance(model[1], nn.BatchNorm2d) and folded.get_submodule("0") is not model[0]


def test_objectives_are_values_and_a_prepared_layer_is_traced_once(monkeypatch) -> None:
    torch.manual_seed(0)
    model = TinyNet()
    traced = []
    real = featurevis.fold_batchnorm
    monkeypatch.setattr(featurevis, "fold_batchnorm",
                        lambda *args, **kwargs: traced.append(1) or real(*args, **kwargs))
    expected = visualise(model, "body.3", [5, 0, 2], batch_size=2, **QUICK)
    assert len(traced) == 1  # one trace for the two batches of one call
    settings = FeatureVisSettings.of(TINY, steps=QUICK["steps"], size=QUICK["size"])
    traced.clear()
    with PreparedLayer(model, "body.3") as prepared:
        assert traced == []  # nothing traced before a channel is to be optimised
        first = prepared.visualise([objectives.channel("body.3", 5)], settings)
        rest = prepared.visualise([objectives.ChannelObjective("body.3", 0),
                                   objectives.channel("body.3", 2)],
                                  settings, batch_size=2)
        with pytest.raises(ReportError, match="objective of layer stem"):
            prepared.visualise([objectives.channel("stem", 0)], settings)
    assert len(traced) == 1  # once for every call on the prepared layer
    for made, want in zip(first + rest, expected, strict=True):
        assert (made.layer, made.channel) == (want.layer, want.channel)
        assert np.array_equal(made.picture, want.picture) and made.objective == want.objective
    assert hooks_left(model) == [] and model.training


def test_bad_layer_and_channel_are_one_line_errors() -> None:
    model = TinyNet()
    with pytest.raises(ReportError, match="not a conv layer.*Did you mean stem"):
        visualise(model, "stme", [0], **QUICK)
    with pytest.raises(ReportError, match="channels 0-7; 8 is out of range"):
        visualise(model, "stem", [8], **QUICK)
    with pytest.raises(ReportError, match="not called 3 time"):
        visualise(model, "shared@3", [0], **QUICK)
    with pytest.raises(ReportError, match="steps must be at least 1"):
        visualise(model, "stem", [0], preprocessing=TINY, steps=0)


def test_progress_and_rectify() -> None:
    messages: list[str] = []
    torch.manual_seed(0)
    made = visualise(TinyNet(), "stem", [0, 1, 2], rectify=True, batch_size=2,
                     progress=messages.append, **QUICK)
    assert len(messages) == 2 and "channels 3-3 of 3" in messages[1]
    assert all(v.objective >= 0 for v in made)


# --- channel specs ------------------------------------------------------------------------

COUNTS = {"features.0.0": 32, "features.1.conv.0.0": 32, "features.2.conv.0.0": 96}


def test_specs_ranges_lists_all_and_top() -> None:
    means = {"features.2.conv.0.0": [0.0] * 90 + [5.0, 1.0, 9.0, 1.0, 3.0, 0.5]}
    chosen = parse_channel_specs(
        "features.2.*:top3,0-2, features.0.0:3,7,9,features.1*:all", COUNTS, means)
    assert chosen == {"features.0.0": [3, 7, 9], "features.1.conv.0.0": list(range(32)),
                      "features.2.conv.0.0": [92, 90, 94, 0, 1, 2]}
    # a layer named twice gets the union, in the order first asked for, without repeats
    assert parse_channel_specs("features.0.0:5,1-2,features.*.0:2-6", COUNTS)["features.0.0"] \
        == [5, 1, 2, 3, 4, 6]
    assert parse_channel_specs("features.0.0:top100", COUNTS,
                               {"features.0.0": list(range(32))})["features.0.0"] \
        == list(range(31, -1, -1))


@pytest.mark.parametrize("spec, message", [
    ("3,7", "must start with LAYER:CHANNELS"),
    ("features.0.0:", "lists no channels"),
    ("features.0.0:1,,2", "empty item"),
    (":1", "no layer before"),
    ("nothing*:1", "'nothing\\*' matches no conv layer"),
    ("features.0.0:5-2", "runs backwards"),
    ("features.0.0:30-32", "out of range; the layer has channels 0-31"),
    ("features.0.0:x", "'x' is not a channel"),
    ("features.0.0:top4", "needs the channel means"),
    ("features.0.0:top0", "top1 or more"),
    ("", "empty item"),
])
def test_bad_specs_say_what_is_wrong(spec: str, message: str) -> None:
    with pytest.raises(ReportError, match=message) as raised:
        parse_channel_specs(spec, COUNTS)
    assert "\n" not in str(raised.value.message)


# --- cache --------------------------------------------------------------------------------

class CountingNet(TinyNet):
    """Counts the images run through its first conv (the optimisation runs a traced copy,
    which calls the same conv module)."""

    def __init__(self) -> None:
        super().__init__()
        self.forwards = 0
        self.stem.register_forward_pre_hook(self._count)

    def _count(self, module: nn.Module, inputs: tuple) -> None:
        self.forwards += 1


def test_second_call_is_served_from_the_cache(tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = CountingNet()
    first = visualise_cached(model, "stem", [1, 4], cache_dir=tmp_path, **QUICK)
    assert model.forwards == QUICK["steps"] + 1  # the steps, then one pass for the objectives
    model.forwards = 0
    again = visualise_cached(model, "stem", [4, 1], cache_dir=tmp_path, **QUICK)
    assert model.forwards == 0
    assert [v.channel for v in again] == [4, 1]
    assert np.array_equal(again[1].picture, first[0].picture)
    assert again[1].objective == first[0].objective
    # one new channel: only that one is computed
    visualise_cached(model, "stem", [1, 4, 6], cache_dir=tmp_path, **QUICK)
    assert model.forwards == QUICK["steps"] + 1
    assert len(list(tmp_path.rglob("*.png"))) == len(list(tmp_path.rglob("*.json"))) == 3
    assert not list(tmp_path.rglob("*.tmp"))


@pytest.mark.parametrize("change", [dict(steps=5), dict(size=20), dict(lr=0.1), dict(seed=1),
                                    dict(rectify=True), dict(preprocessing=Preprocessing(40, 36)),
                                    dict(use_cache=False)])
def test_a_changed_setting_recomputes(tmp_path: Path, change: dict) -> None:
    torch.manual_seed(0)
    model = CountingNet()
    visualise_cached(model, "stem", [1], cache_dir=tmp_path, **QUICK)
    model.forwards = 0
    visualise_cached(model, "stem", [1], cache_dir=tmp_path, **{**QUICK, **change})
    assert model.forwards > 0


def test_changed_weights_recompute_and_damaged_entries_are_redone(tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = CountingNet()
    visualise_cached(model, "stem", [1], cache_dir=tmp_path, **QUICK)
    with torch.no_grad():
        model.head.bias.add_(1)  # any parameter counts, even one after the layer
    model.forwards = 0
    visualise_cached(model, "stem", [1], cache_dir=tmp_path, **QUICK)
    assert model.forwards > 0
    for png in tmp_path.rglob("*.png"):
        png.write_bytes(b"not a png")
    model.forwards = 0
    visualise_cached(model, "stem", [1], cache_dir=tmp_path, **QUICK)
    assert model.forwards > 0


def test_cache_folder_from_env_and_weights_hash(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv(ENV_VAR, str(tmp_path / "root"))
    assert default_cache_dir() == tmp_path / "root" / "featurevis"
    monkeypatch.delenv(ENV_VAR)
    monkeypatch.delenv("XDG_CACHE_HOME", raising=False)
    assert default_cache_dir() == Path.home() / ".cache" / "reportgen" / "featurevis"
    model = TinyNet()
    assert model_fingerprint(model, {"sha256": "ab" * 32}) == "sha256:" + "ab" * 32
    assert model_fingerprint(model) == model_fingerprint(model, {"name": "none"})
    monkeypatch.setenv(ENV_VAR, str(tmp_path / "env"))
    visualise_cached(model, "stem", [0], **QUICK)
    (entry,) = (tmp_path / "env" / "featurevis").rglob("*.json")
    record = json.loads(entry.read_text())
    assert record["settings"]["steps"] == 4 and record["settings"]["transforms_version"] == 1
    cache = FeatureVisCache()
    settings = FeatureVisSettings.of(TINY, steps=4, size=24)
    assert cache.get(model_fingerprint(model), "stem", 0, settings) is not None


# --- sprites ------------------------------------------------------------------------------

def test_sprites_hold_every_picture_at_its_crop(tmp_path: Path) -> None:
    torch.manual_seed(0)
    made = visualise(TinyNet(), "body.1", list(range(8)), **QUICK)
    entries = write_sprites(made, tmp_path, "body.1", per_sheet=5, columns=3)
    assert sorted({e["crop"]["src"] for e in entries.values()}) == [
        "img/featurevis/body.1-0.png", "img/featurevis/body.1-1.png"]
    for visualisation in made:
        entry = entries[str(visualisation.channel)]
        crop = entry["crop"]
        sheet = np.asarray(Image.open(tmp_path / crop["src"]))
        assert (crop["width"], crop["height"]) == (24, 24)
        assert np.array_equal(sheet[crop["y"]:crop["y"] + 24, crop["x"]:crop["x"] + 24],
                              visualisation.picture)
        assert entry["objective"] == pytest.approx(visualisation.objective, abs=1e-6)
    manifest = feature_vis_entry(4, 24, entries)
    assert set(manifest) == {"steps", "size", "channels"} and set(manifest["channels"]) == {
        str(c) for c in range(8)}
    json.dumps(manifest)  # plain JSON types only


def test_a_batch_too_big_for_the_gpu_is_halved_until_it_fits() -> None:
    tried: list[int] = []

    def run(chunk: list[int], size: int) -> list[Visualisation]:
        tried.append(len(chunk))
        if len(chunk) > 3:
            raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2 GiB")
        return [Visualisation("conv", c, np.zeros((2, 2, 3), np.uint8), float(c)) for c in chunk]

    done: list[int] = []
    made = in_batches(list(range(10)), 16, run, done.append)
    assert [v.channel for v in made] == list(range(10))
    assert tried == [10, 8, 4, 2, 2, 2, 2, 2]
    assert done == [2] * 5
    assert batch_size_for("cpu") == 4 and batch_size_for("cuda") == 256


def test_one_channel_that_does_not_fit_is_one_line() -> None:
    def run(chunk: list[int], size: int) -> list[Visualisation]:
        raise torch.cuda.OutOfMemoryError("CUDA out of memory")

    with pytest.raises(ReportError, match="single channel does not fit"):
        in_batches([5], 1, run)


def test_random_weights_with_batchnorm_are_fingerprinted() -> None:
    """No weights file (-w none, a notebook's own module): the state dict is hashed, 0-d
    buffers such as BatchNorm's num_batches_tracked included, and any change shows."""
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4)).eval()
    before = model_fingerprint(model)
    assert before.startswith("state_dict:") and model_fingerprint(model) == before
    with torch.no_grad():
        model[1].num_batches_tracked += 1
    assert model_fingerprint(model) != before


def test_a_cache_that_cannot_be_written_costs_no_report(tmp_path: Path, caplog) -> None:
    blocked = tmp_path / "not-a-folder"
    blocked.write_text("a file where the cache folder should be\n")
    model = TinyNet()
    made = visualise_cached(model, "stem", [1], cache_dir=blocked / "featurevis", **QUICK)
    assert [v.channel for v in made] == [1] and made[0].picture.shape == (24, 24, 3)
    assert "cache not written" in caplog.text
    assert blocked.read_text() == "a file where the cache folder should be\n"
