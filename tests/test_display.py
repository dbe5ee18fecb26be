"""``coderag.display``: repository text made safe for a terminal (control, C1 and bidi
characters shown as visible escapes, never sent). The same text through the real CLI is in
test_security_input.py."""

from __future__ import annotations

from coderag.display import BIDI, escape, escape_block


def _raw_controls(text: str) -> list[str]:
    """Characters that must never reach a terminal raw (tab and newline are structure)."""
    return [
        c for c in text if c in BIDI or (ord(c) < 32 and c not in "\t\n") or 0x7F <= ord(c) <= 0x9F
    ]


def test_escape_functions():
    assert escape("a\x1b[2Jb\tc\nd\re") == "a\\x1b[2Jb\tc\\nd\\re"
    assert escape_block("a\x1b\nb\x9b\u202e\udcff") == "a\\x1b\nb\\x9b\\u202e\\udcff"
    assert escape("[bold]plain ünïcödé 😀[/bold]") == "[bold]plain ünïcödé 😀[/bold]"
    every = "".join(chr(c) for c in [*range(0x20), *range(0x7F, 0xA0)]) + BIDI + "\u2028\u2029"
    assert not _raw_controls(escape(every)) and "\n" not in escape(every)
    assert escape_block(every).count("\n") == 1
