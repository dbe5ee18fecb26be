"""Repository text made safe for a terminal: control characters are shown, never sent.

A cloned repository chooses its file contents, file names and symbols, so whatever coderag
prints for a human may carry terminal escape sequences (OSC 52 writes the clipboard, OSC 8
makes links, CSI clears the screen), C1 controls (``\\x9b`` is a one-byte CSI) or bidirectional
overrides that make text read differently from what it is ("Trojan Source"). Every face passes
repository-controlled text through :func:`escape` (one line) or :func:`escape_block` (a
snippet: newlines kept) before printing it, which writes each such character the way git
quotes file names: ``\\x1b``, ``\\r``, ``\\x9b``, ``\\u202e``. Tabs are kept. Machine-readable output
(``--json``) needs none of this: JSON escapes control characters itself.

Standard library only.
"""

from __future__ import annotations

import re

#: bidirectional formatting characters: LRE RLE PDF LRO RLO, LRI RLI FSI PDI, LRM RLM, ALM
BIDI = "\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069\u200e\u200f\u061c"
# C0 controls but tab (newline handled per function), DEL, C1 controls, bidi formatting,
# the Unicode line/paragraph separators, and lone surrogates (undecodable names: unprintable)
_UNSAFE = "\x00-\x08\x0b-\x1f\x7f-\x9f" + BIDI + "\u2028\u2029\ud800-\udfff"
_LINE = re.compile(f"[\n{_UNSAFE}]")
_BLOCK = re.compile(f"[{_UNSAFE}]")


_SHORT = {"\a": "\\a", "\b": "\\b", "\n": "\\n", "\v": "\\v", "\f": "\\f", "\r": "\\r"}


def _visible(m: re.Match) -> str:
    c = m.group()
    if c in _SHORT:
        return _SHORT[c]
    return f"\\x{ord(c):02x}" if ord(c) < 0x100 else f"\\u{ord(c):04x}"


def escape(text: object) -> str:
    """``text`` as one printable line: control, C1 and bidi characters (newlines too) as
    visible escapes."""
    return _LINE.sub(_visible, str(text))


def escape_block(text: object) -> str:
    """Like :func:`escape`, but newlines are kept: for snippets of file text."""
    return _BLOCK.sub(_visible, str(text))
