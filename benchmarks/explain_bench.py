"""Measure reportgen.explain: Grad-CAM cost and memory, feature visualisation speed.

    PYTHONPATH=. python benchmarks/explain_bench.py attribution     # ~1 minute on 2 cores
    PYTHONPATH=. python benchmarks/explain_bench.py featurevis      # 16 channels, defaults:
                                                                    # several minutes
    PYTHONPATH=. python benchmarks/explain_bench.py featurevis --threads 1 --channels 4
    PYTHONPATH=. python benchmarks/explain_bench.py featurevis --device cuda --channels 0
                                                    # a whole layer (384 channels) on a GPU

MobileNetV2 with its offline ImageNet weights, coffee at 224x224. Timings are wall-clock
medians of alternating runs, with the load average, since other work on the machine slows
everything down. Peak memory is measured in a fresh subprocess per mode: glibc is told to
give large blocks back to the system at once, the op runs once to warm up, the kernel's peak
RSS (VmHWM) is reset, and the op's peak above the RSS it started from is reported. The
figures measured so far are in the README (Performance), not in the modules' docstrings.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

MB = 1024 * 1024
LAYER = "features.10.conv.1.0"


def load_average() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


def _setup() -> tuple:
    import torch

    from reportgen.inputs.images import load_image
    from reportgen.inputs.models import load_model
    from reportgen.inputs.preprocess import Preprocessing

    loaded = load_model("mobilenet_v2", "IMAGENET1K_V1")
    pre = Preprocessing.from_preset(loaded.preprocessing)
    batch = pre(load_image("coffee").rgb).to(memory_format=torch.channels_last)
    return loaded, pre, batch


def _ops(loaded: object, batch: object) -> dict[str, Callable[[], object]]:
    import torch

    from reportgen.explain.attribution import attribute

    model = loaded.module.eval()

    def plain() -> object:  # what build_report's forward pass does
        with torch.inference_mode():
            return model(batch)

    def with_graph() -> object:  # a forward that keeps what any backward needs
        return model(batch.detach().requires_grad_(True))

    def gradcam() -> object:
        return attribute(model, batch)

    return {"forward": plain, "forward with autograd": with_graph, "attribute (52 layers)": gradcam}


def _status(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024
    raise KeyError(field)


def peak_child(mode: str) -> None:
    """Run in a subprocess: print the op's peak RSS above its starting RSS, in bytes."""
    import gc

    loaded, _, batch = _setup()
    op = _ops(loaded, batch)[mode]
    result = op()
    del result
    gc.collect()
    Path("/proc/self/clear_refs").write_text("5")  # reset VmHWM to the current RSS
    start = _status("VmRSS")
    result = op()  # kept alive until the peak is read
    print(json.dumps({"peak_above_start": _status("VmHWM") - start}))
    del result


def attribution(repeats: int, threads: int | None) -> None:
    import torch

    if threads:
        torch.set_num_threads(threads)

    from reportgen.explain.attribution import attribute
    from reportgen.forward.hooks import conv_layers

    loaded, _, batch = _setup()
    kept = {}

    def size_of(name: str, call: int, module: object, output: torch.Tensor) -> None:
        kept[name] = output.numel() * output.element_size()

    from reportgen.forward.hooks import ConvHooks

    with ConvHooks(loaded.module, size_of) as hooks:
        hooks.run(batch)
    total = sum(kept.values())
    print(f"MobileNetV2, 224x224, {len(kept)} conv layers: activations kept for the backward "
          f"{total / MB:.1f} MiB (4 bytes x {total // 4:,} values), gradients as much again")
    ops = _ops(loaded, batch)
    times: dict[str, list[float]] = {name: [] for name in ops}
    for op in ops.values():
        op()  # warm-up
    for _ in range(repeats):
        for name, op in ops.items():
            started = time.perf_counter()
            op()
            times[name].append(time.perf_counter() - started)
    print(f"torch threads {torch.get_num_threads()}, load average {load_average()}")
    base = statistics.median(times["forward"])
    for name, values in times.items():
        median = statistics.median(values)
        print(f"  {name:<24} median {median * 1000:7.1f} ms  min {min(values) * 1000:7.1f} ms"
              f"  ({median / base:.1f}x forward)")
    env = {**os.environ, "MALLOC_MMAP_THRESHOLD_": "65536", "MALLOC_TRIM_THRESHOLD_": "0"}
    for mode in ops:
        out = subprocess.run([sys.executable, __file__, "_peak", mode], env=env, check=True,
                             capture_output=True, text=True).stdout
        peak = json.loads(out.strip().splitlines()[-1])["peak_above_start"]
        print(f"  peak RSS above start, {mode:<24} {peak / MB:6.1f} MiB")
    assert len(attribute(loaded.module, batch).layers) == len(conv_layers(loaded.module))


def featurevis(channels: int, steps: int, size: int, threads: int | None,
               batch_size: int | None, device: str) -> None:
    import torch

    from reportgen.explain.featurevis import batch_size_for, in_batches, visualise
    from reportgen.explain.tap import layer_channels

    loaded, pre, _ = _setup()
    wanted = list(range(channels or layer_channels(loaded.module, LAYER)))
    batch = batch_size or batch_size_for(device)
    card = torch.cuda.get_device_name() if device.startswith("cuda") else "CPU"
    print(f"{card}, torch threads {threads or torch.get_num_threads()}, batch size {batch}, "
          f"load average before {load_average()}")
    if device.startswith("cuda"):  # CUDA's start-up and first kernels, not counted
        visualise(loaded.module, LAYER, wanted[:2], preprocessing=pre, steps=2, size=size,
                  device=device)
    started, cpu = time.perf_counter(), time.process_time()
    made = in_batches(wanted, batch, lambda chunk, size_now: visualise(
        loaded.module, LAYER, chunk, preprocessing=pre, steps=steps, size=size,
        threads=threads, batch_size=size_now, device=device))
    wall, used = time.perf_counter() - started, time.process_time() - cpu
    print(f"{LAYER}: {channels} channels, {steps} steps, {size} px: {wall:.1f} s wall, "
          f"{wall / channels:.2f} s per channel, {used / channels:.2f} s CPU per channel; "
          f"load average after {load_average()}")
    print("objectives:", " ".join(f"{v.objective:.3f}" for v in made))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="what", required=True)
    att = sub.add_parser("attribution")
    att.add_argument("--repeats", type=int, default=7)
    att.add_argument("--threads", type=int, default=None)
    vis = sub.add_parser("featurevis")
    vis.add_argument("--channels", type=int, default=16, help="0: the whole layer")
    vis.add_argument("--steps", type=int, default=512)
    vis.add_argument("--size", type=int, default=128)
    vis.add_argument("--threads", type=int, default=None)
    vis.add_argument("--batch-size", type=int, default=None,
                     help="default: what a build uses on the device (4 on the CPU, 256 on a GPU)")
    vis.add_argument("--device", default="cpu")
    peak = sub.add_parser("_peak")
    peak.add_argument("mode")
    args = parser.parse_args()
    if args.what == "attribution":
        attribution(args.repeats, args.threads)
    elif args.what == "featurevis":
        featurevis(args.channels, args.steps, args.size, args.threads, args.batch_size,
                   args.device)
    else:
        peak_child(args.mode)


if __name__ == "__main__":
    main()
