"""Everything this subpackage takes from the rest of reportgen, in one place.

The core package is being reorganised; when its modules move, only these imports change.
"""
from __future__ import annotations

from reportgen.capture import ConvHooks, conv_layers, record_name
from reportgen.errors import ReportError
from reportgen.pngio import encode_png
from reportgen.preprocess import Preprocessing

__all__ = ["ConvHooks", "Preprocessing", "ReportError", "conv_layers", "encode_png",
           "record_name"]
