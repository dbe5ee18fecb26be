"""The background server ``coderag search`` starts (the whole path: test_warm_path.py)."""

from __future__ import annotations

from coderag.server import AUTOSERVE_LOCK, autoserve_enabled, start_background


def test_autoserve_can_be_turned_off(monkeypatch):
    for value, enabled in (("1", True), ("", True), ("0", False), ("off", False), (" No ", False)):
        monkeypatch.setenv("CODERAG_AUTOSERVE", value)
        assert autoserve_enabled() is enabled, value
    monkeypatch.delenv("CODERAG_AUTOSERVE")
    assert autoserve_enabled()


def test_nothing_starts_without_an_index(tmp_path):
    assert start_background(tmp_path) is None
    assert not (tmp_path / ".coderag" / AUTOSERVE_LOCK).exists()
