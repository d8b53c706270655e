"""Explaining what the convs respond to: feature visualisation and Grad-CAM attribution."""
