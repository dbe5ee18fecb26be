"""Real git repositories for tests: git without the user's config, the ``gitrepo``
fixture (the small fixture repository, committed) and what its index holds. Used by tests/hooks/,
tests/cli/ and the security suites."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest


def git_env(**extra) -> dict:
    """The environment without the caller's GIT_* variables (a test run from inside a git
    hook must not write to the outer repository) and without user or system git config."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("GIT_")}
    env.update(
        GIT_CONFIG_GLOBAL=os.devnull,
        GIT_CONFIG_NOSYSTEM="1",
        GIT_AUTHOR_NAME="Test",
        GIT_AUTHOR_EMAIL="test@example.com",
        GIT_COMMITTER_NAME="Test",
        GIT_COMMITTER_EMAIL="test@example.com",
    )
    env.update(extra)
    return env


def git(repo: Path, *args: str, check: bool = True, env: dict | None = None, input=None):
    p = subprocess.run(
        ["git", *args],
        cwd=repo,
        env=env or git_env(),
        capture_output=True,
        text=True,
        input=input,
        timeout=300,
    )
    if check and p.returncode != 0:
        raise AssertionError(f"git {' '.join(args)} failed ({p.returncode}):\n{p.stdout}{p.stderr}")
    return p


def head(repo: Path, rev: str = "HEAD") -> str:
    return git(repo, "rev-parse", rev).stdout.strip()


def commit_all(repo: Path, message: str, **kw):
    git(repo, "add", "-A")
    return git(repo, "commit", "-q", "-m", message, **kw)


def append(path: Path, text: str) -> None:
    path.write_text(path.read_text() + text)


@pytest.fixture
def gitrepo(smallrepo: Path, monkeypatch) -> Path:
    """smallrepo as a git repository with one commit on ``main``; the environment is
    cleaned so this process's own git calls (in coderag.hooks) see only this repository."""
    for k in [k for k in os.environ if k.startswith("GIT_")]:
        monkeypatch.delenv(k)
    for k, v in git_env().items():
        monkeypatch.setenv(k, v)
    git(smallrepo, "init", "-q", "-b", "main")
    commit_all(smallrepo, "initial")
    return smallrepo


def found(repo: Path, embedder, identifier: str) -> bool:
    """Does a lexical search (no model call) of the repository's index find ``identifier``?"""
    from coderag.index import Index

    hits = Index(repo, embedder=embedder).search(identifier, mode="lexical", k=20)
    return any(identifier in h.text for h in hits)


def indexed_files(repo: Path) -> set[str]:
    from coderag.store import Store

    return set(Store(repo).file_rows())
