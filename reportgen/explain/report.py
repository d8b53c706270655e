"""The explanations' part of a report: feature visualisations and attribution, per layer.

Both run after the single-image pass, inside the staged site: feature visualisations are
optimised (or read from their disk cache, keyed by the weights, layer, channel and settings,
so an interrupted or repeated build does not optimise again) and packed into sprite sheets;
attribution is one forward and one backward pass for every selected layer, its Grad-CAM saved
as a 16-bit grey PNG at each layer's map size.
"""
from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path

import torch
from PIL import Image
from torch import nn

from reportgen.analysis import LayerContext, ModelContext
from reportgen.explain.attribution import attribute, save_cam_png
from reportgen.explain.cache import visualise_cached
from reportgen.explain.channels import parse_channel_specs
from reportgen.explain.featurevis import (
    PreparedLayer,
    Visualisation,
    batch_size_for,
    in_batches,
)
from reportgen.explain.record import AttributionRecord, FeatureVisRecord
from reportgen.explain.sprites import write_sprites
from reportgen.explain.target import ClassTarget
from reportgen.forward.capture import Capture
from reportgen.forward.hooks import conv_layers
from reportgen.inputs.preprocess import Preprocessing
from reportgen.inputs.weightfiles import model_fingerprint
from reportgen.options import BuildOptions
from reportgen.progress import stage
from reportgen.sitelayout import cam_png

log = logging.getLogger(__name__)


def check_feature_vis(options: BuildOptions, module: nn.Module, chosen: list[str]) -> None:
    """Refuse a bad --feature-vis spec before the long stages (a dataset pass can take
    hours) rather than after them. ``topN`` is checked with placeholder means; the real ones
    come from the forward pass."""
    assert options.feature_vis is not None
    convs = dict(conv_layers(module))
    layers = {name: int(convs[name].out_channels) for name in chosen if name in convs}
    parse_channel_specs(options.feature_vis, layers,
                        {name: [0.0] * count for name, count in layers.items()})


def check_explain_target(target: str, categories: list[str] | None) -> None:
    """Refuse an --explain class the model does not have, before the long stages (parsed
    once, as attribution will read it)."""
    ClassTarget.parse(target).check(categories)


def feature_visualisations(module: nn.Module, captures: list[Capture],
                           preprocessing: Preprocessing, options: BuildOptions,
                           weights: dict[str, object], site: Path,
                           say: Callable[[str], None],
                           show_progress: bool = False) -> dict[str, FeatureVisRecord]:
    """Per layer named by ``--feature-vis``, its visualisations as sprite-sheet crops."""
    assert options.feature_vis is not None
    firsts = [capture for capture in captures if capture.call == 1]  # one per module
    chosen = parse_channel_specs(
        options.feature_vis, {capture.name: capture.spec.out_channels for capture in firsts},
        {capture.name: capture.stats.channel_mean for capture in firsts})
    slugs = {capture.name: capture.slug for capture in firsts}
    records = {}
    # Once per build: without a weights file it hashes every parameter.
    fingerprint = model_fingerprint(module, weights)
    for layer, channels in chosen.items():
        say(f"Feature visualisation of {len(channels)} channels of {layer} "
            f"({options.feature_vis_steps} steps) ...")

        # The layer is traced and its BatchNorm folded once, for all of its batches.
        prepared = PreparedLayer(module, layer, device=options.device)

        def run(chunk: list[int], size: int, layer: str = layer,
                prepared: PreparedLayer = prepared) -> list[Visualisation]:
            return visualise_cached(
                module, layer, chunk, preprocessing=preprocessing, fingerprint=fingerprint,
                use_cache=options.cache, steps=options.feature_vis_steps,
                size=options.feature_vis_size, seed=options.seed, rectify=options.rectify,
                batch_size=size, device=options.device, progress=log.debug,
                prepared=prepared)

        with stage(f"Feature vis {layer}", len(channels), "channel", show_progress) as ticker, \
                prepared:
            # One batch at a time, each cached as soon as it is done: Ctrl-C loses at most
            # the batch in flight, and the rerun continues from the cache (every channel has
            # its own seeded generator, so batching does not change a picture).
            made = in_batches(channels, batch_size_for(options.device), run, ticker.update)
        crops = write_sprites(made, site, slugs[layer])
        sheets = {item["crop"]["src"] for item in crops.values()}
        sizes = {src: Image.open(site / src).size for src in sorted(sheets)}
        records[layer] = FeatureVisRecord(options.feature_vis_steps, options.feature_vis_size,
                                          crops, sizes)
    return records


def attributions(module: nn.Module, batch: torch.Tensor, captures: list[Capture],
                 options: BuildOptions, categories: list[str] | None,
                 site: Path) -> dict[str, AttributionRecord]:
    """Grad-CAM and contributions of every captured layer, for the chosen class."""
    assert options.explain is not None
    modules = list(dict.fromkeys(capture.module_name for capture in captures))
    found = attribute(module, batch[:1], layers=modules,
                      target=ClassTarget.parse(options.explain), categories=categories,
                      device=options.device)
    records = {}
    slugs = {capture.name: capture.slug for capture in captures}
    for layer in found.layers:
        if layer.layer not in slugs:
            continue
        png = cam_png(slugs[layer.layer])
        save_cam_png(layer.cam_normalised, site / png)
        records[layer.layer] = AttributionRecord(
            found.class_index, found.class_label, png, layer.map_size,
            [float(f"{value:.6g}") for value in layer.contributions])
    return records


class FeatureVisualisation:
    """The analysis: what each chosen channel wants, optimised (see :mod:`reportgen.analysis`)."""

    name = "feature_vis"
    stage = "feature vis"
    needs_all_threads = True  # minutes of optimisation

    def wanted(self, options: BuildOptions) -> bool:
        return bool(options.feature_vis)

    def check(self, model: ModelContext) -> None:
        check_feature_vis(model.options, model.module, model.chosen)

    def run(self, context: LayerContext) -> dict[str, FeatureVisRecord]:
        convs = context.model.conv_captures(context.captures)
        if not convs or not isinstance(context.preprocessing, Preprocessing):
            return {}
        return feature_visualisations(context.model.module, convs, context.preprocessing,
                                      context.options, context.weights, context.site,
                                      context.say, context.show_progress)


class Attribution:
    """The analysis: why the model decided, per layer (see :mod:`reportgen.analysis`)."""

    name = "attribution"
    stage = "attribution"
    needs_all_threads = False

    def wanted(self, options: BuildOptions) -> bool:
        return bool(options.explain)

    def check(self, model: ModelContext) -> None:
        assert model.options.explain is not None
        check_explain_target(model.options.explain, model.categories)

    def run(self, context: LayerContext) -> dict[str, AttributionRecord]:
        convs = context.model.conv_captures(context.captures)
        if not convs:
            return {}
        return attributions(context.model.module, context.batch, convs, context.options,
                            context.model.categories, context.site)
