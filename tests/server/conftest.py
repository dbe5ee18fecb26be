"""The server shared by the tests of tests/server/ that need a running one."""

from __future__ import annotations

import shutil

import httpx
import pytest

from ..conftest import FIXTURES
from .serving import Server, copy_repo_b


@pytest.fixture(scope="package")
def served(tmp_path_factory, embedder, tiny_cross_encoder):
    """Two indexed repositories served by one watching server (one model for both)."""
    from coderag import Index

    base = tmp_path_factory.mktemp("served")
    a = base / "repo_a"
    shutil.copytree(FIXTURES / "smallrepo", a)
    b = copy_repo_b(base / "repo_b")
    for root in (a, b):
        Index(root, embedder=embedder).refresh()
    server = Server(
        repos=[a, b],
        log=base / "server.log",
        env={"CODERAG_RERANK_MODEL": str(tiny_cross_encoder)},
    )
    yield server
    server.stop()


@pytest.fixture
def http(served):
    with httpx.Client(base_url=served.url, timeout=60) as client:
        yield client
