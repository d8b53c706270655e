"""Pictures: activation grids, filter images, colour maps, ranges and PNG files."""
