"""``gh_deploy``: publish a built report on GitHub Pages, the way ``mkdocs gh-deploy`` does.

The site folder is committed as the whole tree of the ``gh-pages`` branch by ghp-import (git
fast-import: the working tree, the index and the current branch are never touched), with a
``.nojekyll`` file so Pages serves every file as it is, and pushed to the remote. The commit
message names the reportgen version and the source commit, so a published report can be traced
back to the code that made it.
"""
from __future__ import annotations

import logging
import os
import re
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from reportgen import __version__
from reportgen.errors import ReportError
from reportgen.options import DEFAULT_SITE_DIR
from reportgen.report.manifest import is_report
from reportgen.sitelayout import MANIFEST

log = logging.getLogger(__name__)

DEFAULT_MESSAGE = "Deployed {sha} with reportgen version {version}"


@dataclass(frozen=True)
class Deployment:
    """What :func:`gh_deploy` did."""

    site_dir: Path
    remote: str
    branch: str
    message: str
    commit: str  # the new commit on ``branch``
    pushed: bool


def gh_deploy(site_dir: str | os.PathLike[str] = DEFAULT_SITE_DIR, *, remote: str = "origin",
              branch: str = "gh-pages", message: str | None = None, push: bool = True,
              repo: str | os.PathLike[str] | None = None,
              build: Callable[[Path], Any] | None = None) -> Deployment:
    """Commit ``site_dir`` to ``branch`` (with ``.nojekyll``) and push it to ``remote``.

    ``repo`` is any folder inside the git repository to publish from (default: the current
    folder). When ``site_dir`` does not exist and ``build`` is given, ``build(site_dir)`` is
    called first to make it. ``message`` may use ``{sha}`` (the source commit) and
    ``{version}`` (reportgen's); both are filled in.
    """
    workdir = Path(repo) if repo is not None else Path.cwd()
    top = _repository_root(workdir)
    site = Path(site_dir)
    if not site.is_absolute():
        site = workdir / site
    if not site.exists():
        if build is None:
            raise ReportError(f"Site folder '{site_dir}' does not exist; build it first "
                              f"with reportgen build -d {site_dir}.")
        log.info("No report in '%s' yet: building it first ...", site_dir)
        build(site)
    _check_site(site, site_dir)
    identity = _identity(top)
    if push:
        _check_remote(top, remote)
    sha = _git(top, "rev-parse", "--short", "HEAD", check=False) or "an uncommitted tree"
    text = (message or DEFAULT_MESSAGE).replace("{sha}", sha).replace("{version}", __version__)
    if push:
        # Start from the remote's gh-pages when there is one, so the push is a fast-forward.
        _git(top, "fetch", "--quiet", remote,
             f"+refs/heads/{branch}:refs/remotes/{remote}/{branch}",
             check=False)
    _import(site, top, remote=remote, branch=branch, message=text, push=push,
            identity=identity)
    commit = _git(top, "rev-parse", f"refs/heads/{branch}") or ""
    where = f"{remote}/{branch}" if push else f"the local branch {branch} (not pushed)"
    # debug: the CLI says it in its last line (a notebook has the returned Deployment)
    log.debug("Published %s to %s as %s: %s", site_dir, where, commit[:10], text)
    return Deployment(site, remote, branch, text, commit, push)


def _repository_root(folder: Path) -> Path:
    if not folder.is_dir():
        raise ReportError(f"'{folder}' is not a folder.")
    try:
        found = subprocess.run(["git", "rev-parse", "--show-toplevel"], cwd=folder,
                               capture_output=True, text=True)
    except FileNotFoundError:
        raise ReportError("gh-deploy needs git, and git is not installed.") from None
    if found.returncode != 0 or not found.stdout.strip():
        raise ReportError(f"'{folder}' is not inside a git repository; gh-deploy publishes to "
                          "a branch of one. Run it in your project's clone (git init, "
                          "git remote add origin URL).")
    return Path(found.stdout.strip())


def _check_site(site: Path, shown: str | os.PathLike[str]) -> None:
    if not site.is_dir():
        raise ReportError(f"Site folder '{shown}' is not a folder.")
    if not is_report(site):
        # Publishing replaces the whole branch: never push a folder we did not write.
        raise ReportError(f"'{shown}' is not a reportgen report (no {MANIFEST} written by "
                          "reportgen); refusing to publish it.")


def _identity(top: Path) -> dict[str, str]:
    """Who commits, as git itself would say (config, environment or auto-detection).

    ghp-import reads only ``git config user.name``/``user.email`` and the environment, and
    writes an empty committer otherwise; we hand it git's own answer instead.
    """
    found = subprocess.run(["git", "var", "GIT_COMMITTER_IDENT"], cwd=top, capture_output=True,
                           text=True)
    match = re.match(r"(.*?) <(.*)> \d+ [+-]\d{4}$", found.stdout.strip())
    if found.returncode != 0 or match is None:
        raise ReportError("git does not know who you are, so it cannot commit the site: run "
                          "git config user.name 'Your Name' and git config user.email "
                          "you@example.com (or set GIT_COMMITTER_NAME/GIT_COMMITTER_EMAIL).")
    return {"GIT_COMMITTER_NAME": match.group(1), "GIT_COMMITTER_EMAIL": match.group(2)}


def _check_remote(top: Path, remote: str) -> None:
    remotes = (_git(top, "remote", check=False) or "").split()
    if remote not in remotes:
        known = ", ".join(remotes) if remotes else "none"
        raise ReportError(f"This repository has no remote '{remote}' (remotes: {known}); add "
                          f"it with git remote add {remote} URL, pass --remote, or use "
                          "--no-push to only commit the branch.")


def _git(top: Path, *args: str, check: bool = True) -> str | None:
    result = subprocess.run(["git", *args], cwd=top, capture_output=True, text=True)
    if result.returncode != 0:
        if check:
            raise ReportError(f"git {' '.join(args)} failed: {_first_line(result.stderr)}")
        return None
    return result.stdout.strip()


def _first_line(text: str) -> str:
    lines = [line for line in text.strip().splitlines() if line.strip()]
    return lines[-1] if lines else "no message"


def _import(site: Path, top: Path, *, remote: str, branch: str, message: str,
            push: bool, identity: dict[str, str]) -> None:
    """ghp-import works in the current folder and reads the committer from the environment;
    give it both for the duration of the call."""
    import ghp_import

    previous = os.getcwd()
    saved = {key: os.environ.get(key) for key in identity}
    os.environ.update(identity)
    os.chdir(top)
    try:
        ghp_import.ghp_import(str(site), mesg=message, remote=remote, branch=branch,
                              push=False, nojekyll=True)
    except ghp_import.GhpError as error:
        raise ReportError(f"Could not commit the site to {branch}: {error.message}") from None
    finally:
        os.chdir(previous)
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
    if push:
        pushed = subprocess.run(["git", "push", remote, branch], cwd=top, capture_output=True,
                                text=True)
        if pushed.returncode != 0:
            raise ReportError(f"The site is committed to the local branch {branch}, but "
                              f"git push {remote} {branch} failed: "
                              f"{_first_line(pushed.stderr)}")
