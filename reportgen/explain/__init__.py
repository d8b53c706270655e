"""Explaining what the convs respond to: feature visualisation and Grad-CAM attribution.

The report calls these through :mod:`reportgen.explain.report` (``--explain``,
``--feature-vis``); they are a library of their own as well:

* :func:`visualise` / :func:`visualise_cached`: per channel, the picture that maximises it;
  :class:`~reportgen.explain.featurevis.PreparedLayer` takes objective values
  (:func:`reportgen.explain.objectives.channel`) batch after batch, the layer traced once.
* :func:`parse_channel_specs`: ``LAYERGLOB:CHANNELS`` lists for choosing channels.
* :func:`write_sprites` / :func:`feature_vis_entry`: pictures into sheets and the manifest.
* :func:`attribute`: Grad-CAM and per-channel contributions of every layer, one pass;
  :func:`~reportgen.explain.attribution.gather` is that pass, for other methods, and
  :class:`~reportgen.explain.target.ClassTarget` the class it explains.
"""
from reportgen.explain.attribution import (
                                           Attribution,
                                           LayerAttribution,
                                           attribute,
                                           cam_to_uint16,
                                           resize_cam,
                                           save_cam_png,
)
from reportgen.explain.cache import (
                                           FeatureVisCache,
                                           default_cache_dir,
                                           visualise_cached,
)
from reportgen.explain.channels import parse_channel_specs
from reportgen.explain.featurevis import (
                                           FeatureVisSettings,
                                           Visualisation,
                                           visualise,
                                           visualise_with,
)
from reportgen.explain.sprites import feature_vis_entry, write_sprites
from reportgen.inputs.weightfiles import model_fingerprint

__all__ = ["Attribution", "FeatureVisCache", "FeatureVisSettings", "LayerAttribution",
           "Visualisation", "attribute", "cam_to_uint16", "default_cache_dir",
           "feature_vis_entry", "model_fingerprint", "parse_channel_specs", "resize_cam",
           "save_cam_png", "visualise", "visualise_cached", "visualise_with", "write_sprites"]
