"""Feature visualisations and attribution in the report: manifest, pictures, cache, pages."""
from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

import reportgen.explain.cache
from conftest import needs_offline_weights, shortcut_help
from reportgen import build_report

LAYERS = "features.1.conv.0.0,features.10.conv.1.0,features.18.0"


@pytest.fixture(scope="module")
def explained(tmp_path_factory: pytest.TempPathFactory):
    site = tmp_path_factory.mktemp("explain") / "site"
    return build_report("mobilenet_v2", "IMAGENET1K_V1", "coffee", site, layers=LAYERS,
                        explain="top", feature_vis="features.1.conv.0.0:top3,features.18.0:447",
                        feature_vis_steps=8, feature_vis_size=32)


@needs_offline_weights
def test_attribution_is_in_the_manifest_and_the_pages(explained):
    for layer in explained.manifest["layers"]:
        why = layer["attribution"]
        assert why["class"] == 967 and why["label"] == "espresso"
        cam = Image.open(explained.site_dir / why["cam"])
        assert cam.mode.startswith("I") and cam.size == (layer["grid"]["map_width"],
                                                         layer["grid"]["map_height"])
        assert np.asarray(cam).max() == 65535  # CAM / its max, 16 bits
        contribution = why["contribution"]
        assert len(contribution) == layer["grid"]["channels"]
        order = layer["ranking"]["contribution"]
        assert [contribution[k] for k in order] == sorted(contribution, reverse=True)
        page = (explained.site_dir / layer["page"]).read_text(encoding="utf-8")
        assert "Grad-CAM" in page and f'src="{why["cam"]}"' in page
        assert 'value="contribution"' in page


@needs_offline_weights
def test_feature_visualisations_are_in_sheets(explained):
    layers = {layer["name"]: layer for layer in explained.manifest["layers"]}
    assert "feature_vis" not in layers["features.10.conv.1.0"]
    first = layers["features.1.conv.0.0"]["feature_vis"]
    assert first["steps"] == 8 and first["size"] == 32
    means = layers["features.1.conv.0.0"]["channels"]["channel_mean"]
    top3 = sorted(range(len(means)), key=lambda k: -means[k])[:3]
    assert sorted(int(k) for k in first["channels"]) == sorted(top3)
    assert list(layers["features.18.0"]["feature_vis"]["channels"]) == ["447"]
    for entry in first["channels"].values():
        crop = entry["crop"]
        sheet = Image.open(explained.site_dir / crop["src"])
        assert crop["x"] + crop["width"] <= sheet.width and crop["width"] == 32
        assert isinstance(entry["objective"], float)


@needs_offline_weights
def test_a_rebuild_reads_the_cache_and_no_cache_optimises_again(explained, tmp_path,
                                                                monkeypatch):
    calls = []
    real = reportgen.explain.cache.visualise_with

    def counted(*args, **kwargs):
        calls.append(args[2])
        return real(*args, **kwargs)

    monkeypatch.setattr(reportgen.explain.cache, "visualise_with", counted)
    options = dict(layers="features.18.0", feature_vis="features.18.0:447",
                   feature_vis_steps=8, feature_vis_size=32)
    build_report("mobilenet_v2", "IMAGENET1K_V1", "coffee", tmp_path / "a", **options)
    assert calls == []  # the module's build cached channel 447 with these settings
    build_report("mobilenet_v2", "IMAGENET1K_V1", "coffee", tmp_path / "b", cache=False,
                 **options)
    assert calls == [[447]]
    assert ((tmp_path / "a" / "img" / "featurevis").iterdir().__next__().read_bytes()
            == (tmp_path / "b" / "img" / "featurevis").iterdir().__next__().read_bytes())


@needs_offline_weights
@pytest.mark.browser
def test_channel_view_shows_the_visualisation_and_contribution(browser, explained):
    layer = next(layer for layer in explained.manifest["layers"]
                 if layer["name"] == "features.18.0")
    page = browser.new_page(viewport={"width": 1300, "height": 900})
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.goto((explained.site_dir / layer["page"]).as_uri() + "#features.18.0:447")
    page.locator('[data-channel="features.18.0:447"]').wait_for(state="visible")
    assert page.locator(".cv-featurevis").is_visible()
    assert "featurevis" in page.locator(".cv-featurevis-px").evaluate(
        "e => e.style.backgroundImage")
    rank = layer["ranking"]["contribution"].index(447) + 1
    assert f"(rank {rank} of 1280)" in page.locator(".cv-contribution").inner_text()
    page.keyboard.press("Escape")
    page.get_by_role("radio", name="Contribution").check()
    first = page.locator(".tiles .tile").first.get_attribute("data-index")
    assert int(first) == layer["ranking"]["contribution"][0]
    # the shortcut help says that "s" reaches this order too (its list lacked it)
    assert shortcut_help(page)["s"] == "sort channels: index, mean, max, contribution"
    assert errors == []
    page.close()


def test_ctrl_c_in_feature_visualisation_resumes_from_the_finished_batches(tmp_path, monkeypatch,
                                                                          tiny_net,
                                                                          gradient_image):
    real = reportgen.explain.cache.visualise_with
    asked: list[list[int]] = []

    def interrupted_second_time(*args, **kwargs):
        asked.append(list(args[2]))
        if len(asked) == 2:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    options = dict(size=32, feature_vis="body.1:0-5", feature_vis_steps=2, feature_vis_size=16)
    monkeypatch.setattr(reportgen.explain.cache, "visualise_with", interrupted_second_time)
    with pytest.raises(KeyboardInterrupt):
        build_report(tiny_net, None, gradient_image, tmp_path / "site", **options)
    assert asked == [[0, 1, 2, 3], [4, 5]] and not (tmp_path / "site").exists()
    asked.clear()
    monkeypatch.setattr(reportgen.explain.cache, "visualise_with",
                        lambda *args, **kwargs: asked.append(list(args[2])) or real(*args,
                                                                                     **kwargs))
    report = build_report(tiny_net, None, gradient_image, tmp_path / "site", **options)
    assert asked == [[4, 5]]  # the first batch came from the cache
    assert sorted(report.manifest["layers"][1]["feature_vis"]["channels"], key=int) == [
        "0", "1", "2", "3", "4", "5"]


def test_a_layer_is_traced_and_folded_once_for_all_its_batches(tmp_path, monkeypatch,
                                                                tiny_net, gradient_image):
    """Six channels are two CPU batches of one layer: one torch.fx trace, not two; and a
    rebuild that finds every picture in the cache traces nothing."""
    from reportgen.explain import featurevis

    monkeypatch.setenv("REPORTGEN_CACHE_DIR", str(tmp_path / "cache"))  # no other test's
    real = featurevis.fold_batchnorm
    traced: list[str] = []
    monkeypatch.setattr(featurevis, "fold_batchnorm",
                        lambda module, keep: traced.append(*keep) or real(module, keep))
    options = dict(size=32, feature_vis="body.1:0-5,body.3:0", feature_vis_steps=2,
                   feature_vis_size=16)
    build_report(tiny_net, None, gradient_image, tmp_path / "a", **options)
    assert traced == ["body.1", "body.3"]
    traced.clear()
    build_report(tiny_net, None, gradient_image, tmp_path / "b", **options)
    assert traced == []


def test_feature_visualisation_gets_all_of_torchs_threads(tmp_path, monkeypatch, tiny_net,
                                                          gradient_image):
    """The forward pass leaves a core to the PNG encoders (core_left_for_png); minutes of
    optimisation afterwards must not run one thread short."""
    import torch

    real = reportgen.explain.cache.visualise_with
    seen: list[int] = []

    def counting(*args, **kwargs):
        seen.append(torch.get_num_threads())
        return real(*args, **kwargs)

    monkeypatch.setattr(reportgen.explain.cache, "visualise_with", counting)
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        build_report(tiny_net, None, gradient_image, tmp_path / "site", size=32,
                     feature_vis="body.1:0-1", feature_vis_steps=1, feature_vis_size=16)
    finally:
        torch.set_num_threads(before)
    assert seen == [2]
