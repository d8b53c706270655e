"""How much the dataset pass's hooks cost next to a bare batched forward pass.

    PYTHONPATH=. python benchmarks/bench_dataset.py [--images 64] [--batch-size 16]
                                                    [--repeats 5] [--threads N] [--workers 2]
                                                    [--engine ray] [--ray-actors N]

Builds ~64 images from skimage's photos (crops, flips, scales) in a temporary folder, decodes
and preprocesses them once (MobileNetV2's own transforms, 224 px), then times, alternately
and after a warm-up, over the *same decoded batches*:

* bare:  ``model(batch)`` under ``torch.no_grad()``, no hooks;
* mined: the same forward with the dataset pass's hooks on all 52 conv layers folding every
  batch into the per-channel top-k and statistics (:class:`reportgen.dataset.mine.Miner`).

It prints images/s (medians) and mined/bare; the target is >= 0.85. Because other work on a
shared machine makes wall-clock ratios noisy, it also prints the share of the mined runs spent
inside the hook callbacks, which other load affects far less. For context it also times
``mine()`` end to end (decoding in ``--workers`` processes included).

``--engine ray`` adds the Ray engine on the same folder (a local Ray instance with all of this
machine's CPUs, ``--ray-actors`` actors of one CPU each): the seconds to start Ray, shown
apart; the pass's images/s (actors starting and loading the model included); and its steady
rate, from the first batch's result to the last. Other work on the
machine slows everything down, so the load average is printed too. Not a test: nothing here
fails on a slow machine.
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from reportgen.dataset.decode import Batch, batches  # noqa: E402
from reportgen.dataset.files import DatasetFiles, list_dataset  # noqa: E402
from reportgen.dataset.hooks import Miner  # noqa: E402
from reportgen.dataset.mine import MineOptions, mine  # noqa: E402
from reportgen.forward.device import laid_out  # noqa: E402
from reportgen.forward.hooks import ConvHooks, conv_layers  # noqa: E402
from reportgen.inputs.preprocess import Preprocessing  # noqa: E402

SAMPLES = ("astronaut", "coffee", "chelsea", "rocket", "camera", "horse", "brick", "grass")


def load_average() -> str:
    try:
        return " ".join(Path("/proc/loadavg").read_text().split()[:3])
    except OSError:
        return "n/a"


def make_images(folder: Path, count: int) -> None:
    import skimage.data

    pictures = [np.asarray(getattr(skimage.data, name)()) for name in SAMPLES]
    for index in range(count):
        picture = pictures[index % len(pictures)]
        if picture.dtype == bool:
            picture = picture.astype(np.uint8) * 255
        variant = index // len(pictures)
        height, width = picture.shape[:2]
        shrink = 1 + variant % 3
        top, left = (variant * 17) % (height // 4), (variant * 29) % (width // 4)
        part = picture[top: top + 3 * height // 4, left: left + 3 * width // 4]
        if variant % 2:
            part = part[:, ::-1]
        image = Image.fromarray(np.ascontiguousarray(part))
        image = image.resize((max(64, image.width // shrink), max(64, image.height // shrink)))
        (folder / f"{index % 4}").mkdir(exist_ok=True)
        image.save(folder / f"{index % 4}" / f"image{index:03d}.png")


def model_and_preprocessing() -> tuple[torch.nn.Module, Preprocessing, str]:
    from reportgen.inputs.models import load_model

    try:
        loaded = load_model("mobilenet_v2", "IMAGENET1K_V1")
        weights = "IMAGENET1K_V1"
    except Exception:  # noqa: BLE001 - no weights installed: random ones cost the same
        loaded = load_model("mobilenet_v2", "none")
        weights = "random"
    return loaded.module.eval(), Preprocessing.from_preset(loaded.preprocessing), weights


def time_bare(model: torch.nn.Module, decoded: list[Batch]) -> float:
    started = time.perf_counter()
    with torch.no_grad():
        for batch in decoded:
            model(laid_out(batch.images, model))
    return time.perf_counter() - started


class TimedMiner(Miner):
    """Adds up the seconds spent inside the hook callbacks: a load-independent view."""

    seconds = 0.0

    def __call__(self, name: str, call: int, module: torch.nn.Conv2d,
                 output: torch.Tensor) -> None:
        started = time.perf_counter()
        super().__call__(name, call, module, output)
        self.seconds += time.perf_counter() - started


def time_mined(model: torch.nn.Module, decoded: list[Batch],
               files: DatasetFiles) -> tuple[float, float]:
    """(wall seconds, of which seconds inside the hooks)."""
    options = MineOptions()
    miner = TimedMiner({}, k=options.k, rectify=options.rectify,
                       sample_size=options.sample_size, device=torch.device("cpu"))
    started = time.perf_counter()
    with ConvHooks(model, miner):
        model.eval()
        for batch in decoded:
            miner.run(model, batch, files)
    return time.perf_counter() - started, miner.seconds


def time_ray(model: torch.nn.Module, files: DatasetFiles, preprocessing: Preprocessing,
             args: argparse.Namespace) -> tuple[float, float, float]:
    """(Ray start-up s, pass s, steady images/s after the first batch's result)."""
    from reportgen.dataset.mine import MineProgress
    from reportgen.dataset.ray_engine import RaySettings, mine_ray

    seen: list[tuple[float, int]] = []

    def note(progress: MineProgress) -> None:
        seen.append((time.perf_counter(), progress.decoded))

    result = mine_ray(model, files, preprocessing, batch_size=args.batch_size,
                      settings=RaySettings(actors=args.ray_actors), progress=False,
                      on_batch=note)
    (first, first_done), (last, last_done) = seen[0], seen[-1]
    steady = (last_done - first_done) / (last - first) if last > first else float("nan")
    return result.startup_seconds, result.seconds, steady


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--images", type=int, default=256,
                        help="images per timed pass (the top-k fill up: 64 gives 0.785, 256 0.85)")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: default)")
    parser.add_argument("--workers", type=int, default=2, help="for the end-to-end mine()")
    parser.add_argument("--engine", choices=("local", "ray"), default="local",
                        help="ray: also time the Ray engine end to end")
    parser.add_argument("--ray-actors", type=int, default=1)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    model, preprocessing, weights = model_and_preprocessing()
    with tempfile.TemporaryDirectory() as temporary:
        folder = Path(temporary)
        make_images(folder, args.images)
        files = list_dataset(folder)
        decoded = list(batches(files, preprocessing, range(len(files)),
                               batch_size=args.batch_size, workers=0))
        count = sum(int(batch.images.shape[0]) for batch in decoded)
        time_bare(model, decoded[:1])
        time_mined(model, decoded[:1], files)
        bare, mined, hooks = [], [], []
        for _ in range(args.repeats):
            bare.append(time_bare(model, decoded))
            wall, inside = time_mined(model, decoded, files)
            mined.append(wall)
            hooks.append(inside)
        started = time.perf_counter()
        mine(model, files, preprocessing, batch_size=args.batch_size, workers=args.workers,
             progress=False)
        end_to_end = time.perf_counter() - started
        ray_figures = time_ray(model, files, preprocessing, args) if args.engine == "ray" else None
    bare_rate = count / statistics.median(bare)
    mined_rate = count / statistics.median(mined)
    print(f"MobileNetV2 ({weights} weights), {count} images at {preprocessing.crop} px, "
          f"batch {args.batch_size}, {len(conv_layers(model))} hooked conv layers, "
          f"{torch.get_num_threads()} torch threads, {os.cpu_count()} CPUs, "
          f"load average {load_average()}")
    print(f"bare forward:  {bare_rate:7.1f} images/s  (runs: "
          f"{', '.join(f'{t:.2f}' for t in bare)} s)")
    print(f"mined forward: {mined_rate:7.1f} images/s  (runs: "
          f"{', '.join(f'{t:.2f}' for t in mined)} s)")
    print(f"mined / bare:  {mined_rate / bare_rate:.3f}")
    share = statistics.median(h / m for h, m in zip(hooks, mined, strict=False))
    print(f"time inside the hooks: {100 * share:.1f}% of the mined runs "
          f"(so mined/bare would be {1 - share:.3f} with the forward itself unchanged)")
    print(f"mine() end to end with {args.workers} decode workers: "
          f"{count / end_to_end:.1f} images/s")
    if ray_figures is not None:
        startup, seconds, steady = ray_figures
        print(f"mine_ray() with {args.ray_actors} actor(s) of 1 CPU, local Ray on "
              f"{os.cpu_count()} CPUs: Ray start {startup:.1f} s (not counted); pass "
              f"{count / seconds:.1f} images/s ({seconds:.1f} s, actor start and model load "
              f"included); steady {steady:.1f} images/s (first batch result to last)")
        print(f"ray / local (pass): {count / seconds / (count / end_to_end):.2f}; "
              f"(steady): {steady / (count / end_to_end):.2f}")


if __name__ == "__main__":
    main()
