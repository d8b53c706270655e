"""Does a dataset run's peak memory depend on the dataset's size? (Issue 12: ten times the
images, peak RSS within 100 MB.)

    PYTHONPATH=. python benchmarks/bench_memory.py [--images 40] [--factor 10] [--workers 2]

Makes ``--images`` and ``--images * --factor`` images from skimage's photos (the same recipe
as ``bench_dataset.py``), then, each in a fresh process so no peak leaks from one case into
the next, measures the peak RSS (the kernel's VmHWM of the main process; DataLoader workers
are separate processes and not counted) of

* the mining pass alone (``reportgen.dataset.mine.mine``, MobileNetV2, all 52 convs, batch 16,
  one torch thread, a resume state file as the CLI writes), and
* a whole ``reportgen build -m mobilenet_v2 --dataset DIR`` (mining, receptive fields, crops
  and sprite sheets, pages).

It prints both sizes and the difference. Not a test: a busy machine changes the figures.
"""
from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

_MINE = """
import sys, tempfile
from pathlib import Path
sys.path[:0] = [{root!r}, {root!r} + "/benchmarks"]
import torch
torch.set_num_threads(1)
from bench_dataset import model_and_preprocessing
from reportgen.dataset.files import list_dataset
from reportgen.dataset.mine import mine
model, preprocessing, _ = model_and_preprocessing()
state = Path(tempfile.mkdtemp()) / "state.pt"
mine(model, list_dataset(Path({folder!r})), preprocessing, batch_size=16, workers={workers},
     progress=False, state_file=state)
"""

_BUILD = """
import sys
sys.path.insert(0, {root!r})
from reportgen.cli import cli
try:
    cli(["build", "-m", "mobilenet_v2", "-w", {weights!r}, "--dataset", {folder!r},
         "-d", {site!r}, "--workers", "{workers}", "-q"])
except SystemExit as stop:
    if stop.code:
        raise
"""

_PEAK = """
for line in open("/proc/self/status"):
    if line.startswith("VmHWM"):
        print("PEAK", int(line.split()[1]) * 1024)
"""


def peak_of(code: str) -> int:
    """Bytes: the peak RSS of a fresh interpreter that runs ``code``."""
    done = subprocess.run([sys.executable, "-c", code + _PEAK], capture_output=True, text=True,
                          check=False)
    if done.returncode:
        raise SystemExit(f"case failed:\n{done.stderr[-2000:]}")
    return int(done.stdout.split("PEAK")[-1].split()[0])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=40)
    parser.add_argument("--factor", type=int, default=10)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    sys.path[:0] = [str(ROOT), str(ROOT / "benchmarks")]
    from bench_dataset import load_average, make_images, model_and_preprocessing

    weights = model_and_preprocessing()[2]
    weights = "IMAGENET1K_V1" if weights != "random" else "none"
    sizes = (args.images, args.images * args.factor)
    peaks: dict[str, list[int]] = {"mining pass": [], "whole build": []}
    with tempfile.TemporaryDirectory() as temporary:
        for size in sizes:
            folder = Path(temporary) / f"images{size}"
            folder.mkdir()
            make_images(folder, size)
            names = {"root": str(ROOT), "folder": str(folder), "workers": args.workers}
            peaks["mining pass"].append(peak_of(_MINE.format(**names)))
            peaks["whole build"].append(peak_of(_BUILD.format(
                **names, weights=weights, site=str(Path(temporary) / f"site{size}"))))
    print(f"MobileNetV2 ({weights}), {args.workers} decode workers, load average "
          f"{load_average()}")
    print(f"{'case':<12} {sizes[0]:>6} images {sizes[1]:>6} images   difference")
    for case, (small, large) in peaks.items():
        print(f"{case:<12} {small / 2**20:10.0f} MB {large / 2**20:10.0f} MB "
              f"{(large - small) / 2**20:+10.0f} MB")


if __name__ == "__main__":
    main()
