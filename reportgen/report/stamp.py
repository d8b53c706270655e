"""The report's only time stamp, reproducible under ``SOURCE_DATE_EPOCH``.

reproducible-builds.org's convention: when the variable holds a Unix time, every date a build
writes (the manifest's ``created``, a figure's PDF/SVG date) is that time, so two builds of the
same thing give the same bytes.
"""
from __future__ import annotations

import os
import time
from datetime import datetime, timezone


def source_date() -> datetime | None:
    """``SOURCE_DATE_EPOCH`` as a UTC time, or None when it is unset or not a number."""
    epoch = os.environ.get("SOURCE_DATE_EPOCH", "").strip()
    return datetime.fromtimestamp(int(epoch), tz=timezone.utc) if epoch.isdigit() else None


def build_time() -> str:
    """``SOURCE_DATE_EPOCH`` if set, else now, as ISO 8601 UTC to the second."""
    when = source_date()
    seconds = int(when.timestamp()) if when else int(time.time())
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(seconds))
