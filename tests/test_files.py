"""The one path filter (``files.PathFilter``): what the walk, the index, the hooks and the
watcher all ask before a path is indexed. Real files in tmp folders, no model."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from coderag.config import Config
from coderag.files import PathFilter, Refusal, decode, read_bytes, walk


def make(root: Path, files: dict[str, str]) -> Path:
    for rel, text in files.items():
        p = root / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(text)
    return root


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    return make(
        tmp_path / "repo",
        {
            "src/app.py": "x = 1\n",
            "src/logo.png": "not really\n",
            "src/LOGO.PNG": "not really\n",
            "src/bundle.min.js": "var a;\n",
            "node_modules/pad/index.js": "function pad() {}\n",
            "build/out.py": "y = 2\n",
            "lib/build": "a file named build\n",
            ".git/config": "[core]\n",
            ".coderag.toml": "[coderag]\n",
            ".coderag.tmp-1/stray.py": "z = 3\n",
            "env/pyvenv.cfg": "home = /usr\n",
            "env/lib/site.py": "def site(): pass\n",
            ".gitignore": "*.log\ndata/\n!data/keep.txt\n",
            ".coderagignore": "secret/\n",
            "secret/key.py": "KEY = 1\n",
            "data/keep.txt": "kept? no: its folder is excluded\n",
            "notes.log": "log\n",
            "docs/.gitignore": "draft.md\n",
            "docs/draft.md": "# draft\n",
            "docs/final.md": "# final\n",
            "draft.md": "# top-level draft\n",
            "generated/gen.py": "g = 1\n",
        },
    )


def test_refusals_name_their_reason(tree: Path):
    f = PathFilter(tree, Config(ignore=["generated/"]))
    assert f.refusal("src/app.py") is None
    assert f.refusal("node_modules/pad/index.js") is Refusal.IGNORED  # a default ignore
    assert f.refusal("build/out.py") is Refusal.IGNORED
    assert f.refusal("src/logo.png") is Refusal.BINARY
    assert f.refusal("src/LOGO.PNG") is Refusal.BINARY
    assert f.refusal("src/bundle.min.js") is Refusal.IGNORED
    assert f.refusal(".git/config") is Refusal.VCS
    assert f.refusal(".coderag.tmp-1/stray.py") is Refusal.VCS  # a folder coderag is making
    assert f.refusal(".coderag.toml") is None  # the settings file is not the index
    assert f.refusal("env/lib/site.py") is Refusal.VIRTUALENV
    assert f.refusal("env", is_dir=True) is Refusal.VIRTUALENV
    assert f.refusal("secret/key.py") is Refusal.IGNORED  # .coderagignore
    assert f.refusal("generated/gen.py") is Refusal.IGNORED  # the ignore setting
    assert f.refusal("notes.log") is Refusal.IGNORED
    assert f.refusal("") is None  # the root is always entered


def test_folder_rules_apply_to_folders_only(tree: Path):
    f = PathFilter(tree, Config())
    assert f.accepts("lib/build")  # "build/" names folders
    assert not f.accepts("lib/build", is_dir=True)
    assert f.accepts("src", is_dir=True)


def test_nested_gitignore_and_no_reinclusion_below_an_excluded_folder(tree: Path):
    f = PathFilter(tree, Config())
    assert not f.accepts("docs/draft.md")
    assert f.accepts("docs/final.md")
    assert f.accepts("draft.md")  # docs/.gitignore applies below docs/ only
    # git cannot re-include a file below an excluded folder, so neither may we
    assert not f.accepts("data/keep.txt")


def test_links_are_refused_when_the_rules_refuse_them_either_way(tree: Path):
    f = PathFilter(tree, Config())
    assert not f.accepts("lib/build", is_dir=None)  # would be an ignored folder
    assert not f.accepts("notes.log", is_dir=None)  # would be an ignored file
    assert f.accepts("src/link.py", is_dir=None)
    # never looked through: a link to a virtualenv is not a virtualenv
    os.symlink(tree / "env", tree / "venv-link")
    assert f.accepts("venv-link", is_dir=None)


def test_a_new_filter_sees_new_rules(tree: Path):
    before = PathFilter(tree, Config())
    assert before.accepts("src/app.py")
    (tree / "src" / "pyvenv.cfg").write_text("home = /usr\n")
    assert before.accepts("src/app.py")  # folder decisions are kept for the filter's life
    assert PathFilter(tree, Config()).refusal("src/app.py") is Refusal.VIRTUALENV


def test_the_walk_lists_exactly_the_files_the_filter_accepts(tree: Path):
    config = Config(ignore=["generated/"])
    f = PathFilter(tree, config)
    every = [
        (Path(d) / name).relative_to(tree).as_posix()
        for d, _, names in os.walk(tree)
        for name in names
    ]
    found, skipped = walk(tree, config)
    assert {e.path for e in found} == {rel for rel in every if f.accepts(rel)}
    assert skipped == []  # refusals are quiet: the rules asked for them


def test_walk_under_a_refused_folder_finds_nothing(tree: Path):
    assert walk(tree, Config(), under="node_modules") == ([], [])
    assert walk(tree, Config(), under="env/lib") == ([], [])
    found, _ = walk(tree, Config(), under="src")
    assert [e.path for e in found] == ["src/app.py"]


# ---------------------------------------------------------------- decoding and reading
@pytest.mark.parametrize(
    ("data", "expect"),
    [
        (b"a" * 5 * 2**20, "minified or generated"),  # 5 MB on one line, whatever the size cap
        (b"\xff\xfe" + "x = 1\r\n".encode("utf-16-le"), "x = 1\n"),
        (b"\xfe\xff" + "x = 1\n".encode("utf-16-be"), "x = 1\n"),
        ("x = 'ß'\n".encode("utf-32"), "x = 'ß'\n"),
        (b"\xff\xfex", "invalid UTF-16"),
        (b"\xff\xfe\x00\x00\x00", "invalid UTF-32"),
        (b"\xef\xbb\xbfx = 1\r", "x = 1\n"),
        ("na\u00efve\n".encode("latin-1"), "na\u00efve\n"),
        ("\u201cq\u201d\n".encode("cp1252"), "\u201cq\u201d\n"),
        ("gr\u00fc\u00dfe ".encode() + b"\xe9\n", "gr\u00fc\u00dfe \ufffd\n"),
        (b"\x81\x8d\xe9 ok\n", "\x81\x8d\u00e9 ok\n"),  # not cp1252 either: Latin-1, few controls
        (b"\x01\x02\x03\x04" * 64, "binary"),
        (b"ok\n" * 5000 + b"\x00", "binary"),
        (b"a\x1b[31mred\x1b[0m\n" * 100, "a\x1b[31mred\x1b[0m\n" * 100),  # ANSI colours are text
        (b"", ""),
    ],
    ids=lambda v: repr(v)[:24] if isinstance(v, bytes | str) else None,
)
def test_decode(data, expect):
    got = decode("f.py", data)
    if hasattr(got, "reason"):
        assert got.reason.startswith(expect), got
    else:
        assert got.text == expect


def test_read_bytes_never_blocks_follows_or_raises(tmp_path):
    (tmp_path / "f.py").write_text("x = 1\n")
    os.mkfifo(tmp_path / "fifo.py")
    os.symlink("f.py", tmp_path / "link.py")
    (tmp_path / "folder.py").mkdir()
    assert read_bytes(tmp_path, "f.py", 100) == b"x = 1\n"
    assert read_bytes(tmp_path, "f.py", 3).reason.startswith("larger than")
    assert read_bytes(tmp_path, "gone.py", 100).reason == "vanished before it could be read"
    assert read_bytes(tmp_path, "fifo.py", 100).reason.startswith("not a regular file")  # no hang
    assert read_bytes(tmp_path, "link.py", 100).reason.startswith("symbolic link")
    assert read_bytes(tmp_path, "folder.py", 100).reason == "is a folder"


# ------------------------------------------------------------------------- ignore rules
GITIGNORE = """\
# a comment, and a blank line

\\#hash.txt
\\!bang.txt
*.log
!keep.log
trailing.txt~~~
escaped\\~
build-out/
**/cache/**
docs/**/draft-*.md
[abc]-class.txt
file[0-9].txt
[!x]y.txt
/anchored.txt
logs/
!logs/important.log
/data/*
!/data/keep/
deep/**/leaf.txt
*.tmp
!/special.tmp
sub/*.md
everything/
!everything/wanted.py
/whitelist/*
!/whitelist/*.py
""".replace("~", " ")  # "~" stands for a trailing space (trimmed by git unless escaped)
SUB_GITIGNORE = "*.txt\n!important.txt\n/only-here.py\nnested/\n"
DEEPER_GITIGNORE = "!*.txt\n"
IGNORE_TREE = """
#hash.txt !bang.txt a.log keep.log sub/b.log trailing.txt escaped plain.py
build-out/x.py x/build-out a/cache/b/c.py cache/top.py cachey/top.py
docs/x/y/draft-1.md docs/draft-2.md docs/final.md a-class.txt d-class.txt
file1.txt filex.txt ay.txt xy.txt anchored.txt sub/anchored.txt
logs/important.log logs/x.txt data/a.txt data/keep/b.txt data/drop/c.txt
deep/leaf.txt deep/a/b/leaf.txt x.tmp special.tmp sub/special.tmp
sub/readme.md sub/inner/readme.md readme.md sub/a.txt sub/important.txt
sub/only-here.py sub/x/only-here.py sub/nested/f.py nested/f.py sub/deeper/z.txt
everything/wanted.py everything/other.py whitelist/a.py whitelist/b.txt whitelist/deep/c.py
""".split()


def test_gitignore_odd_patterns_match_git(tmp_path):
    """Negations, ``**``, trailing spaces (plain and escaped), escaped ``#`` and ``!``,
    character classes, anchoring, nested ``.gitignore`` files, re-including below an
    excluded folder (git cannot, so neither may we): the walk lists exactly the files
    ``git ls-files --others --exclude-standard`` lists."""
    from coderag.config import Config

    if shutil.which("git") is None:
        pytest.skip("git is not installed: it is the oracle here")
    root = tmp_path / "repo"
    root.mkdir()
    env = {
        **os.environ,
        "GIT_CONFIG_GLOBAL": os.devnull,
        "GIT_CONFIG_NOSYSTEM": "1",
        "HOME": str(tmp_path),
        "XDG_CONFIG_HOME": str(tmp_path),
    }
    subprocess.run(["git", "init", "-q", str(root)], check=True, env=env)
    (root / ".gitignore").write_text(GITIGNORE)
    for rel in [*IGNORE_TREE, "escaped "]:
        p = root / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(f"# {rel}\n")
    (root / "sub" / ".gitignore").write_text(SUB_GITIGNORE)
    (root / "sub" / "deeper").mkdir(exist_ok=True)
    (root / "sub" / "deeper" / ".gitignore").write_text(DEEPER_GITIGNORE)
    out = subprocess.run(
        ["git", "ls-files", "--others", "--exclude-standard", "-z"],
        cwd=root,
        env=env,
        capture_output=True,
        check=True,
    ).stdout
    by_git = {p for p in os.fsdecode(out).split("\0") if p}
    found, _ = walk(root, Config())
    assert {f.path for f in found} == by_git
