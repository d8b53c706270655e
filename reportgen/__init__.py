"""reportgen: see what every convolution layer of a CNN sees, published as a static site.

The public API is :func:`build_report` with its :class:`BuildOptions`; the heavy parts are
imported lazily so that ``reportgen --version`` and ``import reportgen`` do not pay for
importing torch.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"
__all__ = ["__version__", "build_report", "BuildOptions", "Report", "ReportError"]

if TYPE_CHECKING:  # pragma: no cover
    from reportgen.build import Report, build_report
    from reportgen.errors import ReportError
    from reportgen.options import BuildOptions


def __getattr__(name: str) -> Any:
    if name in ("build_report", "Report"):
        from reportgen import build

        return getattr(build, name)
    if name == "ReportError":
        from reportgen.errors import ReportError

        return ReportError
    if name == "BuildOptions":
        from reportgen.options import BuildOptions

        return BuildOptions
    raise AttributeError(f"module 'reportgen' has no attribute {name!r}")
