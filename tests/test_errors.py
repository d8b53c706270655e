"""Bad input gives one clear sentence and exit code 2, never a traceback; odd input just works.

Each case is checked through the library (the exact :class:`ReportError` text) and the CLI
(exit code, stderr); one real ``python -m reportgen`` subprocess proves the whole path.
"""
from __future__ import annotations

import io
import os
import struct
import subprocess
import sys
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from PIL import Image
from torch import nn

from conftest import IdentityNet, NoConvNet, TinyNet
from reportgen import ReportError, build_report
from reportgen.cli import cli
from reportgen.inputs.images import MAX_SIDE, load_image

REPO = Path(__file__).resolve().parent.parent


# ---------------------------------------------------------------- helpers


def build_tiny(tmp_path: Path, image, **options) -> object:
    """A TinyNet report at a small size (fast on two cores)."""
    torch.manual_seed(0)
    options.setdefault("size", 24)
    return build_report(TinyNet(), None, image, tmp_path / "site", **options)


def expect_error(call, *fragments: str) -> str:
    with pytest.raises(ReportError) as caught:
        call()
    message = caught.value.message
    assert "\n" not in message
    for fragment in fragments:
        assert fragment.lower() in message.lower(), message
    return message


def run_cli(*args: str):
    result = CliRunner().invoke(cli, ["build", *args])
    stderr = getattr(result, "stderr", None)
    if stderr is None:  # click < 8.2 mixes streams by default
        stderr = result.output
    return result, stderr


def assert_clean_failure(result, stderr: str, *fragments: str) -> None:
    assert result.exit_code == 2, (result.exit_code, result.output)
    assert "Traceback" not in stderr and "Traceback" not in result.output
    error_lines = [line for line in stderr.splitlines() if line.startswith("Error:")]
    assert len(error_lines) == 1, stderr
    for fragment in fragments:
        assert fragment.lower() in error_lines[0].lower(), error_lines[0]


def png_bytes(picture: Image.Image, **params) -> bytes:
    stream = io.BytesIO()
    picture.save(stream, format="PNG", **params)
    return stream.getvalue()


def png_header_only(width: int, height: int) -> bytes:
    """A PNG that claims a size in its header and has no pixel data (a bomb costs nothing)."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return (struct.pack(">I", len(data)) + kind + data
                + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF))
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IEND", b"")


@pytest.fixture
def rgb_png(tmp_path: Path, gradient_image) -> Path:
    path = tmp_path / "photo.png"
    Image.fromarray(gradient_image).save(path)
    return path


# ---------------------------------------------------------------- bad images


def test_missing_image_suggests_samples(tmp_path):
    expect_error(lambda: load_image(tmp_path / "nope.png"), "'nope.png' does not exist",
                 "skimage sample")
    expect_error(lambda: load_image("cofee"), "coffee")  # a typo of a sample name


def test_folder_empty_and_non_image(tmp_path):
    expect_error(lambda: load_image(tmp_path), "is a folder")
    (tmp_path / "empty.png").write_bytes(b"")
    expect_error(lambda: load_image(tmp_path / "empty.png"), "empty file")
    (tmp_path / "notes.png").write_text("just some text, not pixels\n")
    expect_error(lambda: load_image(tmp_path / "notes.png"), "not an image", "PNG, JPEG")
    os.mkfifo(tmp_path / "pipe.png")  # reading it would block forever
    expect_error(lambda: load_image(tmp_path / "pipe.png"), "not a regular file")


@pytest.mark.parametrize("fmt", ["PNG", "JPEG"])
def test_truncated_image(tmp_path, gradient_image, fmt):
    stream = io.BytesIO()
    Image.fromarray(gradient_image).save(stream, format=fmt)
    data = stream.getvalue()
    path = tmp_path / f"cut.{fmt.lower()}"
    path.write_bytes(data[: len(data) * 2 // 3])
    expect_error(lambda: load_image(path), "'cut.", "damaged or truncated")


def test_decompression_bomb_is_refused(tmp_path):
    path = tmp_path / "bomb.png"
    path.write_bytes(png_header_only(40_000, 40_000))  # 1.6 G pixels, 60 bytes on disk
    expect_error(lambda: load_image(path), "'bomb.png' is too large", "resize it below")


def test_bomb_within_twice_the_limit_is_refused_too(tmp_path, monkeypatch):
    # Pillow only warns between 1x and 2x MAX_IMAGE_PIXELS; we refuse there as well.
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 10_000)
    path = tmp_path / "big.png"
    Image.new("RGB", (120, 120), (10, 20, 30)).save(path)  # 14,400 pixels
    expect_error(lambda: load_image(path), "too large")


def test_large_legal_image_is_downscaled(tmp_path):
    path = tmp_path / "wide.png"
    Image.new("RGB", (MAX_SIDE + 904, 300), (200, 40, 10)).save(path)
    source = load_image(path)
    assert max(source.rgb.size) == MAX_SIDE
    assert source.rgb.size == (MAX_SIDE, round(300 * MAX_SIDE / (MAX_SIDE + 904)))
    assert any("downscaled from 5000x300" in note for note in source.notes)
    assert source.rgb.getpixel((100, 100)) == (200, 40, 10)


def test_bad_arrays():
    expect_error(lambda: load_image(np.zeros((2, 4, 5), np.uint8)), "shape (2, 4, 5)")
    expect_error(lambda: load_image(np.zeros((0, 4), np.uint8)), "empty")
    expect_error(lambda: load_image(np.full((4, 4), np.nan)), "NaN")
    expect_error(lambda: load_image(42), "type int")


# ---------------------------------------------------------------- models, weights, options


def test_unknown_model_names_close_matches(tmp_path):
    expect_error(lambda: build_report("resnt18", "none", "coffee", tmp_path / "s"),
                 "Unknown model 'resnt18'", "resnet18")


def test_unknown_weights_names_the_valid_ones(tmp_path):
    expect_error(lambda: build_report("resnet18", "IMAGENET_V9", "coffee", tmp_path / "s"),
                 "Unknown weights 'IMAGENET_V9'", "IMAGENET1K_V1", "none")


def test_missing_checkpoint_or_folder(tmp_path):
    expect_error(lambda: build_report("resnet18", tmp_path / "gone.pth", "coffee",
                                      tmp_path / "s"), "'gone.pth' does not exist")
    (tmp_path / "run.pt").mkdir()
    expect_error(lambda: build_report(TinyNet(), tmp_path / "run.pt", "coffee",
                                      tmp_path / "s"), "'run.pt' is a folder")


def test_not_a_checkpoint(tmp_path):
    path = tmp_path / "junk.pth"
    path.write_bytes(os.urandom(256))
    expect_error(lambda: build_report(TinyNet(), path, "coffee", tmp_path / "s"),
                 "'junk.pth' is not a PyTorch checkpoint")
    text = tmp_path / "weights.pt"
    text.write_text("hello")
    expect_error(lambda: build_report(TinyNet(), text, "coffee", tmp_path / "s"),
                 "not a PyTorch checkpoint")


def test_checkpoint_of_other_architecture_names_keys(tmp_path):
    path = tmp_path / "other.pth"
    torch.save(IdentityNet().state_dict(), path)
    message = expect_error(lambda: build_report(TinyNet(), path, "coffee", tmp_path / "s"),
                           "'other.pth' does not fit TinyNet", "missing (stem.weight",
                           "unexpected (conv.weight)", "another architecture")
    assert "stem.bias" in message


def test_checkpoint_of_other_torchvision_model(tmp_path):
    path = tmp_path / "tiny.pth"
    torch.save(TinyNet().state_dict(), path)
    expect_error(lambda: build_report("resnet18", path, "coffee", tmp_path / "s"),
                 "does not fit resnet18", "missing (conv1.weight", "unexpected (stem.weight")


class Pickled:
    """Any class: weights_only=True refuses to rebuild it."""

    def __init__(self) -> None:
        self.payload = [1, 2, 3]


def test_pickle_refused_by_weights_only(tmp_path):
    path = tmp_path / "whole_model.pth"
    torch.save({"model": Pickled(), "state_dict": TinyNet().state_dict()}, path)
    expect_error(lambda: build_report(TinyNet(), path, "coffee", tmp_path / "s"),
                 "'whole_model.pth' contains Python objects", "Pickled", "weights_only=True",
                 "torch.save(model.state_dict(), path)")
    whole = tmp_path / "net.pt"
    torch.save(TinyNet(), whole)  # the whole module pickled: the classic mistake
    expect_error(lambda: build_report(TinyNet(), whole, "coffee", tmp_path / "s"),
                 "contains Python objects (conftest.TinyNet)")


def test_checkpoint_without_state_dict(tmp_path):
    path = tmp_path / "numbers.pth"
    torch.save({"epoch": 3, "lr": 0.1}, path)
    expect_error(lambda: build_report(TinyNet(), path, "coffee", tmp_path / "s"),
                 "holds no state_dict")


def test_layers_matching_nothing_lists_the_layers(tmp_path, gradient_image):
    expect_error(lambda: build_tiny(tmp_path, gradient_image, layers="decoder.*"),
                 "--layers 'decoder.*' matches no conv layer", "stem", "body.1", "shared")


def test_model_without_conv(tmp_path, gradient_image):
    expect_error(lambda: build_report(NoConvNet(), None, gradient_image, tmp_path / "s"),
                 "NoConvNet has no Conv2d layer")


def test_image_too_small_states_the_minimum(tmp_path, gradient_image):
    class NeedsTen(nn.Module):  # 3x3 conv, 3x3 conv, then a 5x5 pool with no padding
        def __init__(self) -> None:
            super().__init__()
            self.a = nn.Conv2d(3, 4, 3)
            self.b = nn.Conv2d(4, 4, 3)
            self.pool = nn.MaxPool2d(5)

        def forward(self, x):
            return self.pool(self.b(self.a(x))).flatten(1)

    expect_error(lambda: build_report(NeedsTen(), None, gradient_image, tmp_path / "s", size=8),
                 "too small", "needs at least 9x9", "--size 9")
    report = build_report(NeedsTen(), None, gradient_image, tmp_path / "s", size=9)
    assert len(report.layers) == 2


def test_torchvision_model_too_small_fails_before_loading_weights(tmp_path, monkeypatch):
    import reportgen.build

    def must_not_load(*args, **kwargs):
        raise AssertionError("weights were loaded although --size was already known to fail")

    monkeypatch.setattr(reportgen.build, "load_model", must_not_load)
    expect_error(lambda: build_report("vgg11", "none", "coffee", tmp_path / "s", size=16),
                 "needs at least 32x32", "--size 32")
    expect_error(lambda: build_report("resnet18", "DEFAULT", "coffee", tmp_path / "s", size=0),
                 "--size must be a positive")


def test_fixed_size_model_is_told_the_size_that_works(tmp_path, gradient_image):
    class LeNetish(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv = nn.Conv2d(3, 2, 5)
            self.fc = nn.Linear(2 * 28 * 28, 10)

        def forward(self, x):
            return self.fc(self.conv(x).flatten(1))

    expect_error(lambda: build_report(LeNetish(), None, gradient_image, tmp_path / "s"),
                 "cannot run on a 224x224 input", "--size 32")


def test_unknown_colormap_fails_before_work(tmp_path, gradient_image):
    expect_error(lambda: build_tiny(tmp_path, gradient_image, cmap="viridiss"),
                 "Unknown colormap 'viridiss'", "viridis")
    assert not (tmp_path / "site").exists()


def test_site_folder_under_a_file(tmp_path, gradient_image):
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    expect_error(lambda: build_report(TinyNet(), None, gradient_image, blocker / "site"),
                 "Cannot write the site folder 'site'")
    assert blocker.read_text() == "x"


@pytest.mark.skipif(not Path("/proc/self").is_dir(), reason="needs Linux /proc")
def test_site_folder_nobody_can_write(gradient_image):
    # Root ignores permission bits, but nobody can make folders in /proc.
    expect_error(lambda: build_report(TinyNet(), None, gradient_image, "/proc/reportgen-site",
                                      size=24), "Cannot write the site folder")


# ---------------------------------------------------------------- the CLI


def test_cli_errors_are_one_line_exit_2(tmp_path):
    cases = [
        (["-i", str(tmp_path / "missing.jpg")], "does not exist"),
        (["-i", str(tmp_path)], "is a folder"),
        (["-m", "resnt18"], "Did you mean resnet18"),
        (["-m", "resnet18", "-w", "IMAGENET1K_V9"], "IMAGENET1K_V1"),
        (["-m", "resnet18", "--cmap", "nope"], "Unknown colormap"),
        (["-m", "resnet18", "-w", str(tmp_path / "nope.pth")], "does not exist"),
        (["-m", "vgg11", "-w", "none", "--size", "20"], "needs at least 32x32"),
        (["-m", "mobilenet_v2", "-w", "none", "--layers", "zzz*"], "features.0.0"),
    ]
    for arguments, fragment in cases:
        result, stderr = run_cli(*arguments, "-i" if "-i" not in arguments else "-q",
                                 *(["coffee"] if "-i" not in arguments else []),
                                 "-d", str(tmp_path / "site"))
        assert_clean_failure(result, stderr, fragment)
    assert not (tmp_path / "site").exists()


def test_cli_unexpected_error_is_one_line_unless_verbose(tmp_path, monkeypatch):
    import reportgen.build

    def broken(*inputs, **options):
        raise ZeroDivisionError("boom")

    monkeypatch.setattr(reportgen.build, "build_report", broken)
    result = CliRunner().invoke(cli, ["build", "-d", str(tmp_path / "s")])
    assert result.exit_code == 1 and "ZeroDivisionError: boom" in result.output
    assert "Traceback" not in result.output and "run with -v" in result.output
    verbose = CliRunner().invoke(cli, ["build", "-v", "-d", str(tmp_path / "s")])
    assert isinstance(verbose.exception, ZeroDivisionError)  # -v lets the traceback through


def test_real_subprocess_bad_image(tmp_path):
    bad = tmp_path / "holiday.jpg"
    bad.write_bytes(b"\xff\xd8\xff\xe0 definitely not a whole jpeg")
    env = {**os.environ, "PYTHONPATH": str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    done = subprocess.run([sys.executable, "-m", "reportgen", "build", "-m", "resnet18", "-w",
                           "none", "-i", str(bad), "-d", str(tmp_path / "site")],
                          capture_output=True, text=True, env=env, cwd=tmp_path, timeout=120)
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr
    assert done.stderr.strip().splitlines()[-1].startswith("Error: Image 'holiday.jpg'")
    assert str(tmp_path) not in done.stderr.splitlines()[-1]  # base names only
    assert sorted(p.name for p in tmp_path.iterdir()) == ["holiday.jpg"]


# ---------------------------------------------------------------- odd but valid images


def model_input(tmp_path: Path, image, name: str = "site") -> np.ndarray:
    """The input.png of an IdentityNet report: exactly what the model saw."""
    report = build_report(IdentityNet(), None, image, tmp_path / name, size=32)
    return np.asarray(Image.open(report.site_dir / "img" / "input.png"))


def reference_input(tmp_path: Path, rgb: np.ndarray) -> np.ndarray:
    return model_input(tmp_path, Image.fromarray(rgb.astype(np.uint8), "RGB"), "reference")


def test_grey_image(tmp_path):
    grey = np.tile(np.arange(0, 256, 4, dtype=np.uint8), (64, 1))
    path = tmp_path / "grey.png"
    Image.fromarray(grey, "L").save(path)
    seen = model_input(tmp_path, path)
    assert np.array_equal(seen[..., 0], seen[..., 1]) and np.array_equal(seen[..., 1], seen[..., 2])
    np.testing.assert_array_equal(seen, reference_input(tmp_path, np.stack([grey] * 3, -1)))


def test_rgba_is_composited_on_white(tmp_path):
    rgba = np.zeros((64, 64, 4), np.uint8)
    rgba[..., 0] = 255
    rgba[:, 32:, 3] = 255  # left half fully transparent red, right half opaque red
    path = tmp_path / "alpha.png"
    Image.fromarray(rgba, "RGBA").save(path)
    source = load_image(path)
    assert source.rgb.getpixel((5, 5)) == (255, 255, 255)
    assert source.rgb.getpixel((60, 5)) == (255, 0, 0)
    assert "transparency composited onto white" in source.notes
    expected = np.full((64, 64, 3), 255, np.uint8)
    expected[:, 32:] = (255, 0, 0)
    np.testing.assert_array_equal(model_input(tmp_path, path), reference_input(tmp_path, expected))


def test_palette_image(tmp_path):
    rgb = np.zeros((64, 64, 3), np.uint8)
    rgb[:32] = (0, 128, 255)
    rgb[32:] = (250, 200, 10)
    path = tmp_path / "palette.png"
    Image.fromarray(rgb).quantize(colors=2).save(path)
    assert Image.open(path).mode == "P"
    np.testing.assert_array_equal(model_input(tmp_path, path), reference_input(tmp_path, rgb))


def test_palette_with_transparency(tmp_path):
    picture = Image.new("P", (16, 16), 0)
    picture.putpalette([0, 0, 0, 0, 255, 0])
    picture.paste(1, (8, 0, 16, 16))
    path = tmp_path / "ptrans.png"
    picture.save(path, transparency=0)
    source = load_image(path)
    assert source.rgb.getpixel((2, 2)) == (255, 255, 255)
    assert source.rgb.getpixel((12, 2)) == (0, 255, 0)


def test_sixteen_bit_image_uses_its_range(tmp_path):
    ramp = np.tile(np.linspace(1000, 5080, 64).round().astype(np.uint16), (64, 1))
    path = tmp_path / "scan16.png"
    Image.fromarray(ramp).save(path)  # mode I;16
    source = load_image(path)
    pixels = np.asarray(source.rgb)
    assert pixels[0, 0].tolist() == [0, 0, 0] and pixels[0, -1].tolist() == [255, 255, 255]
    assert any("scaled from its range [1000, 5080]" in note for note in source.notes)
    expected = ((ramp - 1000) * (255 / 4080)).round().astype(np.uint8)
    np.testing.assert_array_equal(model_input(tmp_path, path),
                                  reference_input(tmp_path, np.stack([expected] * 3, -1)))


def test_uint16_and_float_arrays():
    array16 = np.full((8, 8, 3), 65535, np.uint16)
    assert load_image(array16).rgb.getpixel((0, 0)) == (255, 255, 255)
    floats = np.full((8, 8), 0.5)
    assert load_image(floats).rgb.getpixel((0, 0)) == (128, 128, 128)
    chw = torch.zeros(3, 8, 8)
    chw[1] = 1.0
    assert load_image(chw).rgb.getpixel((3, 3)) == (0, 255, 0)


def test_cmyk_jpeg(tmp_path):
    path = tmp_path / "print.jpg"
    Image.new("CMYK", (64, 64), (0, 255, 255, 0)).save(path, quality=95)  # pure red ink
    source = load_image(path)
    assert "CMYK converted to RGB" in source.notes
    red, green, blue = source.rgb.getpixel((32, 32))
    assert red > 240 and green < 15 and blue < 15
    seen = model_input(tmp_path, path)
    assert seen[..., 0].min() > 235 and seen[..., 1:].max() < 20


def test_exif_rotated_photo_is_upright(tmp_path):
    # Stored landscape (red left, blue right) with orientation 6 = "rotate 90 clockwise":
    # a viewer shows it portrait with red on top.
    stored = np.zeros((40, 80, 3), np.uint8)
    stored[:, :40] = (255, 0, 0)
    stored[:, 40:] = (0, 0, 255)
    picture = Image.fromarray(stored)
    exif = picture.getexif()
    exif[0x0112] = 6
    path = tmp_path / "phone.jpg"
    picture.save(path, exif=exif, quality=95)
    source = load_image(path)
    assert source.rgb.size == (40, 80)
    top, bottom = np.asarray(source.rgb)[5, 20], np.asarray(source.rgb)[75, 20]
    assert top[0] > 230 and top[2] < 30, top
    assert bottom[2] > 230 and bottom[0] < 30, bottom
    seen = model_input(tmp_path, path)  # the centre crop keeps the middle of the portrait
    assert seen[2, 16, 0] > 200 and seen[-3, 16, 2] > 200


@pytest.mark.parametrize("suffix", ["gif", "webp"])
def test_animated_image_uses_first_frame_and_says_so(tmp_path, suffix):
    frames = [Image.new("RGB", (32, 32), colour) for colour in
              [(255, 0, 0), (0, 255, 0), (0, 0, 255)]]
    path = tmp_path / f"anim.{suffix}"
    frames[0].save(path, save_all=True, append_images=frames[1:], duration=100, loop=0,
                   lossless=True)
    source = load_image(path)
    assert source.rgb.getpixel((10, 10)) == (255, 0, 0)
    assert "animated image with 3 frames: the first frame is used" in source.notes
    report = build_report(IdentityNet(), None, path, tmp_path / "site", size=16)
    assert "animated image with 3 frames: the first frame is used" in report.manifest["notes"]
    seen = np.asarray(Image.open(report.site_dir / "img" / "input.png"))
    assert (seen == (255, 0, 0)).all()
    assert "the first frame is used" in (report.site_dir / "index.html").read_text()


def test_one_pixel_image_is_resized_up_to_the_crop(tmp_path):
    pixel = np.array([[[200, 30, 90]]], np.uint8)
    seen = model_input(tmp_path, pixel)
    assert seen.shape == (32, 32, 3) and (seen == (200, 30, 90)).all()
