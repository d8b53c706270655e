"""The mechanisms that make reports fast and lean, checked by behaviour, never by the clock.

Timings live in benchmarks/bench.py; here: nothing of an activation outlives the build, PNGs
honour the compression level, the CLI and the default report do not import what they do not
need, pretrained weights are not preceded by a random initialisation, and the shortcuts
(our PNG writer, the RdBu_r table, the packaged skimage files, channels-last maps) give
exactly what the slow ways give.
"""
from __future__ import annotations

import gc
import json
import os
import subprocess
import sys
import weakref
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

from conftest import TinyNet, needs_offline_weights
from reportgen import build_report
from reportgen.forward.stats import activation_stats, count_positive
from reportgen.pictures.grids import shrink_to_cap
from reportgen.pictures.pngio import PILLOW_FROM_LEVEL, PngWriter, encode_png, save_png
from reportgen.pictures.ranges import display_range, to_uint8

ROOT = Path(__file__).resolve().parent.parent


def run_python(code: str) -> str:
    """A fresh interpreter with this checkout first on the path."""
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(
        [str(ROOT), *filter(None, [os.environ.get("PYTHONPATH")])]))
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          env=env, cwd=ROOT, check=False, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout.strip().splitlines()[-1]


# ------------------------------------------------------------------ activations are released

def test_no_activation_outlives_the_build(tmp_path, tiny_net, gradient_image):
    outputs: list[weakref.ref] = []
    def keep(module: nn.Module, inputs: tuple, output: torch.Tensor) -> None:
        if not output.is_meta:  # the input-size check runs the model on meta tensors too
            outputs.append(weakref.ref(output))

    handles = [module.register_forward_hook(keep)
               for module in tiny_net.modules() if isinstance(module, nn.Conv2d)]
    report = build_report(tiny_net, None, gradient_image, tmp_path / "site", size=48)
    for handle in handles:
        handle.remove()
    gc.collect()
    assert len(outputs) == 6  # five convs, one of them called twice
    assert [ref for ref in outputs if ref() is not None] == []
    for layer in report.layers:  # records keep numbers and paths, never tensors
        assert not any(isinstance(value, torch.Tensor) for value in vars(layer).values())


def test_each_activation_is_released_during_the_forward_pass(tmp_path, gradient_image):
    """In a plain chain, when conv k+2 runs, conv k's output must already be gone."""

    class Chain(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.convs = nn.ModuleList(nn.Conv2d(3 if k == 0 else 4, 4, 3, padding=1)
                                       for k in range(5))

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            for conv in self.convs:
                x = torch.relu_(conv(x))  # in place, as in VGG
            return x.mean(dim=(2, 3))

    seen: list[weakref.ref] = []
    alive_at_each_call: list[int] = []

    def watch(module: nn.Module, inputs: tuple, output: torch.Tensor) -> None:
        if output.is_meta:  # the input-size check's dry run
            return
        alive_at_each_call.append(sum(ref() is not None for ref in seen))
        seen.append(weakref.ref(output))

    net = Chain()
    handles = [conv.register_forward_hook(watch) for conv in net.convs]
    build_report(net, None, gradient_image, tmp_path / "site", size=32)
    for handle in handles:
        handle.remove()
    # the previous conv's output is the current input (alive); older ones are freed
    assert alive_at_each_call == [0, 1, 1, 1, 1]


def test_torch_thread_count_is_restored(tmp_path, tiny_net, gradient_image):
    before = torch.get_num_threads()
    build_report(tiny_net, None, gradient_image, tmp_path / "site", size=32)
    assert torch.get_num_threads() == before


# ------------------------------------------------------------------ PNG writing

@pytest.mark.parametrize("shape", [(1, 1), (7, 5), (40, 33, 3), (9, 4, 4), (6, 3, 2)])
@pytest.mark.parametrize("level", [0, 1, 5, 9])
def test_png_round_trip_is_exact(tmp_path, shape, level):
    pixels = np.random.default_rng(0).integers(0, 256, shape, dtype=np.uint8)
    save_png(pixels, tmp_path / "p.png", level)
    with Image.open(tmp_path / "p.png") as opened:
        assert opened.format == "PNG"
        assert np.array_equal(np.asarray(opened), pixels)


def test_png_bytes_are_stable_and_have_no_extra_chunks():
    pixels = np.arange(64 * 48, dtype=np.uint32).reshape(64, 48).astype(np.uint8)
    data = encode_png(pixels)
    assert data == encode_png(pixels.copy())
    chunks, position = [], 8
    while position < len(data):
        length = int.from_bytes(data[position:position + 4], "big")
        chunks.append(data[position + 4:position + 8])
        position += 12 + length
    assert chunks == [b"IHDR", b"IDAT", b"IEND"]  # no time or text chunks


def test_png_rejects_what_it_cannot_write():
    with pytest.raises(ValueError):
        encode_png(np.zeros((4, 4), dtype=np.float32))
    with pytest.raises(ValueError):
        encode_png(np.zeros((4, 4, 5), dtype=np.uint8))


def test_compress_level_reaches_the_files(tmp_path, gradient_image):
    """Same pixels at every level; higher levels, smaller files; the manifest says which."""
    torch.manual_seed(0)
    net = TinyNet()
    sizes, pictures = {}, {}
    for level in (0, 1, 9):
        report = build_report(net, None, gradient_image, tmp_path / f"l{level}", size=96,
                              compress_level=level)
        assert report.manifest["options"]["compress_level"] == level
        files = [report.site_dir / layer.activation.png for layer in report.layers]
        sizes[level] = sum(path.stat().st_size for path in files)
        pictures[level] = [np.asarray(Image.open(path)) for path in files]
    assert sizes[0] > sizes[1] > sizes[9]
    for level in (1, 9):
        assert all(np.array_equal(a, b) for a, b in zip(pictures[0], pictures[level], strict=True))
    assert PILLOW_FROM_LEVEL <= 9  # level 9 went through Pillow's encoder, 0 and 1 through ours


def test_cli_compress_level_is_plumbed(tmp_path, monkeypatch):
    from click.testing import CliRunner

    import reportgen.build
    from reportgen.cli import cli

    seen = {}
    real = reportgen.build.build_report

    def spy(*inputs, **keywords):
        seen["options"] = inputs[4]
        return real(*inputs, **keywords)

    monkeypatch.setattr(reportgen.build, "build_report", spy)
    result = CliRunner().invoke(cli, ["build", "-m", "squeezenet1_1", "-w", "none", "-i",
                                      "coffee", "--size", "64", "--compress-level", "7",
                                      "-d", str(tmp_path / "site"), "-q"])
    assert result.exit_code == 0, result.output
    assert seen["options"].compress_level == 7
    manifest = json.loads((tmp_path / "site" / "manifest.json").read_text())
    assert manifest["options"]["compress_level"] == 7


def test_png_writer_counts_its_work_and_reraises(tmp_path):
    with PngWriter(1, workers=2) as writer:
        for index in range(4):
            writer.submit(np.zeros((8, 8), np.uint8), tmp_path / f"{index}.png")
    assert writer.seconds > 0 and len(list(tmp_path.glob("*.png"))) == 4
    writer = PngWriter(1)
    writer.submit(np.zeros((8, 8), np.float32), tmp_path / "bad.png")
    with pytest.raises(ValueError):
        writer.close()


# ------------------------------------------------------------------ what gets imported

def test_importing_the_cli_imports_no_torch_or_matplotlib():
    out = run_python("import sys, reportgen.cli; print(sorted(m for m in ('torch', "
                     "'torchvision', 'matplotlib', 'skimage', 'numpy') if m in sys.modules))")
    assert out == "[]"


def test_a_gray_report_imports_no_matplotlib_or_skimage():
    """The 1x1 heatmap and the skimage sample are served without either package."""
    out = run_python(
        "import sys, tempfile, torch\n"
        "sys.path.insert(0, 'tests')\n"
        "from conftest import TinyNet\n"
        "from reportgen import build_report\n"
        "torch.manual_seed(0)\n"
        "report = build_report(TinyNet(), None, 'coffee', tempfile.mkdtemp() + '/site', size=32)\n"
        "assert any(layer.filters.view == 'heatmap' for layer in report.layers)\n"
        "print(sorted(m for m in ('matplotlib', 'skimage', 'scipy') if m in sys.modules))")
    assert out == "[]"


def test_heatmap_table_is_matplotlibs_rdbu_r():
    import matplotlib

    from reportgen.pictures.kernels import HEATMAP_CMAP, heatmap_lut

    expected = matplotlib.colormaps[HEATMAP_CMAP](np.linspace(0.0, 1.0, 256), bytes=True)
    assert np.array_equal(heatmap_lut(), expected[:, :3])


@pytest.mark.parametrize("name", ["astronaut", "camera", "cat", "chelsea", "coffee"])
def test_packaged_samples_equal_skimage_data(name):
    import skimage.data

    from reportgen.inputs.images import load_image, packaged_sample_file

    assert packaged_sample_file(name) is not None
    ours = np.asarray(load_image(name).rgb)
    theirs = np.asarray(getattr(skimage.data, name)())
    if theirs.ndim == 2:
        theirs = np.repeat(theirs[..., None], 3, axis=2)
    assert np.array_equal(ours, theirs)


# ------------------------------------------------------------------ no random init before weights

@pytest.fixture
def init_calls(monkeypatch):
    """Count torch.nn.init calls that touch real memory (on meta they cost nothing)."""
    calls: list[str] = []
    for name in ("uniform_", "normal_", "trunc_normal_", "constant_", "ones_", "zeros_",
                 "xavier_uniform_", "xavier_normal_", "kaiming_uniform_", "kaiming_normal_"):
        original = getattr(nn.init, name)

        def counted(tensor, *args, _original=original, _name=name, **kwargs):
            if not tensor.is_meta:
                calls.append(_name)
            return _original(tensor, *args, **kwargs)

        monkeypatch.setattr(nn.init, name, counted)
    return calls


@needs_offline_weights
def test_pretrained_weights_are_not_preceded_by_random_init(init_calls):
    from reportgen.inputs.models import load_model

    loaded = load_model("mobilenet_v2", "IMAGENET1K_V1")
    assert init_calls == []
    assert not any(p.is_meta for p in loaded.module.parameters())
    load_model("mobilenet_v2", "none")  # the control: random weights do initialise
    assert init_calls


def test_checkpoints_are_not_preceded_by_random_init(tmp_path, init_calls):
    import torchvision

    from reportgen.inputs.models import load_model

    torch.manual_seed(0)
    source = torchvision.models.squeezenet1_1(weights=None)
    torch.save(source.state_dict(), tmp_path / "net.pth")
    init_calls.clear()
    loaded = load_model("squeezenet1_1", tmp_path / "net.pth")
    assert init_calls == []
    for (name, ours), theirs in zip(loaded.module.state_dict().items(),
                                    source.state_dict().values(), strict=True):
        assert torch.equal(ours, theirs), name


# ------------------------------------------------------------------ channels-last maps

def test_layouts_give_the_same_grids_and_counts():
    torch.manual_seed(0)
    batch = torch.randn(1, 16, 40, 30)
    last = batch.contiguous(memory_format=torch.channels_last)
    assert torch.equal(count_positive(last[0]), (batch[0] > 0).sum(dim=(1, 2)))
    assert torch.equal(count_positive(batch[0]), (batch[0] > 0).sum(dim=(1, 2)))
    for how in ("channel", "layer", "minmax"):
        shrunk_last, shrunk_plain = shrink_to_cap(last, 16)[0], shrink_to_cap(batch[0], 16)
        ours = to_uint8(shrunk_last, *display_range(shrunk_last, how))
        plain = to_uint8(shrunk_plain, *display_range(shrunk_plain, how))
        assert ours.is_contiguous()
        assert (ours.int() - plain.int()).abs().max() <= 1
    a, b = activation_stats(last[0]), activation_stats(batch[0])
    assert a.shape == b.shape and a.min == b.min and a.max == b.max
    assert a.channel_fraction_positive == b.channel_fraction_positive
    assert np.allclose(a.channel_mean, b.channel_mean, rtol=1e-5, atol=1e-7)


def test_torchvision_models_run_channels_last_and_user_modules_do_not(tmp_path, gradient_image):
    """A user's module that flattens with .view() must keep working."""
    import torchvision

    layouts: list[bool] = []

    class Flattens(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv = nn.Conv2d(3, 4, 3, padding=1)
            self.head = nn.Linear(4 * 16 * 16, 2)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            if not x.is_meta:
                layouts.append(x.is_contiguous())
            return self.head(self.conv(x).view(x.shape[0], -1))

    build_report(Flattens(), None, gradient_image, tmp_path / "a", size=16)
    assert layouts == [True]

    net = torchvision.models.squeezenet1_1(weights=None)
    first = net.features[0]
    seen: list[bool] = []
    first.register_forward_pre_hook(  # canonical strides: oneDNN ignores a batch stride of 3
        lambda m, args: None if args[0].is_meta else seen.append(
            args[0].is_contiguous(memory_format=torch.channels_last)
            and args[0].stride(0) == args[0][0].numel()))
    build_report(net, None, gradient_image, tmp_path / "b", size=64)
    assert seen == [True]
