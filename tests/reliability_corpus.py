"""A generated hostile repository for the reliability tests (issue 9), one case per file.

``build(root)`` writes the tree and returns the list of :class:`Case` it holds. Each case
says what the index must do with it:

``indexed``   the file has a ``files`` row; its chunks hold ``contains``; every chunk's text
              is exactly lines ``start..end`` of ``text`` (the decoded file, split at
              ``\\r\\n``, ``\\r`` and ``\\n`` only); each marker in ``lines`` starts the line
              number given;
``empty``     the file is tracked (a ``files`` row, so edits and deletion are noticed) and
              has no chunks;
``skipped``   not indexed, and the run says so: ``reason`` is its key in
              ``RefreshStats.summary()["skipped_reasons"]``, ``--verbose`` names ``path``;
``ignored``   passed over on purpose without a report (binary extensions).

Everything under ``ok/`` is ordinary code that must be indexed whatever happens next to it.
The generator is deterministic (seeded): a failure names a case that can be rebuilt.
"""

from __future__ import annotations

import os
import random
import sys
import textwrap
from dataclasses import dataclass, field
from pathlib import Path

OK_FILES = {
    "ok/alpha.py": 'def alpha_walker(tree):\n    """Walk the tree breadth first."""\n    return list(tree)\n',
    "ok/beta.js": "function betaRunner(items) {\n  // run every item once\n  return items.map((x) => x * 2);\n}\n",
    "ok/gamma.md": "# Gamma guide\n\nHow the gamma pipeline retries failed uploads.\n",
    "ok/delta.go": "package ok\n\n// DeltaSum adds numbers.\nfunc DeltaSum(a, b int) int {\n\treturn a + b\n}\n",
}
OUTSIDE_MARKER = "outside_secret_marker"


@dataclass
class Case:
    path: str  # repo-relative POSIX; for unprintable names the escaped form the run reports
    expect: str  # "indexed" | "empty" | "skipped" | "ignored"
    why: str
    reason: str | None = None  # key in skipped_reasons (expect == "skipped")
    text: str | None = None  # the decoded file (expect == "indexed")
    contains: str | None = None
    lines: dict[str, int] = field(default_factory=dict)  # marker -> the line it starts


def split_lines(text: str) -> list[str]:
    """Lines as an editor counts them: ``\\r\\n``, ``\\r`` and ``\\n`` end a line, nothing
    else does (not form feed, U+0085 or U+2028, unlike ``str.splitlines``)."""
    return text.replace("\r\n", "\n").replace("\r", "\n").split("\n")


def _marker_lines(text: str, markers: list[str]) -> dict[str, int]:
    lines = split_lines(text)
    out = {}
    for m in markers:
        out[m] = next(i for i, ln in enumerate(lines, 1) if ln.lstrip().startswith(m))
    return out


class _Writer:
    def __init__(self, root: Path):
        self.root = root
        self.cases: list[Case] = []

    def raw(self, rel: str, data: bytes) -> Path:
        p = self.root / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(data)
        return p

    def indexed(self, rel, why, text, *, data=None, contains=None, markers=()):
        """A file that must be indexed: ``text`` is what it decodes to (``data`` its bytes,
        UTF-8 of ``text`` by default)."""
        self.raw(rel, text.encode("utf-8") if data is None else data)
        self.cases.append(
            Case(
                rel,
                "indexed",
                why,
                text=text,
                contains=contains,
                lines=_marker_lines(text, list(markers)),
            )
        )

    def skipped(self, rel, why, reason, data: bytes | None = None):
        if data is not None:
            self.raw(rel, data)
        self.cases.append(Case(rel, "skipped", why, reason))


def build(root: Path, *, seed: int = 9, huge: bool = True) -> list[Case]:
    """Write the hostile corpus under ``root``; ``huge=False`` leaves out the 50 MB file."""
    rng = random.Random(seed)
    root.mkdir(parents=True, exist_ok=True)
    w = _Writer(root)

    for rel, text in OK_FILES.items():
        w.indexed(rel, "ordinary file next to hostile ones", text, contains=text.split("\n")[0])

    # ------------------------------------------------------------------ binary content
    blob = bytes(rng.randrange(256) for _ in range(4096))
    w.skipped(
        "bin/blob.py",
        "binary bytes under a source extension",
        "binary",
        b"\x89PNG\r\n\x1a\n\0" + blob,
    )
    noisy = bytes(rng.choice([*range(1, 9), *range(14, 32), *range(127, 160)]) for _ in range(4096))
    w.skipped("bin/nonul.js", "binary without any NUL byte (control characters)", "binary", noisy)
    w.skipped(
        "bin/late_nul.c",
        "a NUL byte after the first 8 KiB",
        "binary",
        b"int x;\n" * 2000 + b"\0;\n",
    )
    w.skipped(
        "bin/utf16_binary.py",
        "UTF-16 BOM, then binary",
        "binary",
        b"\xff\xfea\0" + b"\0\0" * 64 + b"b\0",
    )
    w.raw("bin/picture.png", b"\x89PNG\r\n\x1a\n" + blob)
    w.cases.append(Case("bin/picture.png", "ignored", "binary extension: never read"))

    # ------------------------------------------------------------------------ encodings
    t = "def utf16_reader():\r\n    return 'ünïcödé'\r\n\r\ndef utf16_marker():\r\n    pass\r\n"
    w.indexed(
        "enc/utf16le.py",
        "UTF-16 LE with BOM and CRLF",
        t,
        data=b"\xff\xfe" + t.encode("utf-16-le"),
        contains="ünïcödé",
        markers=["def utf16_marker"],
    )
    t = "# UTF-16 big endian\n\nThe bigendian_marker section.\n"
    w.indexed(
        "enc/utf16be.md",
        "UTF-16 BE with BOM",
        t,
        data=b"\xfe\xff" + t.encode("utf-16-be"),
        contains="bigendian_marker",
    )
    t = "def utf32_reader():\n    return 'zweiunddreißig'\n"
    w.indexed(
        "enc/utf32.py", "UTF-32 with BOM", t, data=t.encode("utf-32"), contains="zweiunddreißig"
    )
    t = "def bom_reader():\n    return 'bom'\n"
    w.indexed(
        "enc/utf8bom.py",
        "UTF-8 with BOM",
        t,
        data=b"\xef\xbb\xbf" + t.encode(),
        markers=["def bom_reader"],
    )
    t = "# café crème\ndef latin_reader():\n    return 'naïve façade'\n"
    w.indexed(
        "enc/latin1.py", "Latin-1 source", t, data=t.encode("latin-1"), contains="naïve façade"
    )
    t = "Smart \u201cquotes\u201d and an en\u2013dash from a Windows editor: cp1252_marker.\n"
    w.indexed(
        "enc/cp1252.txt",
        "Windows-1252 text",
        t,
        data=t.encode("cp1252"),
        contains="\u201cquotes\u201d",
    )
    t = "def mostly_utf8():\n    return 'grüße'\n# stray \ufffd byte\n"
    w.indexed(
        "enc/bad_utf8.py",
        "UTF-8 with one invalid byte: the valid text survives",
        t,
        data=t.replace("\ufffd", "").encode().replace(b"stray  byte", b"stray \xe9 byte"),
        contains="grüße",
    )
    w.skipped(
        "enc/odd_utf16.py",
        "UTF-16 BOM and an odd number of bytes",
        "invalid UTF-16",
        b"\xff\xfea\0b\0c",
    )

    # ---------------------------------------------------------------- size and shape
    if huge:
        line = b"value = 'fifty megabytes of python'\n"
        w.skipped(
            "big/huge.py",
            "a 50 MB file",
            "larger than 1,000,000 bytes",
            line * (50 * 2**20 // len(line) + 1),
        )
    minified = "var a=1;" + "".join(f"function f{i}(x){{return x*{i}}};" for i in range(200_000))
    w.skipped(
        "big/bundle.js",
        "5 MB single-line minified JS",
        "larger than 1,000,000 bytes",
        minified[: 5 * 2**20].encode(),
    )
    w.skipped(
        "big/app.js",
        "400 KB single-line minified JS",
        "minified or generated",
        minified[:400_000].encode(),
    )
    # 100 brackets a line: 10,000 deep, but not one long line (that would be "minified")
    t = (
        "nested_marker = (\n"
        + ("[" * 100 + "\n") * 100
        + ("]" * 100 + "\n") * 100
        + ")\n\ndef after_nesting():\n    return 1\n"
    )
    w.indexed(
        "deep/nested.py",
        "10,000 nested brackets (Python)",
        t,
        markers=["nested_marker", "def after_nesting"],
    )
    t = (
        "const deep = "
        + ("{a:" * 50 + "\n") * 200
        + "1"
        + ("}" * 50 + "\n") * 200
        + ";\nfunction afterDeep() { return 2; }\n"
    )
    w.indexed("deep/nested.js", "10,000 nested objects (JS)", t, markers=["function afterDeep"])
    t = "function broken() {\n" + ("(" * 100 + "\n") * 100
    w.indexed("deep/unclosed.js", "10,000 unclosed parentheses", t, contains="function broken")
    t = (
        "def fine_before():\n    return 1\n\n"
        "def broken(:\n    pass\n\n"
        "class Half\n    def m(self): return 2\n\n"
        "def fine_after():\n    return 3\n"
    )
    w.indexed(
        "syntax/broken.py", "Python syntax errors", t, markers=["def fine_before", "def fine_after"]
    )
    t = "export function ok(a: number) { return a }\nclass { {{ ]]\nlet = ;\n"
    w.indexed("syntax/broken.ts", "TypeScript syntax errors", t, contains="function ok")

    for rel, data, why in [
        ("empty/empty.py", b"", "an empty file"),
        ("empty/blank.md", b"\n\n   \n\t\n", "whitespace only"),
        ("empty/bom_only.py", b"\xef\xbb\xbf", "a BOM and nothing else"),
    ]:
        w.raw(rel, data)
        w.cases.append(Case(rel, "empty", why))

    # ------------------------------------------------------------------- line endings
    t = "import os\r\n\r\n\r\ndef crlf_first():\r\n    return 1\r\n\r\n\r\ndef crlf_second():\r\n    return 2\r\n"
    w.indexed("eol/crlf.py", "CRLF line endings", t, markers=["def crlf_first", "def crlf_second"])
    t = (
        "# mixed endings\r\n\n"
        "def mixed_one():\n    return 1\r\n\r\n"
        "def mixed_two():\r    return 2\r\r"
        "def mixed_three():\n    return 3\n"
    )
    w.indexed(
        "eol/mixed.py",
        "CRLF, LF and lone CR in one file",
        t,
        markers=["def mixed_one", "def mixed_two", "def mixed_three"],
    )
    t = "/* classic mac */\rint mac_one(void) { return 1; }\r\rint mac_two(void) { return 2; }\r"
    w.indexed("eol/cr_only.c", "CR-only line endings", t, markers=["int mac_one", "int mac_two"])
    # characters str.splitlines() breaks at, but editors, git and tree-sitter do not
    t = (
        "# page one\n\x0c\n"
        "def after_formfeed():\n    s = 'a\x0bb\x1cc\x1dd\x1ee\x85f\u2028g\u2029h'\n    return s\n\n"
        "def odd_breaks_marker():\n    return 0\n"
    )
    w.indexed(
        "eol/oddbreaks.py",
        "form feed, VT, FS/GS/RS, U+0085, U+2028 inside lines",
        t,
        markers=["def after_formfeed", "def odd_breaks_marker"],
    )
    t = "def no_final_newline():\n    return 'eof'"
    w.indexed("eol/no_eol.py", "no newline at the end", t, contains="return 'eof'")

    # --------------------------------------------------------------------------- links
    outside = root.parent / f"{root.name}-outside"
    outside.mkdir(exist_ok=True)
    (outside / "secret.py").write_text(f"def {OUTSIDE_MARKER}():\n    return 'leak'\n")
    links = root / "links"
    links.mkdir()
    for name, target, why in [
        ("loop_a", "loop_b", "symlink loop"),
        ("loop_b", "loop_a", "symlink loop"),
        ("self_loop", "self_loop", "link to itself"),
        ("parent_dir", "..", "link to a parent folder"),
        ("outside.py", str(outside / "secret.py"), "link to a file outside the repository"),
        ("outside_dir", str(outside), "link to a folder outside the repository"),
        ("dangling.py", "does_not_exist.py", "dangling link"),
        ("inside.py", "../ok/alpha.py", "link to a file inside (indexed under its own path)"),
    ]:
        os.symlink(target, links / name)
        w.skipped(f"links/{name}", why, "symbolic link")

    # ------------------------------------------------------------------ special files
    (root / "special").mkdir()
    os.mkfifo(root / "special" / "pipe.py")
    w.skipped("special/pipe.py", "a FIFO (opening it would block)", "not a regular file")

    # -------------------------------------------------------------------------- names
    names = os.path.join(os.fsencode(root), b"names")
    os.mkdir(names)
    for raw, shown, kind in [
        (b"caf\xe9.py", "names/caf\\xe9.py", "file"),
        (b"\xff\xfe.md", "names/\\xff\\xfe.md", "file"),
        (b"dir\xff", "names/dir\\xff", "folder"),
    ]:
        target = os.path.join(names, raw)
        if kind == "folder":
            os.mkdir(target)
            target = os.path.join(target, b"inner.py")
        with open(target, "wb") as fh:
            fh.write(b"def bad_name_file():\n    pass\n")
        w.skipped(shown, f"non-UTF-8 {kind} name", "file name is not valid UTF-8")
    for name in ["new\nline.py", "tab\tname.py", "esc\x1b[31m.py"]:
        w.raw(f"names/{name}", b"def control_char_name():\n    pass\n")
        shown = f"names/{name}".encode("unicode_escape").decode("ascii")
        w.skipped(shown, "control character in the file name", "file name has control characters")
    for i, name in enumerate(ODD_NAMES):
        w.indexed(
            f"names/{name}",
            "unusual but valid file name",
            f"def odd_name_{i}():\n    return 'oddname{i}'\n",
            contains=f"oddname{i}",
        )
    return w.cases


#: valid file names that are hard to quote: in SQL, in LIKE, in globs, in shells
ODD_NAMES = [
    "quote'd.py",
    'double"quote.py',
    "back\\slash.py",
    "100%_sure.py",
    "a_b.py",
    "axb.py",
    "spa ce.py",
    "ünïcödé.py",
    "emoji😀.py",
    "-dash.py",
    "[brackets].py",
    "star*.py",
    "what?.py",
    "semi;colon.py",
    "x" * 200 + ".py",
]


def reason_counts(cases: list[Case]) -> dict[str, int]:
    """How many skips of each reason the corpus must produce."""
    out: dict[str, int] = {}
    for c in cases:
        if c.expect == "skipped":
            out[c.reason] = out.get(c.reason, 0) + 1
    return out


_DROP_DAC = textwrap.dedent(
    """
    import ctypes, os, sys
    libc = ctypes.CDLL(None, use_errno=True)
    for cap in (1, 2):  # CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH, out of the bounding set
        if libc.prctl(24, cap, 0, 0, 0) != 0:  # PR_CAPBSET_DROP
            sys.exit(77)
    os.execv(sys.argv[1], sys.argv[1:])
    """
)


def as_unprivileged(argv: list[str]) -> list[str]:
    """Root reads mode-000 files (CAP_DAC_OVERRIDE). Dropping that capability (and
    CAP_DAC_READ_SEARCH) from the bounding set before exec gives a process that is still
    uid 0, owns the files, writes the index, but gets EACCES where the mode bits say no."""
    if os.geteuid() != 0:
        return argv
    return [sys.executable, "-c", _DROP_DAC, *argv]
