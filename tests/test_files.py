"""The one path filter (``files.PathFilter``): what the walk, the index, the hooks and the
watcher all ask before a path is indexed. Real files in tmp folders, no model."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from coderag.config import Config
from coderag.files import PathFilter, Refusal, walk


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
