"""What is inside a checkpoint: find its state_dict and fit its keys to the model.

People save weights in many shapes: a bare ``state_dict``; torchvision's reference scripts save
``{'model': ..., 'model_ema': ..., 'optimizer': ..., 'epoch': ..., 'args': Namespace}``;
Lightning saves ``{'state_dict': ...}`` with every key under the LightningModule's attribute
(``model.``); timm's train script adds ``state_dict_ema``; DataParallel and ``torch.compile``
prefix keys with ``module.`` and ``_orig_mod.``. This module finds the weights in all of them
and says which it used; reading the file safely is :mod:`reportgen.inputs.weightfiles`' job.
"""
from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from typing import Any

import torch

from reportgen.errors import ReportError

#: Where training code puts the model's weights, most common first.
STATE_KEYS = ("state_dict", "model", "model_state_dict", "module", "net", "network")
#: Where it puts an exponential moving average of them (torchvision references, timm).
EMA_KEYS = ("model_ema", "state_dict_ema", "ema", "ema_state_dict", "model_ema_state_dict")
#: Bookkeeping that EMA wrappers (torch.optim.swa_utils.AveragedModel) add to the weights.
EMA_BOOKKEEPING = ("n_averaged",)
_SHOWN_KEYS = 12


@dataclass(frozen=True)
class FoundState:
    """The weights found in a checkpoint, where they were, and what the report should say."""

    state: dict[str, torch.Tensor]
    key: str | None  # the top-level key they were under; None for a bare state_dict
    notes: tuple[str, ...] = field(default=())


def find_state_dict(loaded: Any, shown: str, key: str | None = None) -> FoundState:
    """The state_dict in a loaded checkpoint: under ``key`` when given, else the usual places.

    Regular weights are preferred to EMA weights when a checkpoint holds both (a note says the
    EMA ones are there and how to pick them); a checkpoint holding only EMA weights gives those.
    """
    if key is not None:
        return _under_key(loaded, shown, key)
    if is_state_dict(loaded):
        return FoundState(dict(loaded), None)
    if isinstance(loaded, Mapping):
        regular = [name for name in STATE_KEYS if is_state_dict(loaded.get(name))]
        ema = [name for name in EMA_KEYS if is_state_dict(loaded.get(name))]
        if regular:
            notes = tuple(f"The checkpoint also holds EMA weights under '{name}'; "
                          f"--weights-key {name} uses them." for name in ema[:1])
            return FoundState(dict(loaded[regular[0]]), regular[0], notes)
        if ema:
            return FoundState(dict(loaded[ema[0]]), ema[0],
                              (f"Used the EMA weights under '{ema[0]}' (the checkpoint holds "
                               "no other state_dict).",))
    raise ReportError(f"Checkpoint '{shown}' holds no state_dict: {describe_top_level(loaded)}. "
                      f"Expected a dict of tensors, or one under {_quoted(STATE_KEYS[:2])} or "
                      f"{_quoted(EMA_KEYS[:2])}; choose one with --weights-key KEY.")


def _under_key(loaded: Any, shown: str, key: str) -> FoundState:
    if not isinstance(loaded, Mapping) or key not in loaded:
        raise ReportError(f"--weights-key '{key}' is not in checkpoint '{shown}': "
                          f"{describe_top_level(loaded)}.")
    inner = loaded[key]
    if not is_state_dict(inner):
        raise ReportError(f"'{key}' in checkpoint '{shown}' is not a state_dict (it holds "
                          f"{_kind(inner)}); {describe_top_level(loaded)}.")
    return FoundState(dict(inner), key)


def is_state_dict(value: Any) -> bool:
    """A non-empty mapping of names to tensors."""
    return (isinstance(value, Mapping) and bool(value)
            and all(isinstance(name, str) and isinstance(tensor, torch.Tensor)
                    for name, tensor in value.items()))


def describe_top_level(loaded: Any) -> str:
    """What a checkpoint holds at its top level, for a message: its keys and their kinds."""
    if not isinstance(loaded, Mapping):
        return f"it holds {_kind(loaded)}, not a dict"
    if not loaded:
        return "it is an empty dict"
    items = [f"'{name}' ({_kind(value)})" for name, value in list(loaded.items())[:_SHOWN_KEYS]]
    more = f" and {len(loaded) - _SHOWN_KEYS} more" if len(loaded) > _SHOWN_KEYS else ""
    return f"its top-level keys are {', '.join(items)}{more}"


def _kind(value: Any) -> str:
    if isinstance(value, torch.Tensor):
        return "a tensor"
    if isinstance(value, Mapping):
        tensors = sum(isinstance(item, torch.Tensor) for item in value.values())
        return f"a dict of {len(value)}" + (f", {tensors} tensors" if tensors else "")
    if isinstance(value, (list, tuple)):
        return f"a {type(value).__name__} of {len(value)}"
    return type(value).__name__


def _quoted(names: tuple[str, ...]) -> str:
    return " or ".join(f"'{name}'" for name in names)


@dataclass(frozen=True)
class FittedState:
    """A state_dict with its keys made to match the model's, and what was done to them."""

    state: dict[str, torch.Tensor]
    prefix: str | None  # the prefix stripped from every key used, e.g. "model."
    notes: tuple[str, ...] = field(default=())


def fit_keys(state: Mapping[str, torch.Tensor], expected: Collection[str]) -> FittedState:
    """Strip the prefix that makes ``state``'s keys the model's own.

    The prefix is found, not guessed from a list: it is what stands before the model's own
    key names in the checkpoint's (``model.``, ``module.``, ``_orig_mod.model.``, ...), taken
    only when it makes more keys match than leaving the keys alone. Keys outside the prefix
    (a Lightning module's loss, say) are left out, and a note says how many. EMA bookkeeping
    (``n_averaged``) that the model does not have is dropped.
    """
    wanted = set(expected)
    matched = sum(name in wanted for name in state)
    best, best_matched = "", matched
    if matched < len(wanted):
        for prefix in _candidate_prefixes(state, wanted):
            count = sum(prefix + name in state for name in wanted)
            if count > best_matched or (count == best_matched and best and
                                        len(prefix) < len(best)):
                best, best_matched = prefix, count
    notes: list[str] = []
    if best:
        fitted = {name[len(best):]: tensor for name, tensor in state.items()
                  if name.startswith(best)}
        left = sorted(name for name in state if not name.startswith(best))
        more = f" and {len(left) - 4} more" if len(left) > 4 else ""
        notes.append(f"Checkpoint keys had the prefix '{best}', which was stripped"
                     + (f"; {len(left)} key{'s' if len(left) != 1 else ''} outside it left "
                        f"out ({', '.join(left[:4])}{more})." if left else "."))
    else:
        fitted = dict(state)
    for name in EMA_BOOKKEEPING:
        if name in fitted and name not in wanted:
            del fitted[name]
    return FittedState(fitted, best or None, tuple(notes))


def _candidate_prefixes(state: Mapping[str, torch.Tensor], wanted: set[str]) -> set[str]:
    """Prefixes that put one of the model's first few key names in front of a checkpoint key."""
    probes = sorted(wanted, key=len, reverse=True)[:8]  # long names are the least ambiguous
    found: set[str] = set()
    for name in state:
        for probe in probes:
            if name.endswith("." + probe):
                found.add(name[:len(name) - len(probe)])
    return found
