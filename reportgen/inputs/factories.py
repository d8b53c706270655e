"""Your own model: ``package.module:factory`` or ``path/to/file.py:factory``.

The factory is an ``nn.Module`` class or a function returning one. It is found (module
imported, attribute looked up, keyword arguments bound to its signature) before anything is
loaded or printed, so a typo is a one-line error, not "Unknown model" after "Loading ...".
Importing runs the user's code, which is what naming it asks for; a checkpoint never does.

Like ``python -m``, the current folder is importable while the module is imported and the model
built, and a file's own folder too (so ``models/net.py`` can import its neighbours).
"""
from __future__ import annotations

import contextlib
import hashlib
import importlib
import importlib.util
import inspect
import os
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from torch import nn

from reportgen.errors import ReportError
from reportgen.inputs.modelspec import FILE, ModelSpec


@dataclass(frozen=True)
class Factory:
    """A resolved factory: call :meth:`build` to get the module."""

    spec: ModelSpec
    function: Callable[..., Any]
    file_sha256: str | None  # of the .py file, for the report; None for an imported module

    @property
    def name(self) -> str:
        return self.spec.recorded

    def check_arguments(self, kwargs: dict[str, Any]) -> None:
        """``--model-arg`` keys the factory does not take are an error before any work."""
        try:
            signature = inspect.signature(self.function)
        except (TypeError, ValueError):
            return  # a builtin or C extension: let the call say
        try:
            signature.bind(**kwargs)
        except TypeError as error:
            names = [name for name, parameter in signature.parameters.items()
                     if parameter.kind in (parameter.POSITIONAL_OR_KEYWORD, parameter.KEYWORD_ONLY)]
            takes = f"it takes {', '.join(names)}" if names else "it takes no keyword arguments"
            raise ReportError(f"{self.spec.text} cannot be called with "
                              f"{_call_text(kwargs)}: {error}; {takes} (--model-arg KEY=VALUE)."
                              ) from None

    def build(self, kwargs: dict[str, Any]) -> nn.Module:
        self.check_arguments(kwargs)
        with _importable(self.spec):
            module = self.function(**kwargs)
        if not isinstance(module, nn.Module):
            raise ReportError(f"{self.spec.text}({_call_text(kwargs)}) returned a "
                              f"{type(module).__name__}, not an nn.Module.")
        return module


def resolve_factory(spec: ModelSpec) -> Factory:
    """Import the module or file and find the factory in it (nothing is built yet)."""
    if spec.attribute is None:
        raise ValueError(f"{spec.text} is not a factory spec")
    file_sha256 = None
    if spec.kind == FILE:
        path = Path(os.path.expanduser(spec.target))
        if not path.is_file():
            what = "is a folder" if path.is_dir() else "does not exist"
            raise ReportError(f"Model file '{path.name}' {what}; --model path/to/file.py:factory "
                              "names a Python file and the class or function in it.")
        file_sha256 = hashlib.sha256(path.read_bytes()).hexdigest()
        module = _import_file(path, spec, file_sha256)
    else:
        module = _import_module(spec)
    found: Any = module
    for part in spec.attribute.split("."):
        if not hasattr(found, part):
            where = Path(spec.target).name if spec.kind == FILE else spec.target
            names = sorted(name for name, value in vars(module).items()
                           if not name.startswith("_") and _could_build(value))
            hint = f"; it defines {', '.join(names[:10])}" if names else ""
            raise ReportError(f"'{where}' has no '{spec.attribute}'{hint}.")
        found = getattr(found, part)
    if inspect.isclass(found) and not issubclass(found, nn.Module):
        raise ReportError(f"{spec.text} is the class {found.__name__}, which is not an "
                          "nn.Module; name an nn.Module class or a function returning one.")
    if not callable(found):
        raise ReportError(f"{spec.text} is a {type(found).__name__}, not a class or function "
                          "that builds an nn.Module.")
    return Factory(spec, found, file_sha256)


def _could_build(value: Any) -> bool:
    return (inspect.isclass(value) and issubclass(value, nn.Module)) or inspect.isfunction(value)


def _import_module(spec: ModelSpec) -> Any:
    with _importable(spec):
        try:
            return importlib.import_module(spec.target)
        except ModuleNotFoundError as error:
            if error.name and spec.target.startswith(error.name):
                raise ReportError(f"Cannot import '{spec.target}' for --model {spec.text}: no "
                                  f"module named '{error.name}' in the current folder or the "
                                  "installed packages.") from None
            raise


def _import_file(path: Path, spec: ModelSpec, content_sha256: str) -> Any:
    """Load a .py file as a module of its own (registered, so dataclasses and pickle work).

    Named after the file's path and content: the same file is imported once, and a file
    edited since (in a notebook, say) is imported anew rather than served stale.
    """
    resolved = path.resolve()
    digest = hashlib.sha256(f"{resolved}:{content_sha256}".encode()).hexdigest()[:12]
    name = f"reportgen_model_{_identifier(path.stem)}_{digest}"
    if name in sys.modules:
        return sys.modules[name]
    loader_spec = importlib.util.spec_from_file_location(name, resolved)
    if loader_spec is None or loader_spec.loader is None:
        raise ReportError(f"Model file '{path.name}' cannot be imported as Python; name a .py "
                          "file.")
    module = importlib.util.module_from_spec(loader_spec)
    sys.modules[name] = module
    try:
        with _importable(spec):
            loader_spec.loader.exec_module(module)
    except BaseException:
        del sys.modules[name]
        raise
    return module


def _identifier(text: str) -> str:
    return "".join(char if char.isalnum() else "_" for char in text) or "file"


@contextlib.contextmanager
def _importable(spec: ModelSpec) -> Iterator[None]:
    """The current folder (and a model file's folder) on ``sys.path`` for the block only."""
    folders = [os.getcwd()]
    if spec.kind == FILE:
        folders.insert(0, str(Path(os.path.expanduser(spec.target)).resolve().parent))
    added = [folder for folder in folders if folder not in sys.path]
    sys.path[:0] = added
    try:
        yield
    finally:
        for folder in added:
            with contextlib.suppress(ValueError):
                sys.path.remove(folder)


def _call_text(kwargs: dict[str, Any]) -> str:
    return ", ".join(f"{key}={value!r}" for key, value in kwargs.items()) or "no arguments"
