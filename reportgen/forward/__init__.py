"""The forward pass: hooks on the convolutions and what happens to each output."""
