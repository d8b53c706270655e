"""Write a report (or any one file) without ever losing the user's files.

The report is built in a temporary folder beside the target and swapped in only when it is
complete. An existing target is replaced only when it is an earlier reportgen report
(recognised by its manifest); the current folder, its parents and the home folder are never
a target. A crash or Ctrl-C leaves the previous report as it was and no temporary folder.
Files in the previous report that reportgen did not write (a Pages ``CNAME``, notes, a folder
of extras: whatever its manifest's ``files`` does not list) are copied into the new one, and
one build at a time writes a folder (a lock beside it in the cache, so two at once cannot
lose one's result: the second stops).
"""
from __future__ import annotations

import fcntl
import hashlib
import logging
import os
import shutil
import signal
import tempfile
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from reportgen.cachedir import cache_dir
from reportgen.errors import ReportError
from reportgen.report.manifest import is_report, load_json, written_files

log = logging.getLogger(__name__)


def check_target(target: Path) -> Path:
    """Refuse folders that are not ours to replace; return the absolute target."""
    absolute = Path(os.path.abspath(target))
    shown = str(target)
    here = Path.cwd().resolve()
    resolved = absolute.resolve()
    if resolved == here or resolved in here.parents:
        raise ReportError(f"Refusing to write the report into '{shown}': it is the current "
                          "folder or one of its parents. Choose a new folder such as 'site'.")
    if resolved == Path.home().resolve():
        raise ReportError(f"Refusing to write the report into the home folder '{shown}'. "
                          "Choose a new folder such as 'site'.")
    blocking = next((folder for folder in absolute.parents
                     if folder.exists() and not folder.is_dir()), None)
    if blocking is not None:  # found now, not when the staged folder is made after loading
        raise ReportError(f"Cannot write the site folder '{absolute.name}' in "
                          f"'{absolute.parent}': '{blocking}' is a file, not a folder. Choose "
                          "another --site-dir.")
    if absolute.exists() or absolute.is_symlink():
        if not absolute.is_dir():
            raise ReportError(f"Site folder '{shown}' exists and is not a folder; "
                              "choose another --site-dir.")
        if any(absolute.iterdir()) and not is_report(absolute):
            raise ReportError(f"Site folder '{shown}' is not empty and is not a reportgen "
                              "report; refusing to replace it. Choose another --site-dir.")
    return absolute


@contextmanager
def staged_folder(target: Path) -> Iterator[Path]:
    """Yield a fresh temporary folder; on success it becomes ``target``, else it vanishes."""
    target = check_target(target)
    parent = target.parent
    created = [folder for folder in (parent, *parent.parents) if not folder.exists()]
    try:
        parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.tmp-", dir=parent))
    except OSError as error:
        _remove_empty(created)
        reason = error.strerror or type(error).__name__
        raise ReportError(f"Cannot write the site folder '{target.name}' in '{parent}': "
                          f"{reason}. Choose a --site-dir in a folder you can write to.") from None
    try:
        with target_lock(target):
            yield staging
            _carry_foreign_files(target, staging)
            with _interrupts_deferred():
                _swap_in(staging, target)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        _remove_empty(created)
        raise


def lock_path(target: Path) -> Path:
    """Where the lock of ``target`` lives: in the cache, not beside or inside the site."""
    key = hashlib.sha256(os.fsencode(Path(os.path.abspath(target)).resolve())).hexdigest()
    return cache_dir("locks") / f"{key[:24]}.lock"


@contextmanager
def target_lock(target: Path) -> Iterator[None]:
    """Hold ``target`` for one build; a second build that wants it meanwhile stops."""
    path = lock_path(target)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+b") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise ReportError(f"Another reportgen build is writing '{target}' right now; wait "
                              "for it to finish, or choose another --site-dir.") from None
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _carry_foreign_files(target: Path, staging: Path) -> None:
    """Copy the files of the previous report that reportgen did not write into ``staging``."""
    previous = load_json(target) if target.is_dir() else None
    if previous is None:
        return
    ours = set(written_files(previous, target))
    foreign = sorted(path for path in target.rglob("*")
                     if (path.is_file() or path.is_symlink())
                     and path.relative_to(target).as_posix() not in ours)
    if not foreign:
        return
    names = [path.relative_to(target).as_posix() for path in foreign]
    clashes = [name for name in names if (staging / name).exists()]
    if clashes:
        raise ReportError(f"'{target}' holds {_listed(clashes)}, which reportgen did not write "
                          "and would now overwrite; move or rename "
                          f"{'them' if len(clashes) > 1 else 'it'} first.")
    for path, name in zip(foreign, names, strict=True):
        (staging / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(path, staging / name, follow_symlinks=False)
    log.info("Kept %s in '%s': reportgen did not write %s.", _listed(names), target,
             "them" if len(names) > 1 else "it")


def _listed(names: list[str]) -> str:
    shown = ", ".join(names[:5]) + (f" and {len(names) - 5} more" if len(names) > 5 else "")
    return f"{len(names)} file{'s' if len(names) > 1 else ''} ({shown})"


def _remove_empty(folders: list[Path]) -> None:
    """Undo the parent folders we made for a build that did not finish (innermost first)."""
    for folder in folders:
        try:
            folder.rmdir()
        except OSError:
            return


@contextmanager
def _interrupts_deferred() -> Iterator[None]:
    """Hold Ctrl-C back during the swap (two renames), so it cannot stop halfway."""
    previous = signal.getsignal(signal.SIGINT)
    if threading.current_thread() is not threading.main_thread() or previous is None:
        yield  # only the main thread may set handlers; None: a handler Python cannot restore
        return
    received: list[int] = []
    signal.signal(signal.SIGINT, lambda number, frame: received.append(number))
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
    if received:
        raise KeyboardInterrupt


def _swap_in(staging: Path, target: Path) -> None:
    os.chmod(staging, 0o755)  # mkdtemp makes 0700; a published site must be readable
    if not (target.exists() or target.is_symlink()):
        staging.rename(target)
        return
    retired = Path(tempfile.mkdtemp(prefix=f".{target.name}.old-", dir=target.parent))
    retired.rmdir()
    target.rename(retired)
    try:
        staging.rename(target)
    except BaseException:
        retired.rename(target)  # put the previous report back exactly as it was
        raise
    if retired.is_symlink():
        retired.unlink()
    else:
        shutil.rmtree(retired, ignore_errors=True)
