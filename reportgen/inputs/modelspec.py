"""Which model the user named, as text, and the keyword arguments to build it with.

``--model`` takes a torchvision name (``resnet18``), ``timm:NAME``, ``package.module:factory``
or ``path/to/file.py:factory``, where the factory is an ``nn.Module`` class or a function that
returns one. ``--model-arg KEY=VALUE`` (repeatable) passes keyword arguments, each value read as
a Python literal (``num_classes=10``, ``widths=(16, 32)``; a bare word such as ``act=gelu`` is
the string ``'gelu'``).

This module only reads the text (no import, no torch), so a malformed spec fails before anything
is loaded or printed; :mod:`reportgen.inputs.factories` and :mod:`reportgen.inputs.timmzoo`
resolve the spec to a module.
"""
from __future__ import annotations

import ast
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import PurePath, PurePosixPath
from typing import Any

from reportgen.errors import ReportError

TORCHVISION, TIMM, MODULE, FILE = "torchvision", "timm", "module", "file"
#: The kind of a model passed in as a Python object (``build_report(model=my_net)``).
OBJECT = "object"
#: What the weights record says for a model passed in as a Python object.
IN_MEMORY_WEIGHTS = "as given"
TIMM_PREFIX = "timm:"
_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_DOTTED = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*")
_BARE_WORD = re.compile(r"[A-Za-z_][A-Za-z0-9_.\-]*")
FORMS = ("a torchvision name such as resnet18, timm:NAME, package.module:factory or "
         "path/to/file.py:factory")


@dataclass(frozen=True)
class ModelSpec:
    """A parsed ``--model``: what kind of name it is and what it points at."""

    text: str  # as given
    kind: str  # TORCHVISION, TIMM, MODULE or FILE
    target: str  # the torchvision or timm name, the dotted module, or the file path
    attribute: str | None = None  # the factory inside the module or file

    @property
    def recorded(self) -> str:
        """The spec as the manifest and the Reproduce command keep it.

        Exactly as given, except that a file named by an absolute path, or one outside the
        current folder, is kept by its base name: no user's folder layout is published (the
        file's SHA-256 identifies it).
        """
        if self.kind != FILE:
            return self.text
        path = PurePath(self.target)
        if path.is_absolute() or ".." in path.parts or self.target.startswith("~"):
            return f"{path.name}:{self.attribute}"
        return f"{PurePosixPath(*path.parts)}:{self.attribute}"

    @property
    def is_factory(self) -> bool:
        return self.kind in (MODULE, FILE)


def parse_model_spec(text: str) -> ModelSpec:
    """Read a ``--model`` value; a malformed one is a one-line error naming the forms."""
    spec = text.strip()
    if not spec:
        raise ReportError(f"--model is empty; name {FORMS}.")
    if spec.lower().startswith(TIMM_PREFIX):
        name = spec[len(TIMM_PREFIX):].strip()
        if not name:
            raise ReportError(f"--model '{text}' names no timm model; use timm:NAME such as "
                              "timm:resnet50 ('timm.list_models()' lists them).")
        return ModelSpec(spec, TIMM, name)
    if ":" not in spec or _is_drive_only(spec):
        if spec.endswith(".py") or "/" in spec or "\\" in spec:
            raise ReportError(f"--model '{text}' names a file but no factory in it; add "
                              f"':' and the class or function that builds the model, such as "
                              f"{spec}:Net.")
        return ModelSpec(spec, TORCHVISION, spec)
    target, _, attribute = spec.rpartition(":")
    attribute = attribute.strip()
    if not attribute or not all(_IDENTIFIER.fullmatch(part) for part in attribute.split(".")):
        raise ReportError(f"--model '{text}': '{attribute}' is not the name of a class or "
                          "function; use package.module:factory or path/to/file.py:factory.")
    if target.endswith(".py") or "/" in target or "\\" in target:
        return ModelSpec(spec, FILE, target, attribute)
    if not _DOTTED.fullmatch(target):
        raise ReportError(f"--model '{text}': '{target}' is not a module path such as "
                          "mypackage.models, nor a .py file.")
    return ModelSpec(spec, MODULE, target, attribute)


def _is_drive_only(spec: str) -> bool:
    """``C:\\models\\net.py`` has a colon that is not the factory's."""
    return bool(re.fullmatch(r"[A-Za-z]:[\\/][^:]*", spec))


# ------------------------------------------------------------------ --model-arg
def normalize_model_args(given: Any) -> tuple[str, ...]:
    """``KEY=VALUE`` strings or a mapping -> canonical ``KEY=repr(value)`` strings.

    Canonical, so that the manifest and the Reproduce command say exactly which values were
    used; a key given twice is an error rather than a silent last-one-wins.
    """
    if given is None:
        return ()
    if isinstance(given, str):
        given = (given,)
    pairs: Iterable[tuple[str, Any]]
    if isinstance(given, Mapping):
        pairs = [(str(key), _literal_checked(str(key), value)) for key, value in given.items()]
    else:
        pairs = [_parse_pair(str(item)) for item in given]
    seen: set[str] = set()
    words = []
    for key, value in pairs:
        if not _IDENTIFIER.fullmatch(key):
            raise ReportError(f"--model-arg '{key}': the key must be a Python name such as "
                              "num_classes.")
        if key in seen:
            raise ReportError(f"--model-arg {key} is given twice; give each keyword once.")
        seen.add(key)
        words.append(f"{key}={value!r}")
    return tuple(words)


def model_kwargs(words: Iterable[str]) -> dict[str, Any]:
    """The keyword arguments that canonical ``KEY=VALUE`` strings stand for."""
    return dict(_parse_pair(word) for word in words)


def _parse_pair(text: str) -> tuple[str, Any]:
    key, equals, value = text.partition("=")
    key, value = key.strip(), value.strip()
    if not equals or not key:
        raise ReportError(f"--model-arg '{text}' is not KEY=VALUE; for example "
                          "--model-arg num_classes=10.")
    try:
        return key, ast.literal_eval(value)
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
        if _BARE_WORD.fullmatch(value):
            return key, value  # act=gelu: a word is the string it spells
        raise ReportError(f"--model-arg {key}={value}: the value is not a Python literal "
                          "(a number, a quoted string, True/False/None, or a list, tuple or "
                          "dict of them).") from None


def _literal_checked(key: str, value: Any) -> Any:
    """A value from the keyword API must survive being written down and read back."""
    try:
        same = ast.literal_eval(repr(value)) == value
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
        same = False
    if not same:
        raise ReportError(f"model_args['{key}'] is a {type(value).__name__}; only Python "
                          "literals (numbers, strings, True/False/None, lists, tuples, dicts) "
                          "can be recorded in the manifest so that the report can be rebuilt.")
    return value
