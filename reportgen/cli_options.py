"""Click options made from :class:`~reportgen.options.BuildOptions` fields.

Each field declares its flag, help and click type once (reportgen.options); ``build`` gets one
click option per such field, and ``figure`` and ``layers`` take the ones they share, with
their own default or help where theirs differ. So a new option, or a changed default, needs no
second edit here, and ``reportgen build --help`` cannot drift from what the library does.
"""
from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any, TypeVar

import click

from reportgen.options import BuildOptions

F = TypeVar("F", bound=Callable[..., Any])

_FIELDS = {item.name: item for item in dataclasses.fields(BuildOptions)}


def field_option(name: str, **overrides: Any) -> Callable[[F], F]:
    """The click option of field ``name``; ``overrides`` change its click settings."""
    item = _FIELDS[name]
    settings: dict[str, Any] = {"default": () if item.metadata["click"].get("multiple")
                                else item.default,
                                "help": item.metadata["help"], **item.metadata["click"],
                                **overrides}
    declaration = settings.pop("declaration", item.metadata["flag"])
    if isinstance(item.default, bool) and "/" not in declaration:
        settings["flag_value"] = not item.default  # a switch that turns its default off
    default = settings["default"]
    settings.setdefault("show_default", default not in (None, ())
                        and not isinstance(default, bool))
    return click.option(declaration, name, **settings)


def build_options(func: F) -> F:
    """Every field with a flag, in the order the fields are declared."""
    for name in reversed([name for name, item in _FIELDS.items() if item.metadata.get("flag")]):
        func = field_option(name)(func)
    return func
