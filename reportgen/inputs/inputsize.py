"""Check that the model can run on the input size before any real work, and say what it needs.

A crop that is too small fails deep inside the forward pass with a message about kernels or
padding that names no size the user can pick. We try the model on the ``meta`` device (shapes
only, no arithmetic, no memory), where a forward pass costs microseconds, so we can search for
the smallest square input that works and put that number in the error.
"""
from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch import nn

from reportgen.errors import ReportError

#: Largest side tried when looking for the minimum (beyond it, the model has another problem).
SEARCH_LIMIT = 2048
#: Sizes tried when the model does not run on any larger input (a fixed-size head).
COMMON_SIZES = (224, 299, 256, 128, 96, 64, 32, 28)
#: How far from the asked size a fixed-size model's own size is looked for, first.
NEAR = 32


def runs_on(module: nn.Module, size: int, channels: int = 3) -> bool | None:
    """Whether the model runs on a (1, channels, size, size) input; None when meta cannot tell.

    The module's own parameters are left alone (meta stand-ins are passed functionally); a
    forward hook the user put on the model does see these calls, with meta tensors.
    """
    state = {name: torch.empty_like(tensor, device="meta")
             for name, tensor in [*module.named_parameters(), *module.named_buffers()]}
    batch = torch.empty(1, channels, size, size, device="meta")
    was_training = module.training
    try:
        module.eval()
        with torch.inference_mode():
            torch.func.functional_call(module, state, (batch,), strict=False)
        return True
    except (RuntimeError, ValueError, IndexError) as error:
        text = str(error)
        if "meta" in text.lower() or "NotImplemented" in type(error).__name__:
            return None
        return False
    except Exception:  # noqa: BLE001 - the user's forward may do anything on meta tensors
        return None
    finally:
        module.train(was_training)


def minimum_size(module: nn.Module, failing: int, channels: int = 3) -> int | None:
    """The smallest square side above ``failing`` on which the model runs, if any."""
    low, high = failing, failing
    while True:  # double until it runs: the answer lies in (low, high]
        high = min(max(high * 2, 8), SEARCH_LIMIT)
        if runs_on(module, high, channels):
            break
        if high >= SEARCH_LIMIT:
            return None
        low = high
    while high - low > 1:
        middle = (low + high) // 2
        if runs_on(module, middle, channels):
            high = middle
        else:
            low = middle
    return high


def fixed_size(module: nn.Module, crop: int, channels: int = 3) -> int | None:
    """A size a fixed-size model runs on: the nearest to ``crop`` (a ``--size 27`` meant
    28), else the first common one."""
    near = sorted(range(max(1, crop - NEAR), crop + NEAR + 1), key=lambda size: abs(size - crop))
    for size in dict.fromkeys([*near, *COMMON_SIZES]):
        if size != crop and runs_on(module, size, channels):
            return size
    return None


def check_input_size(module: nn.Module, crop: int, name: str, channels: int = 3) -> None:
    """Raise a :class:`ReportError` naming the minimum when ``crop`` is too small."""
    if runs_on(module, crop, channels) is not False:
        return
    explain_failure(module, crop, name, None, channels)


@contextmanager
def size_failures_explained(module: nn.Module, batch: torch.Tensor, name: str
                            ) -> Iterator[None]:
    """Run the model inside: a failure that is the input's size becomes one line naming the
    --size that works (any other error passes through unchanged)."""
    try:
        yield
    except (RuntimeError, ValueError) as error:
        explain_failure(module, int(batch.shape[-1]), name, error, channels=int(batch.shape[1]))
        raise


def explain_failure(module: nn.Module, crop: int, name: str, error: Exception | None,
                    channels: int = 3) -> None:
    """Turn a shape failure at ``crop`` into an actionable message (returns if it cannot)."""
    detail = ""
    if error is not None and str(error).strip():
        detail = f" ({str(error).strip().splitlines()[0]})"
    verdict = runs_on(module, crop, channels)
    if verdict is True:
        return  # the shapes fit: whatever failed, it is not the input size
    if verdict is False:
        needed = minimum_size(module, crop, channels)
        if needed is not None:
            raise ReportError(
                f"The input is too small for {name}: a {crop}x{crop} crop does not fit, it needs "
                f"at least {needed}x{needed}{detail}. Use --size {needed} or larger.")
        fits = fixed_size(module, crop, channels)
        if fits is not None:
            raise ReportError(
                f"{name} cannot run on a {crop}x{crop} input{detail}, but it runs on "
                f"{fits}x{fits}: use --size {fits}.")
        return  # no size works: a bug in the model, not the user's input; keep its traceback
    if error is not None and any(hint in str(error) for hint in SIZE_HINTS):
        raise ReportError(  # meta could not tell; the message is clearly about sizes
            f"The input ({crop}x{crop}) is too small for {name}{detail}. Use a larger --size "
            "(224 works for torchvision models).")


#: Words of PyTorch's shape errors, for models that cannot run on the meta device.
SIZE_HINTS = ("too small", "can't be greater than actual input size",
              "should be less than the corresponding input dimension", "smaller than kernel size")
