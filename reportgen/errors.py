"""Errors a user can fix, kept apart from bugs.

Everything raised as :class:`ReportError` is the user's input being wrong (a typo, a
missing file, a checkpoint for another network). The CLI shows it as one line and exits
with code 2, like click's own usage errors; anything else is a bug and keeps its traceback.
"""
from __future__ import annotations

import click


class ReportError(click.ClickException):
    """Bad input: one clear sentence saying what is wrong and what to do."""

    exit_code = 2

    def __init__(self, message: str) -> None:
        # One line, always: multi-line detail belongs in the docs, not the terminal.
        super().__init__(" ".join(str(message).split()))
