"""What excites each channel over a folder of images: the library behind a dataset report."""
