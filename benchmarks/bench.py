"""Benchmark reportgen against the seed post's recipe, and measure how its cost grows.

    PYTHONPATH=. python benchmarks/bench.py            # full run, a few minutes on 2 cores
    PYTHONPATH=. python benchmarks/bench.py --quick    # fewer repeats and cases, ~1-2 minutes

It prints ready-to-paste markdown tables (the README's "## Performance" section) and, with
``--json FILE``, the raw numbers. What it measures:

1. *Versus the seed*: the seed recipe (benchmarks/seed_recipe.py) and ``build_report`` run
   alternately in this process, both handed the same already-built VGG16 (random weights) and
   the same 224x224 astronaut, after one warm-up each; medians and their ratio.
2. *Cases*: each in a fresh subprocess, so that peak RSS (``ru_maxrss``) of one case cannot
   contaminate another: VGG16 at 224/512/1024, MobileNetV2 (offline ImageNet weights) and
   ResNet-50 at 224; per-stage breakdown, peak memory, the largest single activation.
3. *Whole command*: ``reportgen build --model mobilenet_v2`` against ``import torch,
   torchvision``, alternately, as subprocesses.
4. *Loading*: building on the meta device and assigning weights vs. plain construction.
5. *PNG*: the VGG16 grids encoded with 1 and 2 threads at compression levels 1, 6 and 9.
6. A CUDA case when ``torch.cuda.is_available()``.

Timings are wall-clock medians; the load average is printed with them because other work on
the machine slows everything down. Nothing here is a pass/fail test: tests never time things.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
STAGES = ("image", "model", "forward", "grids", "filters", "png", "html")
#: The promise against the seed recipe, in-process on VGG16 at 224x224 (issue 24).
SPEED_UP_TARGET = 15.0
MB = 1024 * 1024


# --------------------------------------------------------------------------------- helpers

def load_average() -> str:
    try:
        return " ".join(Path("/proc/loadavg").read_text().split()[:3])
    except OSError:
        return "n/a"


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    try:
        pages = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
        memory = f", {pages / 1024 ** 3:.0f} GiB RAM"
    except (ValueError, OSError):
        memory = ""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return f"{cpu}, {cores} cores{memory}, {platform.system()} {platform.release()}"


def median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def child_env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), *filter(None, [env.get("PYTHONPATH")])])
    return env


def peak_rss_bytes() -> int:
    """ru_maxrss is KiB on Linux, bytes on macOS.

    On Linux a child's ru_maxrss also counts the parent's RSS at the fork (the kernel keeps
    the larger of the pre-exec and post-exec peaks), so the workers report VmHWM, the peak of
    their own address space since exec, when /proc has it.
    """
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak if sys.platform == "darwin" else peak * 1024


def _status_kib(field: str) -> int | None:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except OSError:
        return None
    return None


def reset_peak_rss() -> bool:
    """Linux can reset VmHWM, so one build's own peak is measurable after model construction."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def quiet_logging() -> None:
    import logging

    logging.getLogger("reportgen").setLevel(logging.ERROR)


# --------------------------------------------------------------------------------- workers

def worker_case(model: str, size: int, device: str, repeats: int) -> dict[str, Any]:
    """One case in a fresh process: build the model once, then report ``repeats + 1`` times."""
    import gc

    import numpy as np
    import skimage.data
    import torch
    import torchvision

    from reportgen.build import build_report

    quiet_logging()
    image = np.ascontiguousarray(skimage.data.astronaut())
    started = time.perf_counter()
    if model == "mobilenet_v2":  # offline ImageNet weights: loading is part of the build
        target: Any = "mobilenet_v2"
        weights: Any = "IMAGENET1K_V1"
        construct = None
    else:
        torch.manual_seed(0)
        target = torchvision.models.get_model(model, weights=None)
        weights = None
        construct = time.perf_counter() - started
        parameters = sum(p.numel() for p in target.parameters())
    gc.collect()
    rss_before = (_status_kib("VmRSS") or 0) * 1024
    runs = []
    build_peak: int | None = None
    process_peak = (_status_kib("VmHWM") or 0) * 1024  # imports and model construction
    with tempfile.TemporaryDirectory() as folder:
        for _ in range(repeats + 1):  # the first build is cold: lazy imports, template compile
            can_reset = reset_peak_rss()  # VmHWM := current RSS; it then tracks this build
            started, cpu = time.perf_counter(), time.process_time()
            report = build_report(model=target, weights=weights, image=image,
                                  site_dir=Path(folder) / "site", size=size, device=device)
            wall = time.perf_counter() - started
            runs.append({"wall": wall, "cpu": time.process_time() - cpu,
                         "timings": dict(report.timings), "encode": report.encode_seconds})
            if can_reset:
                hwm = (_status_kib("VmHWM") or 0) * 1024
                build_peak = max(build_peak or 0, hwm - rss_before)
                process_peak = max(process_peak, hwm)
        largest = max(int(np.prod(layer.stats.shape)) * 4 for layer in report.layers)
        if construct is None:
            parameters = int(report.manifest["model"]["parameters"])
        files = sum(p.stat().st_size for p in (Path(folder) / "site").rglob("*") if p.is_file())
    warm = runs[1:] or runs
    return {
        "model": model, "size": size, "device": device, "parameters": parameters,
        "layers": len(report.layers), "construct": construct,
        "load": median([r["timings"].get("model", 0.0) for r in warm]),
        "cold": runs[0]["wall"], "wall": median([r["wall"] for r in warm]),
        "cpu": median([r["cpu"] for r in warm]),
        "stages": {stage: median([r["timings"].get(stage, 0.0) for r in warm]) for stage in STAGES},
        "encode": median([r["encode"] for r in warm]),
        "peak_rss": process_peak if build_peak is not None else peak_rss_bytes(),
        "ru_maxrss": peak_rss_bytes(), "rss_before": rss_before, "build_peak": build_peak,
        "largest_activation": largest, "site_bytes": files, "load_average": load_average(),
    }


def worker_loading(repeats: int) -> dict[str, Any]:
    """Pretrained loading: the meta-device path vs building with random init, then loading."""
    import torch
    import torchvision

    from reportgen.inputs import weightfiles as weightfiles
    from reportgen.inputs.models import load_model

    quiet_logging()
    url = torchvision.models.MobileNet_V2_Weights.IMAGENET1K_V1.url
    located = weightfiles.find_local(url)
    result: dict[str, Any] = {"load_average": load_average()}
    if located is not None:
        meta, plain = [], []
        load_model("mobilenet_v2", "IMAGENET1K_V1")  # warm the file cache
        for _ in range(repeats):
            started = time.perf_counter()
            load_model("mobilenet_v2", "IMAGENET1K_V1")
            meta.append(time.perf_counter() - started)
            started = time.perf_counter()
            module = torchvision.models.mobilenet_v2(weights=None)
            module.load_state_dict(torch.load(located.path, weights_only=True))
            plain.append(time.perf_counter() - started)
        result["mobilenet_v2"] = {"meta": median(meta), "plain": median(plain)}
    for name in ("resnet50", "vgg16"):  # no weights offline: compare the constructions alone
        meta, plain = [], []
        for _ in range(repeats):
            started = time.perf_counter()
            with torch.device("meta"):
                torchvision.models.get_model(name, weights=None)
            meta.append(time.perf_counter() - started)
            started = time.perf_counter()
            torchvision.models.get_model(name, weights=None)
            plain.append(time.perf_counter() - started)
        result[name] = {"meta": median(meta), "plain": median(plain)}
    return result


def run_worker(kind: str, *arguments: str) -> dict[str, Any]:
    command = [sys.executable, str(Path(__file__).resolve()), "--worker", kind, *arguments]
    done = subprocess.run(command, capture_output=True, text=True, env=child_env(), check=False)
    if done.returncode != 0:
        raise RuntimeError(f"{shlex.join(command)} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


# --------------------------------------------------------------------------------- sections

def versus_seed(repeats: int, folder: Path) -> dict[str, Any]:
    """The seed recipe and build_report alternately, same built VGG16, same picture."""
    import numpy as np
    import skimage.data
    import torch
    import torchvision

    sys.path.insert(0, str(HERE))
    from reportgen.build import build_report
    from seed_recipe import seed_report

    quiet_logging()
    image = np.ascontiguousarray(skimage.data.astronaut())
    torch.manual_seed(0)
    started = time.perf_counter()
    net = torchvision.models.vgg16(weights=None)
    construct = time.perf_counter() - started
    seed_times, ours, stages, encode, seed_cpu, our_cpu = [], [], [], [], [], []
    for attempt in range(repeats + 1):  # attempt 0 is the warm-up of both
        started, cpu = time.perf_counter(), time.process_time()
        seed_report(net, image, folder / "seed", size=224)
        seed_seconds, seed_cpu_seconds = time.perf_counter() - started, time.process_time() - cpu
        started, cpu = time.perf_counter(), time.process_time()
        report = build_report(model=net, weights=None, image=image, site_dir=folder / "site")
        our_seconds, our_cpu_seconds = time.perf_counter() - started, time.process_time() - cpu
        if attempt:
            seed_times.append(seed_seconds)
            ours.append(our_seconds)
            seed_cpu.append(seed_cpu_seconds)
            our_cpu.append(our_cpu_seconds)
            stages.append(report.timings)
            encode.append(report.encode_seconds)
    return {
        "construct": construct, "seed": seed_times, "reportgen": ours,
        "seed_median": median(seed_times), "reportgen_median": median(ours),
        "ratio": median(seed_times) / median(ours),
        "seed_cpu": median(seed_cpu), "reportgen_cpu": median(our_cpu),
        "stages": {stage: median([s.get(stage, 0.0) for s in stages]) for stage in STAGES},
        "encode": median(encode), "load_average": load_average(),
        "site": str(folder / "site"),
    }


def whole_command(repeats: int, folder: Path) -> dict[str, Any]:
    env = child_env()
    imports = [sys.executable, "-c", "import torch, torchvision"]
    build = [sys.executable, "-m", "reportgen", "build", "--model", "mobilenet_v2",
             "--image", "coffee", "-d", str(folder / "cli-site"), "-q"]

    def timed(command: list[str]) -> float:
        started = time.perf_counter()
        subprocess.run(command, env=env, check=True, stdout=subprocess.DEVNULL,
                       stderr=subprocess.DEVNULL)
        return time.perf_counter() - started

    def children_cpu() -> float:
        usage = resource.getrusage(resource.RUSAGE_CHILDREN)
        return usage.ru_utime + usage.ru_stime

    timed(imports), timed(build)  # warm the page cache
    import_times, build_times = [], []
    import_cpu, build_cpu = [], []
    for _ in range(repeats):
        before = children_cpu()
        import_times.append(timed(imports))
        middle = children_cpu()
        build_times.append(timed(build))
        import_cpu.append(middle - before)
        build_cpu.append(children_cpu() - middle)
    return {"import": median(import_times), "build": median(build_times),
            "import_cpu": median(import_cpu), "build_cpu": median(build_cpu),
            "imports": import_times, "builds": build_times,
            "budget": median(import_times) + 1.5, "load_average": load_average()}


def png_levels(site: Path) -> list[dict[str, Any]]:
    """Re-encode the VGG16 report's grids: levels 1/6/9, one thread vs two."""
    import numpy as np
    from PIL import Image

    from reportgen.pictures.pngio import PngWriter

    pictures = [np.asarray(Image.open(path)) for path in sorted((site / "img").glob("*.png"))]
    rows = []
    with tempfile.TemporaryDirectory() as folder:
        for level in (1, 6, 9):
            for workers in (1, 2):
                started = time.perf_counter()
                with PngWriter(level, workers=workers) as writer:
                    for index, picture in enumerate(pictures):
                        writer.submit(picture, Path(folder) / f"{index}.png")
                wall = time.perf_counter() - started
                size = sum(p.stat().st_size for p in Path(folder).glob("*.png"))
                rows.append({"level": level, "workers": workers, "wall": wall,
                             "bytes": size, "files": len(pictures)})
    return rows


# --------------------------------------------------------------------------------- output

def markdown(results: dict[str, Any]) -> str:
    out: list[str] = []
    add = out.append
    add(f"Machine: {results['machine']}; Python {results['python']}, torch {results['torch']}, "
        f"torchvision {results['torchvision']}. Load average at start {results['load_start']}, "
        f"at end {results['load_end']}.")
    add(f"Command: `{results['command']}` ({results['mode']}).")
    add("")
    seed = results.get("versus_seed")
    if seed:
        add("**VGG16 at 224×224, full report vs. the seed recipe** (same built model with random "
            f"weights, medians of {len(seed['seed'])} alternating runs after a warm-up; "
            f"building VGG16 itself, random init: {seed['construct']:.2f} s, not included)")
        add("")
        add("| | wall s | CPU s (all threads) |")
        add("|---|---:|---:|")
        add(f"| seed recipe (13 activation figures + first-layer filters) | {seed['seed_median']:.2f} | {seed['seed_cpu']:.2f} |")
        add(f"| reportgen (13 grids, 13 filter figures, input, HTML, manifest) | {seed['reportgen_median']:.2f} | {seed['reportgen_cpu']:.2f} |")
        add(f"| **speed-up** | **{seed['ratio']:.1f}×** | {seed['seed_cpu'] / seed['reportgen_cpu']:.1f}× |")
        add("")
        add(f"Side by side, run by run (load average {seed['load_average']} at the end): "
            + "; ".join(f"{s:.2f} s vs {r:.2f} s ({s / r:.1f}×)"
                        for s, r in zip(seed["seed"], seed["reportgen"], strict=True))
            + f". Target: at least {SPEED_UP_TARGET:.0f}× "
            f"({'met' if seed['ratio'] >= SPEED_UP_TARGET else 'MISSED'}).")
        stages = seed["stages"]
        add("")
        add("reportgen's stages (wall seconds, median): " + ", ".join(
            f"{name} {stages[name]:.3f}" for name in STAGES if name != "model")
            + f"; PNG encoding on worker threads {seed['encode']:.3f} s of thread time, "
            "overlapping the forward pass (`png` is only the wait for the last file).")
        add("")
    cases = results.get("cases") or []
    if cases:
        add("**How cost grows** (each case a fresh process; report time is the median of warm "
            "builds, without building the model; peak RSS is the whole process since exec, "
            "model included (VmHWM: a child's ru_maxrss also counts its parent's RSS at the "
            "fork); the build's own peak is above the RSS just before it)")
        add("")
        add("| case | params | conv calls | model s | report s | report CPU s | forward | grids "
            "| filters | PNG encode | html | peak RSS MB | build's own peak MB "
            "| largest activation MB |")
        add("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
        for case in cases:
            model_s = case["construct"] if case["construct"] is not None else case["load"]
            how = "init" if case["construct"] is not None else "load"
            report_s = case["wall"] - case["stages"]["model"]
            stages = case["stages"]
            own = "n/a" if case["build_peak"] is None else f"{case['build_peak'] / MB:.0f}"
            add(f"| {case['model']} {case['size']}² {case['device']} | {case['parameters'] / 1e6:.1f} M "
                f"| {case['layers']} | {model_s:.2f} ({how}) | {report_s:.2f} | {case['cpu']:.2f} "
                f"| {stages['forward']:.2f} | {stages['grids']:.2f} | {stages['filters']:.2f} "
                f"| {case['encode']:.2f} | {stages['html']:.2f} | {case['peak_rss'] / MB:.0f} "
                f"| {own} | {case['largest_activation'] / MB:.0f} |")
        by = {(c["model"], c["size"], c["device"]): c for c in cases}
        small, large = by.get(("vgg16", 224, "cpu")), by.get(("vgg16", 1024, "cpu"))
        if small and large:
            growth = (large["peak_rss"] - small["peak_rss"]) / MB
            limit = 3 * large["largest_activation"] / MB
            add("")
            add(f"Memory, VGG16: peak RSS at 1024² minus at 224² = {growth:.0f} MB; the target is "
                f"under 3 × the largest single activation at 1024² = {limit:.0f} MB "
                f"({'met' if growth < limit else 'MISSED'}).")
        add("")
    command = results.get("whole_command")
    if command:
        add(f"**Whole command** `reportgen build --model mobilenet_v2 --image coffee` (medians of "
            f"{len(command['builds'])} alternating runs): {command['build']:.2f} s; "
            f"`python -c 'import torch, torchvision'`: {command['import']:.2f} s; target ≤ import "
            f"+ 1.5 s = {command['budget']:.2f} s "
            f"({'met' if command['build'] <= command['budget'] else 'MISSED'}). CPU time: "
            f"{command['build_cpu']:.2f} s against {command['import_cpu']:.2f} s.")
        add("")
    loading = results.get("loading")
    if loading:
        add("**Model construction** (median seconds): pretrained = built on the meta device, "
            "weights assigned; plain = random init first")
        add("")
        add("| model | meta device | plain |")
        add("|---|---:|---:|")
        for name in ("mobilenet_v2", "resnet50", "vgg16"):
            if name in loading:
                what = "load IMAGENET1K_V1" if name == "mobilenet_v2" else "construct only"
                add(f"| {name} ({what}) | {loading[name]['meta']:.3f} | {loading[name]['plain']:.3f} |")
        add("")
    png = results.get("png")
    if png:
        add(f"**PNG encoding** of the VGG16 224² report's {png[0]['files']} pictures")
        add("")
        add("| compress level | 1 thread s | 2 threads s | total MB |")
        add("|---:|---:|---:|---:|")
        for level in (1, 6, 9):
            rows = {r["workers"]: r for r in png if r["level"] == level}
            add(f"| {level} | {rows[1]['wall']:.2f} | {rows[2]['wall']:.2f} "
                f"| {rows[1]['bytes'] / MB:.1f} |")
        add("")
    if not results.get("cuda"):
        add("No CUDA GPU on this machine: the `--device cuda` case was not run.")
    return "\n".join(out)


# --------------------------------------------------------------------------------- main

def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true",
                        help="2 repeats; VGG16 224/1024 and MobileNetV2 only; no ResNet-50/512.")
    parser.add_argument("--repeats", type=int, default=None, help="Timed runs per measurement.")
    parser.add_argument("--only", default=None,
                        help="Comma-separated sections: seed,cases,command,loading,png.")
    parser.add_argument("--json", type=Path, default=None, help="Also write the raw numbers here.")
    parser.add_argument("--worker", nargs="+", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    if args.worker:
        kind, *rest = args.worker
        if kind == "case":
            result = worker_case(rest[0], int(rest[1]), rest[2], int(rest[3]))
        else:
            result = worker_loading(int(rest[0]))
        print(json.dumps(result))
        return 0

    import torch
    import torchvision

    repeats = args.repeats or (2 if args.quick else 5)
    sections = set((args.only or "seed,cases,command,loading,png").split(","))
    results: dict[str, Any] = {
        "machine": machine(), "python": platform.python_version(),
        "torch": torch.__version__, "torchvision": torchvision.__version__,
        "load_start": load_average(), "mode": "quick" if args.quick else "full",
        "command": shlex.join(["python", "benchmarks/bench.py", *(argv or sys.argv[1:])]),
    }
    say = lambda text: print(f"[{time.strftime('%H:%M:%S')} load {load_average()}] {text}",  # noqa: E731
                             file=sys.stderr, flush=True)
    with tempfile.TemporaryDirectory() as name:
        folder = Path(name)
        if "seed" in sections:
            say("seed recipe vs build_report, VGG16 224 ...")
            results["versus_seed"] = seed = versus_seed(repeats, folder)
            for seconds, ours in zip(seed["seed"], seed["reportgen"], strict=True):
                say(f"  seed {seconds:.2f} s | reportgen in-process {ours:.2f} s | "
                    f"{seconds / ours:.1f}x")
            say(f"  medians: seed {seed['seed_median']:.2f} s, reportgen "
                f"{seed['reportgen_median']:.2f} s, {seed['ratio']:.1f}x (target "
                f"{SPEED_UP_TARGET:.0f}x)")
            if "png" in sections:
                say("PNG levels ...")
                results["png"] = png_levels(Path(seed["site"]))
        cases = [("vgg16", 224), ("vgg16", 1024), ("mobilenet_v2", 224)] if args.quick else \
            [("vgg16", 224), ("vgg16", 512), ("vgg16", 1024), ("mobilenet_v2", 224),
             ("resnet50", 224)]
        devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
        results["cuda"] = torch.cuda.is_available()
        if "cases" in sections:
            results["cases"] = []
            for device in devices:
                for model, size in cases if device == "cpu" else [("vgg16", 224)]:
                    say(f"case {model} {size} {device} ...")
                    case = run_worker("case", model, str(size), device,
                                      str(max(1, repeats - 1) if size > 512 else repeats))
                    results["cases"].append(case)
                    say(f"  {case['wall']:.2f} s, peak {case['peak_rss'] / MB:.0f} MB")
        if "command" in sections:
            say("whole command vs import torch, torchvision ...")
            results["whole_command"] = whole_command(repeats, folder)
        if "loading" in sections:
            say("meta-device loading vs plain construction ...")
            results["loading"] = run_worker("loading", str(repeats))
    results["load_end"] = load_average()
    if args.json:
        args.json.write_text(json.dumps(results, indent=1, sort_keys=True) + "\n")
    print(markdown(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
