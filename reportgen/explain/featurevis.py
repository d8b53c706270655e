"""Feature visualisation: for each channel, the picture that makes its mean activation largest.

Gradient ascent on a Fourier-parameterised image (:mod:`.param`) seen through random
transforms (:mod:`.transforms`), as Lucid and Lucent do it. Many channels are optimised in
one batch (one image per channel, the loss is the sum of each image's own channel mean) and
the forward pass stops at the layer (:mod:`.tap`), so a mid-network layer costs a fraction
of the whole network per step.

``benchmarks/explain_bench.py featurevis`` measures the cost; its figures (per channel, per
thread count, batch sizes, what folding BatchNorm saves) are in the README (Performance).
"""
from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from reportgen.errors import ReportError
from reportgen.explain.folding import fold_batchnorm
from reportgen.explain.objectives import ChannelObjective, channel
from reportgen.explain.param import FourierImage
from reportgen.explain.tap import LayerTap, layer_channels, split_layer, untouched
from reportgen.explain.transforms import TRANSFORMS_VERSION, TransformSpec, apply, draw_matrices
from reportgen.inputs.preprocess import Preprocessing
from reportgen.options import DEFAULT_FEATURE_VIS_SIZE, DEFAULT_FEATURE_VIS_STEPS

DEFAULT_LR = 0.05
CHANNELS_PER_BATCH = 4  # measured: per image, 4 beat 16 (cache-sized activations)
#: On a GPU one image per channel keeps it busy only hundreds at a time (issue 14: batches
#: of 256 or more); :func:`in_batches` halves a batch that does not fit in its memory.
GPU_CHANNELS_PER_BATCH = 256

Progress = Callable[[str], None]


@dataclass(frozen=True)
class FeatureVisSettings:
    """Everything that decides the pixels, so it can key a cache and go into a manifest."""

    steps: int = DEFAULT_FEATURE_VIS_STEPS
    size: int = DEFAULT_FEATURE_VIS_SIZE
    lr: float = DEFAULT_LR
    seed: int = 0
    rectify: bool = False
    input_size: int = 224
    channels: int = 3  # the model's input channels: 1 sees the picture grey
    mean: tuple[float, ...] = (0.485, 0.456, 0.406)
    std: tuple[float, ...] = (0.229, 0.224, 0.225)
    transforms_version: int = TRANSFORMS_VERSION

    @classmethod
    def of(cls, preprocessing: Preprocessing, **settings: Any) -> FeatureVisSettings:
        made = cls(input_size=int(preprocessing.crop), channels=int(preprocessing.channels),
                   mean=tuple(float(v) for v in preprocessing.mean),
                   std=tuple(float(v) for v in preprocessing.std), **settings)
        made.check()
        return made

    def check(self) -> None:
        for name in ("steps", "size", "input_size"):
            if getattr(self, name) < 1:
                raise ReportError(f"Feature visualisation {name} must be at least 1, "
                                  f"not {getattr(self, name)}.")
        if not self.lr > 0:
            raise ReportError("Feature visualisation learning rate must be positive, "
                              f"not {self.lr}.")

    def shown(self, rgb: torch.Tensor) -> torch.Tensor:
        """(N, 3, H, W) RGB in [0, 1] as the model's channels see it: grey (as the report's
        input, ITU-R 601 luma) for a 1-channel model, and still three channels for a picture."""
        if self.channels != 1:
            return rgb
        from torchvision.transforms import functional as TF

        grey: torch.Tensor = TF.rgb_to_grayscale(rgb, num_output_channels=3)
        return grey

    def model_input(self, rgb: torch.Tensor) -> torch.Tensor:
        """(N, 3, H, W) RGB in [0, 1] as the model takes it: its channels, normalised."""
        if self.channels == 1:
            rgb = self.shown(rgb)[:, :1]
        mean = torch.tensor(self.mean, device=rgb.device).view(1, -1, 1, 1)
        std = torch.tensor(self.std, device=rgb.device).view(1, -1, 1, 1)
        return ((rgb - mean) / std).contiguous(memory_format=torch.channels_last)

    def describe(self) -> dict[str, Any]:
        record = asdict(self)
        record["mean"], record["std"] = list(self.mean), list(self.std)
        return record


@dataclass(frozen=True)
class Visualisation:
    """One channel's picture and how strongly it drives the channel."""

    layer: str
    channel: int
    picture: np.ndarray = field(repr=False)  # (size, size, 3) uint8
    #: Mean of the channel's map (rectified if asked) with ``picture`` itself as input:
    #: resized to the input size and normalised, no random transforms.
    objective: float


def visualise(module: nn.Module, layer: str, channels: Sequence[int], *,
              preprocessing: Preprocessing, steps: int = DEFAULT_FEATURE_VIS_STEPS,
              size: int = DEFAULT_FEATURE_VIS_SIZE, lr: float = DEFAULT_LR, seed: int = 0,
              rectify: bool = False, batch_size: int = CHANNELS_PER_BATCH,
              device: str | torch.device = "cpu", threads: int | None = None,
              progress: Progress | None = None) -> list[Visualisation]:
    """One :class:`Visualisation` per channel, in the order given.

    ``layer`` is a conv's module path (``name@2`` for its second call); ``preprocessing``
    gives the input size, mean and std. The model is left as found: same parameters, mode,
    device and ``requires_grad`` flags, no hooks. Deterministic for a seed on the CPU; each
    channel's random start and transforms depend on (seed, channel) only, so a channel gets
    the same picture in any batch, up to floating-point differences between batch sizes.
    ``threads`` sets torch's intra-op threads meanwhile (None leaves them): on two cores
    shared with other work, one thread was steadier and often faster than two.
    """
    settings = FeatureVisSettings.of(preprocessing, steps=steps, size=size, lr=lr, seed=seed,
                                     rectify=rectify)
    return visualise_with(module, layer, channels, settings, batch_size=batch_size,
                          device=device, threads=threads, progress=progress)


def visualise_with(module: nn.Module, layer: str, channels: Sequence[int],
                   settings: FeatureVisSettings, *, batch_size: int = CHANNELS_PER_BATCH,
                   device: str | torch.device = "cpu", threads: int | None = None,
                   progress: Progress | None = None,
                   prepared: PreparedLayer | None = None) -> list[Visualisation]:
    """:func:`visualise` with the settings as one object (what the cache keys on).

    ``prepared``: the layer made ready once by a caller that visualises it in several calls
    (then ``device`` and ``threads`` are the ones it was prepared with)."""
    objectives = [channel(layer, c) for c in channels]
    if prepared is not None:
        return prepared.visualise(objectives, settings, batch_size=batch_size,
                                  progress=progress)
    with PreparedLayer(module, layer, device=device, threads=threads) as made:
        return made.visualise(objectives, settings, batch_size=batch_size, progress=progress)


class PreparedLayer:
    """One layer made ready for feature visualisation once, for any number of batches.

    The model on its device in eval mode, and its stand-in with BatchNorm folded (one
    ``torch.fx`` trace, :mod:`.folding`), are made on the first call of :meth:`visualise`
    and kept until the ``with`` block ends, which leaves the model as it was found (also
    torch's random state and threads). Nothing is traced for a layer whose pictures all come
    from the cache."""

    def __init__(self, module: nn.Module, layer: str, *, device: str | torch.device = "cpu",
                 threads: int | None = None) -> None:
        self.module = module
        self.layer = layer
        self.device = torch.device(device)
        self.threads = threads
        self._stack = ExitStack()
        self._models: tuple[nn.Module, nn.Module] | None = None  # (the model, its stand-in)

    def __enter__(self) -> PreparedLayer:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._models = None
        self._stack.close()

    def visualise(self, objectives: Sequence[ChannelObjective], settings: FeatureVisSettings,
                  *, batch_size: int = CHANNELS_PER_BATCH,
                  progress: Progress | None = None) -> list[Visualisation]:
        """One :class:`Visualisation` per objective, in the order given."""
        settings.check()
        other = [o.layer for o in objectives if o.layer != self.layer]
        if other:
            raise ReportError(f"An objective of layer {other[0]} cannot be visualised with "
                              f"layer {self.layer} prepared.")
        count = layer_channels(self.module, self.layer)
        wanted = [int(o.channel) for o in objectives]
        bad = [c for c in wanted if not 0 <= c < count]
        if bad:
            raise ReportError(f"Layer {self.layer} has channels 0-{count - 1}; {bad[0]} is out "
                              "of range.")
        if batch_size < 1:
            raise ReportError(f"Batch size must be at least 1, not {batch_size}.")
        if not wanted:
            return []
        say = progress or (lambda message: None)
        pictures: list[np.ndarray] = []
        model, fast = self._ready()
        with LayerTap(fast, self.layer) as tap:
            for start in range(0, len(wanted), batch_size):
                batch = list(objectives[start:start + batch_size])
                say(f"Feature visualisation of {self.layer}: channels {start + 1}-"
                    f"{start + len(batch)} of {len(wanted)}, {settings.steps} steps")
                pictures += list(_optimise(tap, batch, settings, self.device))
        with LayerTap(model, self.layer) as tap:  # the caller's model says how well it did
            achieved = _objectives(tap, pictures, wanted, settings, self.device)
        return [Visualisation(self.layer, c, p, o) for c, p, o
                in zip(wanted, pictures, achieved, strict=True)]

    def _ready(self) -> tuple[nn.Module, nn.Module]:
        if self._models is None:
            devices = [self.device] if self.device.type == "cuda" else []
            self._stack.enter_context(torch.random.fork_rng(devices=devices))
            self._stack.enter_context(_threads(self.threads))
            model = self._stack.enter_context(untouched(self.module, self.device))
            fast = fold_batchnorm(model, keep={split_layer(model, self.layer)[0]})
            self._models = model, fast
        return self._models


def batch_size_for(device: str | torch.device) -> int:
    """Channels optimised together: a few on the CPU (measured), hundreds on a GPU."""
    return GPU_CHANNELS_PER_BATCH if torch.device(device).type == "cuda" else CHANNELS_PER_BATCH


def in_batches(channels: Sequence[int], batch_size: int,
               run: Callable[[list[int], int], list[Visualisation]],
               done: Callable[[int], object] | None = None) -> list[Visualisation]:
    """``run(chunk, batch_size)`` over consecutive chunks of ``channels``, halving the batch
    whenever the GPU runs out of memory (what fits depends on the model, the layer's depth
    and the card), and calling ``done(count)`` after each chunk."""
    made: list[Visualisation] = []
    start = 0
    while start < len(channels):
        chunk = [int(c) for c in channels[start:start + batch_size]]
        try:
            made += run(chunk, batch_size)
        except torch.cuda.OutOfMemoryError:
            if batch_size == 1:
                raise ReportError("Feature visualisation of a single channel does not fit in "
                                  "the GPU's memory; use --device cpu.") from None
            batch_size = max(1, batch_size // 2)
            if torch.cuda.is_available():
                torch.cuda.empty_cache()
            continue
        start += len(chunk)
        if done is not None:
            done(len(chunk))
    return made


@contextmanager
def _threads(count: int | None) -> Iterator[None]:
    """torch's intra-op threads set to ``count`` meanwhile (None: as they are)."""
    before = torch.get_num_threads()
    if count is not None:
        if count < 1:
            raise ReportError(f"Threads must be at least 1, not {count}.")
        torch.set_num_threads(count)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def channel_generator(seed: int, channel: int) -> torch.Generator:
    """A generator for one channel's randomness, independent of its batch neighbours."""
    digest = hashlib.sha256(f"reportgen-featurevis:{seed}:{channel}".encode()).digest()
    return torch.Generator().manual_seed(int.from_bytes(digest[:8], "little") >> 1)


def _optimise(tap: LayerTap, objectives: list[ChannelObjective],
              settings: FeatureVisSettings, device: torch.device) -> np.ndarray:
    channels = [objective.channel for objective in objectives]
    generators = [channel_generator(settings.seed, c) for c in channels]
    image = FourierImage(generators, settings.size, device)
    spec = TransformSpec()
    frame = settings.size + 2 * spec.pad
    matrices = torch.stack([draw_matrices(g, settings.steps, frame, spec)
                            for g in generators], dim=1).to(device)  # (steps, N, 2, 3)
    rows = torch.arange(len(channels), device=device)
    index = torch.tensor(channels, device=device)
    optimiser = torch.optim.Adam([image.spectrum], lr=settings.lr)
    for step in range(settings.steps):
        seen = settings.model_input(apply(image(), matrices[step], settings.input_size, spec))
        maps = tap(seen)[rows, index]
        if settings.rectify:
            maps = maps.clamp_min(0)
        loss = -maps.mean(dim=(1, 2)).sum()
        # Only the image's gradient: no parameter .grad is computed or touched.
        (image.spectrum.grad,) = torch.autograd.grad(loss, [image.spectrum])
        optimiser.step()
    with torch.no_grad():  # a grey model's picture is shown grey: what it sees
        rgb = settings.shown(image()).permute(0, 2, 3, 1).mul(255).round().clamp(0, 255)
    return rgb.to(torch.uint8).cpu().numpy()


def pictures_to_batch(pictures: Sequence[np.ndarray], settings: FeatureVisSettings,
                      device: torch.device | str = "cpu") -> torch.Tensor:
    """uint8 HxWx3 pictures as the model takes them: bilinear to the input size, normalised."""
    rgb = torch.from_numpy(np.stack(pictures)).to(device).permute(0, 3, 1, 2).float() / 255
    rgb = F.interpolate(rgb, size=(settings.input_size,) * 2, mode="bilinear",
                        align_corners=False, antialias=True)
    return settings.model_input(rgb)


def layer_means(tap: LayerTap, batch: torch.Tensor, rectify: bool) -> torch.Tensor:
    """(N, C) mean of every channel's map, as the report shows the map."""
    with torch.inference_mode():
        maps = tap(batch).float()
        return (maps.clamp_min(0) if rectify else maps).mean(dim=(2, 3)).cpu()


def _objectives(tap: LayerTap, pictures: list[np.ndarray], channels: list[int],
                settings: FeatureVisSettings, device: torch.device) -> list[float]:
    if not pictures:
        return []
    means = layer_means(tap, pictures_to_batch(pictures, settings, device), settings.rectify)
    return [float(means[row, channel]) for row, channel in enumerate(channels)]

