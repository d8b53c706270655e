"""The GPU figures of issue 12, in one command for a machine with a CUDA GPU.

    PYTHONPATH=. python benchmarks/bench_gpu.py single [--device cuda] [--builds 5]
    PYTHONPATH=. python benchmarks/bench_gpu.py mine [--device cuda] [--images 4096]
                                               [--batch-size 256] [--workers 16]

``single``: VGG16 (random weights: the same cost as trained ones, nothing to download) on
the astronaut at 224, ``--builds`` builds in this process after one warm-up, on the CPU and on
``--device``; median seconds per stage (``to device`` is our own model's one copy to the
GPU, CUDA's start-up included in the warm-up), then a torch.profiler summary of one build on
``--device``: the calls that wait for the GPU (synchronisations, copies) and the busiest ops,
which is where a slow forward stage shows its cause.

``mine``: ResNet-50 with all 53 conv layers at 224 over ``--images`` JPEG files written from
skimage's photos (about 500x375, quality 90, crops and flips): images/s of

* a bare batched forward on ``--device`` over the same decoded batches, no hooks;
* ``mine()`` end to end from the files with the JPEGs decoded on the device (nvJPEG);
* ``mine()`` end to end with ``--workers`` CPU processes decoding;

and mined/bare. Runs on the CPU too (``--device cpu --images 64``), only slowly. Prints the
card and the load average; not a test.
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from PIL import Image

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from reportgen.dataset.decode import batches  # noqa: E402
from reportgen.dataset.files import list_dataset  # noqa: E402
from reportgen.dataset.mine import mine  # noqa: E402
from reportgen.forward.device import laid_out  # noqa: E402
from reportgen.inputs.preprocess import Preprocessing  # noqa: E402

PHOTOS = ("astronaut", "coffee", "chelsea", "rocket", "camera", "brick", "grass")


def machine(device: torch.device) -> str:
    load = " ".join(Path("/proc/loadavg").read_text().split()[:3])
    card = (torch.cuda.get_device_name(device) if device.type == "cuda" else "no GPU")
    return f"{card}; {os.cpu_count()} CPUs; torch {torch.__version__}; load average {load}"


def synchronise(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def single(args: argparse.Namespace) -> None:
    from reportgen.build import build_report

    device = torch.device(args.device)
    with tempfile.TemporaryDirectory() as temporary:
        def build(on: str) -> dict[str, float]:
            report = build_report("vgg16", "none", "astronaut", Path(temporary) / on,
                                  device=on)
            return report.timings

        medians: dict[str, dict[str, float]] = {}
        for on in ("cpu", args.device):
            build(on)  # warm-up: CUDA's start-up, cuDNN's first choices, file caches
            runs = [build(on) for _ in range(args.builds)]
            medians[on] = {stage: statistics.median(run.get(stage, 0.0) for run in runs)
                           for stage in runs[0]}
        print(f"VGG16 at 224, {args.builds} warm builds each; {machine(device)}")
        stages = list(dict.fromkeys([*medians["cpu"], *medians[args.device]]))
        print(f"{'stage':<14}" + "".join(f"{on:>10}" for on in medians))
        for stage in stages:
            print(f"{stage:<14}" + "".join(f"{medians[on].get(stage, 0.0):10.3f}"
                                           for on in medians))
        if device.type != "cuda":
            return
        from torch.profiler import ProfilerActivity, profile

        with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as profiled:
            build(args.device)
        waits = [event for event in profiled.key_averages()
                 if any(word in event.key for word in ("Synchronize", "Memcpy", "memcpy",
                                                       "aten::item", "aten::_local_scalar"))]
        print("Calls that wait for the GPU or copy (count, total CPU ms):")
        for event in sorted(waits, key=lambda e: -e.cpu_time_total)[:12]:
            print(f"  {event.key:<48} {event.count:7d} {event.cpu_time_total / 1000:9.1f}")
        print(profiled.key_averages().table(sort_by="cpu_time_total", row_limit=20))


def write_jpegs(folder: Path, count: int) -> None:
    import skimage.data

    photos = [Image.fromarray(np.asarray(getattr(skimage.data, name)())).convert("RGB")
              for name in PHOTOS]
    for index in range(count):
        photo = photos[index % len(photos)]
        variant = index // len(photos)
        width, height = photo.size
        left, top = (variant * 13) % (width // 5), (variant * 7) % (height // 5)
        part = photo.crop((left, top, left + 4 * width // 5, top + 4 * height // 5))
        if variant % 2:
            part = part.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
        part = part.resize((500, 375))
        (folder / f"{index % 16:02d}").mkdir(exist_ok=True)
        part.save(folder / f"{index % 16:02d}" / f"{index:06d}.jpg", quality=90)


def rate(count: int, run: Callable[[], object], device: torch.device) -> float:
    synchronise(device)
    started = time.perf_counter()
    run()
    synchronise(device)
    return count / (time.perf_counter() - started)


def mine_case(args: argparse.Namespace) -> None:
    import torchvision

    device = torch.device(args.device)
    model = torchvision.models.get_model("resnet50", weights=None).eval().to(device)
    preprocessing = Preprocessing(256, 224)
    with tempfile.TemporaryDirectory() as temporary:
        folder = Path(temporary)
        write_jpegs(folder, args.images)
        files = list_dataset(folder)
        decoded = [batch.images.to(device) for batch in batches(
            files, preprocessing, range(len(files)), batch_size=args.batch_size,
            workers=args.workers)]

        def bare() -> None:
            with torch.no_grad():
                for images in decoded:
                    model(laid_out(images, model))

        bare()  # warm-up
        bare_rate = rate(len(files), bare, device)
        results = {}
        for decode, workers in (("device", min(args.workers, 4)), ("cpu", args.workers)):
            def mined(decode: str = decode, workers: int = workers) -> None:
                mine(model, files, preprocessing, batch_size=args.batch_size, workers=workers,
                     device=device, decode=decode, progress=False)

            if decode == "device":
                mined()  # warm-up of nvJPEG and the resize kernels
            results[f"mine(), decode {decode}, {workers} workers"] = rate(len(files), mined,
                                                                         device)
    print(f"ResNet-50 at 224, 53 hooked convs, {len(files)} JPEGs (500x375), batch "
          f"{args.batch_size}; {machine(device)}")
    print(f"  {'bare forward (decoded batches)':<40} {bare_rate:9.1f} images/s")
    for name, value in results.items():
        print(f"  {name:<40} {value:9.1f} images/s   {value / bare_rate:.3f} of bare")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="what", required=True)
    one = sub.add_parser("single")
    one.add_argument("--device", default="cuda")
    one.add_argument("--builds", type=int, default=5)
    many = sub.add_parser("mine")
    many.add_argument("--device", default="cuda")
    many.add_argument("--images", type=int, default=4096)
    many.add_argument("--batch-size", type=int, default=256)
    many.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    args = parser.parse_args()
    single(args) if args.what == "single" else mine_case(args)


if __name__ == "__main__":
    main()
