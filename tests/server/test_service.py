"""The service: which repository a request names, the bounded pool, the stop bounds."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import anyio
import pytest

from coderag.server.service import HTTPError, Served, Service


class _Root:
    """Stands in for an Index where only its root is read."""

    def __init__(self, root: Path):
        self.root = root


def test_pool_answers_503_when_full():
    """The bounded pool: with every worker busy and no queue, a request is refused at once."""
    service = Service([], workers=1, queue=0)
    release = threading.Event()
    outcome = {}

    async def main():
        service.limiter = anyio.CapacityLimiter(1)
        async with anyio.create_task_group() as tg:
            tg.start_soon(service.in_pool, release.wait)
            while service.in_flight == 0:
                await anyio.sleep(0.01)
            try:
                await service.in_pool(lambda: "ran")
            except HTTPError as e:
                outcome["status"] = e.status
            release.set()
        outcome["after"] = await service.in_pool(lambda: "ran")

    anyio.run(main)
    assert outcome == {"status": 503, "after": "ran"}


def test_repo_for_names_a_served_repository(tmp_path):
    app = (tmp_path / "app").resolve()
    lib = (tmp_path / "lib").resolve()
    inner = app / "vendor" / "lib"
    for p in (app, lib, inner):
        p.mkdir(parents=True, exist_ok=True)
    service = Service([Served(_Root(app)), Served(_Root(lib)), Served(_Root(inner))])
    assert service.repo_for(str(app)).root == app
    assert service.repo_for(str(app / "src" / "x.py")).root == app  # a path inside it
    assert service.repo_for(str(inner / "y.py")).root == inner  # the innermost
    assert service.repo_for("app").root == app  # its folder name, when only one has it
    for value, status in (
        (None, 400),  # several served: which one?
        ("", 400),
        (3, 400),
        ("a\x00b", 400),
        ("lib", 404),  # two served folders are named lib
        ("/etc", 404),
        ("elsewhere", 404),
    ):
        with pytest.raises(HTTPError) as e:
            service.repo_for(value)
        assert e.value.status == status, value
    one = Service([Served(_Root(app))])
    assert one.repo_for(None).root == app


def test_paths_must_stay_inside_the_repository(tmp_path):
    repo = (tmp_path / "repo").resolve()
    repo.mkdir()
    (repo / "link").symlink_to(tmp_path)
    served = Served(_Root(repo))
    assert served.resolve_paths(["a.py", str(repo / "b.py")]) == [
        str(repo / "a.py"),
        str(repo / "b.py"),
    ]
    for paths in (["../x.py"], ["link/x.py"], ["/etc/passwd"], ["a\x00"], [""], "a.py", [1]):
        with pytest.raises(HTTPError) as e:
            served.resolve_paths(paths)
        assert e.value.status == 400, paths


def test_should_stop_when_idle_but_not_while_busy():
    service = Service([])
    assert service.should_stop() is None  # no bounds
    service.last_request = time.monotonic() - 100
    assert service.should_stop(idle_timeout=50).startswith("idle for")
    assert service.should_stop(idle_timeout=500) is None
    service.in_flight = 1
    assert service.should_stop(idle_timeout=50) is None  # a request in flight finishes first
    service.in_flight = 0
    assert service.should_stop(max_memory_mb=1).startswith("over 1 MB")
    assert service.should_stop(max_memory_mb=1_000_000) is None


def test_status_without_watchers(tmp_path):
    class Unindexed(_Root):
        def status(self):
            from coderag.errors import IndexMissing

            raise IndexMissing("no index yet")

    service = Service([Served(Unindexed(tmp_path))], workers=2, queue=3)
    st = service.status()
    assert (st["workers"], st["queue_limit"], st["in_flight"], st["token_required"]) == (
        2,
        3,
        0,
        False,
    )
    (repo,) = st["repos"]
    assert repo["root"] == str(tmp_path) and repo["indexed"] is False
    assert repo["watcher"] is None and repo["queue"] == 0 and repo["error"] == "no index yet"
