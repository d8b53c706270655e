"""Where the forward pass runs: the device, the model's place on it, the input's layout."""
from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch import nn

from reportgen.errors import ReportError

#: Inputs up to this many pixels leave the PNG writers a core (see core_left_for_png).
SHARE_CORE_UP_TO = 512 * 512


def parse_device(device: str | torch.device) -> torch.device:
    """``cpu``, ``cuda`` or ``cuda:N``; asking for a GPU that is not there is the user's error."""
    try:
        chosen = torch.device(device)
    except RuntimeError:
        raise ReportError(f"Unknown device '{device}'; use cpu or cuda.") from None
    if chosen.type == "cuda" and not torch.cuda.is_available():
        raise ReportError("--device cuda was asked for but no CUDA GPU is available; use cpu.")
    return chosen


def device_of(module: nn.Module) -> torch.device:
    for tensor in module.parameters():
        return tensor.device
    return torch.device("cpu")


@contextmanager
def moved_to(module: nn.Module, device: torch.device) -> Iterator[nn.Module]:
    """The module on ``device`` for the block, and back where it was afterwards (also after
    an error): the caller's model is never left moved."""
    original = device_of(module)
    try:
        module.to(device)
        yield module
    finally:
        module.to(original)


@contextmanager
def placed(module: nn.Module, device: torch.device, *, restore: bool) -> Iterator[nn.Module]:
    """The module on ``device`` for a whole build, so that each stage's own
    :func:`moved_to` is a no-op: one copy to a GPU per build instead of one there and one back
    per stage (528 MB each way for VGG16). With ``restore`` (a caller's module) it goes back
    afterwards, also after an error; without (the build's own copy) it stays."""
    if restore:
        with moved_to(module, device):
            yield module
    else:
        module.to(device)
        yield module


@contextmanager
def core_left_for_png(pixels: int) -> Iterator[None]:
    """While the PNG workers encode, torch computes with one thread fewer (at least one).

    On 2 cores, torch's 2 OpenMP threads and the encoder threads fought over the cores: VGG16
    at 224 took 2.6 s of CPU for 1.0 s of work (OpenMP threads waiting at barriers for a
    thread whose core an encoder had), 3.3 s wall; with one torch thread, 1.1 s of CPU and
    1.5 s wall (medians of 7 alternating runs, load ~4). Encoding is bounded by --tile-cap
    while the forward pass grows with the input: at 1024x1024 all threads won (7.4-8.4 s
    against 9.2-9.8 s), so larger inputs keep them. The setting is restored afterwards.
    """
    threads = torch.get_num_threads()
    if pixels <= SHARE_CORE_UP_TO:
        torch.set_num_threads(max(1, threads - 1))
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def laid_out(batch: torch.Tensor, module: nn.Module) -> torch.Tensor:
    """Channels-last for torchvision's models, contiguous NCHW for anyone else's.

    VGG16 at 1024x1024: the forward pass alone peaked 768 MB above its start with an NCHW
    input (oneDNN reorders each conv output through a third activation-sized buffer) and
    512 MB channels-last, 6.8 s of CPU instead of 8.2 s (one thread). The preprocessed batch
    is channels-last only by accident (``pil_to_tensor`` keeps HWC memory) and with a batch
    stride of 3, which oneDNN does not take as channels-last: the build peaked 829 MB above
    its start with it, 581 MB after ``.to(memory_format=torch.channels_last)``, which
    re-strides it. All 65 torchvision classification models that build on the meta device
    run channels-last; a user's module may ``.view()`` its activations, which channels-last
    strides break.
    """
    if type(module).__module__.startswith("torchvision.models."):
        return batch.to(memory_format=torch.channels_last)
    return batch.contiguous()
