"""Inputs: the image, the model and its weights, and the preprocessing between them."""
