"""The git commit (and remote URL) a CLI run carries: that of the checkout holding gradacc's own files, as `mlflow run`
records its project's; nothing where the package is no tracked file of a checkout."""
from __future__ import annotations

import subprocess

from gradacc.tracking.context import checkout_tags


def git(folder, *args) -> str:
    return subprocess.run(["git", "-C", str(folder), *args], check=True, capture_output=True, text=True).stdout.strip()


def repo_with_package(tmp_path):
    git(tmp_path, "init", "-q")
    package = tmp_path / "gradacc"
    package.mkdir()
    (package / "__init__.py").write_text("")
    git(tmp_path, "add", "gradacc/__init__.py")
    git(tmp_path, "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "c")
    return package


def test_a_checkout_gives_its_commit_and_its_remote(tmp_path):
    package = repo_with_package(tmp_path)
    assert checkout_tags(package) == {"mlflow.source.git.commit": git(tmp_path, "rev-parse", "HEAD")}
    git(tmp_path, "remote", "add", "origin", "https://example.org/gradacc.git")
    tags = checkout_tags(package)
    assert tags["mlflow.source.git.repoURL"] == tags["mlflow.gitRepoURL"] == "https://example.org/gradacc.git"


def test_no_checkout_or_an_untracked_package_gives_nothing(tmp_path):
    (tmp_path / "plain").mkdir()
    assert checkout_tags(tmp_path / "plain") == {}
    repo_with_package(tmp_path)  # a venv inside a repo: the installed package is no file of that repo
    (tmp_path / "site" / "gradacc").mkdir(parents=True)
    (tmp_path / "site" / "gradacc" / "__init__.py").write_text("")
    assert checkout_tags(tmp_path / "site" / "gradacc") == {}
