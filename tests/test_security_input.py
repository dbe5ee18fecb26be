"""A cloned repository is untrusted input: its file contents, file names and settings file.
Each test plays an attack such a repository could carry out, on a real repository through the
real CLI or library, and checks that it now fails safely.

* terminal escapes (OSC 52 clipboard writes, OSC 8 links, CSI, C1 controls, bidi overrides,
  rich markup) in files, names and symbols reach the terminal only as visible escapes;
* ``--path`` globs cost time linear in the path, whatever the pattern (no backtracking);
* settings of the wrong type or out of range are one line, not a traceback; a model named by
  the repository's settings is never downloaded unless the user allows it.

The functions underneath are unit-tested on their own in test_display.py (escaping),
test_globs.py (the matcher against the one it replaced) and test_config.py (setting checks).
"""

from __future__ import annotations

import http.server
import json
import os
import re
import shutil
import threading
import time
from pathlib import Path

import pytest

from coderag.display import BIDI
from coderag.globs import MAX_GLOB_CHARS

from .conftest import run_cli
from .test_config import BAD_SETTINGS

# ----------------------------------------------------------------------- terminal escapes
OSC52 = "\x1b]52;c;ZWNobyBwd25lZA==\x07"  # write "echo pwned" to the clipboard
OSC8 = "\x1b]8;;https://evil.example/\x1b\\click here\x1b]8;;\x1b\\"
CLEAR = "\x1b[2J\x1b[H"
C1_CSI = "\x9b31m"
RLO = "\u202e"
MARKUP = "[link=https://evil.example/]docs[/link] [bold red]ALERT[/bold red]"

LRI, PDI, RLM, ALM = "\u2066", "\u2069", "\u200f", "\u061c"
HOSTILE_PY = f'''def clipboard_helper():
    """Copies the clipboard. {OSC52} {OSC8} {CLEAR}"""
    access = "user"  # {RLO} {LRI}if access != "admin"{PDI} {RLM}{ALM}
    note = "{C1_CSI} clipboard \x7f\x08 {MARKUP}"
    return access, note
'''
HOSTILE_MD = f"# Clipboard {OSC52}title\n\nThe clipboard section {CLEAR} {MARKUP}.\n"
HOSTILE_NAME = f"clip{RLO}yp.board\x9b.py"  # bidi and a C1 control are valid in a name


def _raw_controls(text: str) -> list[str]:
    """Characters that must never reach a terminal raw (tab and newline are structure)."""
    return [
        c for c in text if c in BIDI or (ord(c) < 32 and c not in "\t\n") or 0x7F <= ord(c) <= 0x9F
    ]


@pytest.fixture
def hostile_repo(tmp_path: Path) -> Path:
    root = tmp_path / f"repo{RLO}gnp"  # the folder name shows up in `status`
    root.mkdir()
    (root / "clip.py").write_text(HOSTILE_PY)
    (root / "CLIPBOARD.md").write_text(HOSTILE_MD)
    (root / HOSTILE_NAME).write_text("def clipboard_named():\n    return 'clipboard'\n")
    (root / f"bin{RLO}ary.py").write_bytes(b"clipboard\x00\x00\x01binary")  # skipped, named
    return root


@pytest.mark.slow
def test_search_output_shows_terminal_escapes_instead_of_sending_them(hostile_repo):
    r = run_cli("index", str(hostile_repo), "--lexical-only", "-v")
    assert r.returncode == 0, r.stderr
    assert not _raw_controls(r.stdout + r.stderr), r.stderr
    assert "skipped bin\\u202eary.py: binary" in r.stderr  # the skipped-file line

    env = {
        "NO_COLOR": "1",
        "TERM": "dumb",
        "FORCE_COLOR": "",
        "TTY_COMPATIBLE": "",
        "COLUMNS": "300",
    }
    r = run_cli(
        "search", "clipboard", "--repo", str(hostile_repo), "--mode", "lexical",
        "-k", "10", "--no-server", env=env,
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    out = r.stdout
    assert not _raw_controls(out), sorted(set(_raw_controls(out)))
    # every sequence is still there, visibly: contents, symbol (a heading) and file name
    for shown in ["\\x1b]52;c;ZWNobyBwd25lZA==\\a", "\\x1b]8;;https://evil.example/\\x1b\\",
                  "\\x1b[2J\\x1b[H", "\\x9b31m", "\\u202e", "\\u2066", "\\u2069", "\\u200f",
                  "\\u061c", "\\x7f\\b", "clip\\u202eyp.board\\x9b.py:1-2"]:  # fmt: skip
        assert shown in out, shown
    assert "Clipboard \\x1b]52;c;" in out  # the Markdown heading: the doc chunk's symbol
    assert MARKUP in out  # rich markup printed literally, never interpreted

    # with colours forced on, the only escape sequences are coderag's own SGR colours
    r = run_cli(
        "search", "clipboard", "--repo", str(hostile_repo), "--mode", "lexical",
        "-k", "10", "--no-server", env={"FORCE_COLOR": "1", "NO_COLOR": "", "COLUMNS": "300"},
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    assert "\x1b[" in r.stdout  # styled
    assert not _raw_controls(re.sub(r"\x1b\[[0-9;]*m", "", r.stdout))
    assert "\x1b]" not in r.stdout  # no OSC: no clipboard write, no hyperlink

    # --json is for programs: exact text, with JSON's own escaping
    r = run_cli(
        "search", "clipboard", "--repo", str(hostile_repo), "--mode", "lexical", "--json",
        "--no-server",
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    assert "\x1b" not in r.stdout and "\\u001b]52" in r.stdout
    assert any(OSC52 in h["text"] for h in json.loads(r.stdout))

    r = run_cli("status", "--repo", str(hostile_repo))
    assert r.returncode == 0, r.stderr
    assert not _raw_controls(r.stdout) and "repo\\u202egnp" in r.stdout


def test_log_lines_of_the_faces_escape_file_names(capsys):
    from coderag import hooks, watch
    from coderag.server.background import stderr_logger

    line = f"  updated evil{OSC52}{RLO}.py"
    watch.log_to_stderr(line)
    stderr_logger()(line)  # coderag mcp
    stderr_logger("coderag serve: ")(line)
    err = capsys.readouterr().err
    assert not _raw_controls(err) and err.count("evil\\x1b]52;c;") == 3
    assert hooks.describe({"event": "x", "via": "skipped", "note": "n"})  # no repository text


# ------------------------------------------------------------------------------- glob ReDoS
@pytest.mark.slow
def test_hostile_glob_through_the_cli_is_answered_quickly(tmp_path):
    root = tmp_path / "repo"
    deep = root.joinpath(*"abcdefghijklmnop")
    deep.mkdir(parents=True)
    (deep / "uploader.py").write_text("def upload():\n    return 'upload'\n")
    (root / "top.py").write_text("def upload_top():\n    return 'upload'\n")
    assert run_cli("index", str(root), "--lexical-only", "-q").returncode == 0
    base = ["search", "upload", "--repo", str(root), "--mode", "lexical", "--json", "--no-server"]

    def timed(glob):
        t0 = time.perf_counter()
        r = run_cli(*base, "--path", glob)
        return r, time.perf_counter() - t0

    r, benign = timed("**/*.py")
    assert r.returncode == 0 and len(json.loads(r.stdout)) == 2, r.stderr
    for glob in ["**/" * 200 + "[z]", "**/" * 200 + "uploader.py", "a/" + "**/" * 100 + "*.py"]:
        r, took = timed(glob)  # the old matcher: minutes to hours per search
        assert r.returncode == 0, r.stderr
        assert took < benign + 2.0, (glob[:12], took, benign)
        want = [] if "[z]" in glob else [str(Path(*"abcdefghijklmnop") / "uploader.py")]
        assert [h["path"] for h in json.loads(r.stdout)] == want
    # a folder, and "**/" matching no folder at all (both were dropped by the LIKE pre-filter)
    r = run_cli(*base, "--path", "a")
    assert len(json.loads(r.stdout)) == 1, r.stderr
    r = run_cli(*base, "--path", "**/top.py")
    assert [h["path"] for h in json.loads(r.stdout)] == ["top.py"], r.stderr
    r = run_cli(*base, "--path", "*" * (MAX_GLOB_CHARS + 1))
    assert r.returncode == 1 and r.stderr.count("\n") == 1 and "too long" in r.stderr


# ----------------------------------------------------------------------------- settings
@pytest.mark.parametrize("setting", BAD_SETTINGS)
def test_bad_settings_are_one_line_not_a_traceback(smallrepo, setting):
    (smallrepo / ".coderag.toml").write_text(setting + "\n")
    name = setting.split()[0].strip("[]")
    for args in (["index", str(smallrepo), "-q"], ["search", "x", "--repo", str(smallrepo)]):
        r = run_cli(*args)
        assert r.returncode == 1, (setting, r.stdout, r.stderr)
        assert r.stderr.count("\n") == 1 and "Traceback" not in r.stderr, r.stderr
        assert name in r.stderr and ".coderag.toml" in r.stderr, r.stderr


class _Recorder(http.server.BaseHTTPRequestHandler):
    """A stand-in Hugging Face Hub: records every request, answers 404."""

    seen: list[str] = []

    def _answer(self):
        type(self).seen.append(self.path)
        self.send_response(404)
        self.send_header("X-Error-Code", "RepositoryNotFound")
        self.send_header("Content-Length", "0")
        self.end_headers()

    do_GET = do_HEAD = _answer

    def log_message(self, *args):
        pass


@pytest.fixture
def fake_hub(tmp_path):
    """HF_ENDPOINT pointing at a local recorder, offline switches off, an empty HF cache."""
    _Recorder.seen = []
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Recorder)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    env = {
        k: v for k, v in os.environ.items() if k not in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")
    }
    env |= {
        "HF_ENDPOINT": f"http://127.0.0.1:{srv.server_address[1]}",
        "HF_HOME": str(tmp_path / "hf"),
    }
    env.pop("CODERAG_ALLOW_DOWNLOAD", None)
    yield env, _Recorder.seen
    srv.shutdown()
    srv.server_close()


def _cli(env, *args):
    import subprocess
    import sys

    return subprocess.run(
        [sys.executable, "-m", "coderag", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )


@pytest.mark.slow
def test_a_hub_model_named_by_the_repository_is_not_downloaded(smallrepo, fake_hub, tmp_path):
    env, seen = fake_hub
    (smallrepo / ".coderag.toml").write_text('model = "someorg/some-model"\n')
    r = _cli(env, "index", str(smallrepo), "-q")
    assert r.returncode == 1 and r.stderr.count("\n") == 1, r.stderr
    assert "CODERAG_ALLOW_DOWNLOAD=1" in r.stderr and ".coderag.toml" in r.stderr
    assert seen == []  # not one request reached the (fake) hub

    # the reranker too, at search time
    (smallrepo / ".coderag.toml").write_text('rerank_model = "someorg/some-reranker"\n')
    assert _cli(env, "index", str(smallrepo), "--lexical-only", "-q").returncode == 0
    r = _cli(env, "search", "upload", "--repo", str(smallrepo), "--mode", "lexical", "--rerank",
             "--no-server")  # fmt: skip
    assert r.returncode == 1 and r.stderr.count("\n") == 1, r.stderr
    assert "CODERAG_ALLOW_DOWNLOAD=1" in r.stderr and "--rerank-model" in r.stderr
    assert seen == []

    # with the opt-in, the download is attempted (the recorder sees it, answers 404)
    r = _cli({**env, "CODERAG_ALLOW_DOWNLOAD": "1"}, "search", "upload", "--repo",
             str(smallrepo), "--mode", "lexical", "--rerank", "--no-server")  # fmt: skip
    assert r.returncode == 1 and "CODERAG_ALLOW_DOWNLOAD" not in r.stderr
    assert any("someorg/some-reranker" in p for p in seen), seen


@pytest.mark.slow
def test_a_folder_outside_the_repository_that_is_no_model_fails_cleanly(smallrepo, tmp_path):
    outside = tmp_path / "not-a-model"
    outside.mkdir()
    (outside / "secrets.txt").write_text("hunter2")
    for value in [str(outside), str(outside / "secrets.txt"), "/nonexistent/model/folder"]:
        (smallrepo / ".coderag.toml").write_text(f"model = {json.dumps(value)}\n")
        r = run_cli("index", str(smallrepo), "-q")
        assert r.returncode == 1 and r.stderr.count("\n") == 1, r.stderr
        assert "Traceback" not in r.stderr and "hunter2" not in r.stderr


@pytest.mark.slow
def test_a_cached_hub_model_named_by_the_repository_loads_without_a_request(
    smallrepo, fake_hub, tmp_path
):
    """Local files are fine: a model the user already has in the Hugging Face cache loads
    from there (found on the file system; not one request), without any opt-in."""
    from coderag.models import bundled_model_path

    env, seen = fake_hub
    snapshot = Path(env["HF_HOME"]) / "hub" / "models--someorg--cached-minilm"
    rev = "0123456789abcdef0123456789abcdef01234567"
    (snapshot / "refs").mkdir(parents=True)
    (snapshot / "refs" / "main").write_text(rev)
    (snapshot / "snapshots").mkdir()
    (snapshot / "snapshots" / rev).symlink_to(bundled_model_path(), target_is_directory=True)
    (smallrepo / ".coderag.toml").write_text('model = "someorg/cached-minilm"\n')
    r = _cli(env, "index", str(smallrepo), "--json")
    assert r.returncode == 0, r.stderr
    r = _cli(env, "status", "--repo", str(smallrepo), "--json")
    assert json.loads(r.stdout)["model"] == "someorg/cached-minilm"
    assert seen == []


@pytest.mark.slow
def test_a_model_folder_inside_the_repository_is_not_loaded_on_its_say_so(smallrepo):
    """A repository that ships a "model" (modules.json naming classes to import, pickled
    weights) and points its settings at it: refused in one line; the user may still name it."""
    from coderag.models import bundled_model_path

    shutil.copytree(bundled_model_path(), smallrepo / "vendor-model")
    (smallrepo / ".coderag.toml").write_text('model = "vendor-model"\n')
    r = run_cli("index", str(smallrepo), "--lexical-only")
    assert r.returncode == 1 and "inside the repository" in r.stderr, r.stderr
    assert len(r.stderr.strip().splitlines()) == 1 and "Traceback" not in r.stderr
    assert not (smallrepo / ".coderag" / "db").exists()
    r = run_cli(
        "index", str(smallrepo), "--lexical-only", "--model", str(smallrepo / "vendor-model")
    )
    assert r.returncode == 0, r.stderr
