"""``coderag.config``: settings from a repository's file, the environment and the caller, each
checked for its type and range (a cloned repository's settings file is untrusted input), and
which models a repository's settings may make coderag load or download. The same bad settings
through the real CLI (one line, exit 1, no traceback) are in test_security_input.py."""

from __future__ import annotations

import pytest

from coderag.config import Config, load_config
from coderag.errors import CoderagError

#: one bad value of each kind: out of range, wrong type, a bool or a string for a number,
#: nan and inf, a word not among the choices, a table, a setting that does not exist
BAD_SETTINGS = [
    "rrf_k = -10",
    "model = 5",
    'candidates = "x"',
    "rrf_k = true",
    "dense_weight = nan",
    "lexical_weight = -1.0",
    "lock_timeout = inf",
    "dim = 0",
    "max_tokens = 2.5",
    "max_file_bytes = 0",
    "embed_batch = 0",
    "debounce_ms = -1",
    "rerank_depth = 0",
    "ignore = [1, 2]",
    'fusion = "max"',
    "rerank = 3",
    "device = []",
    "[model]\nx = 1",
    "no_such_setting = 1",
]


@pytest.mark.parametrize("setting", BAD_SETTINGS)
def test_a_bad_setting_is_one_line_naming_it_and_its_file(tmp_path, setting):
    (tmp_path / ".coderag.toml").write_text(setting + "\n")
    name = setting.split()[0].strip("[]")
    with pytest.raises(CoderagError) as e:
        load_config(tmp_path)
    message = str(e.value)
    assert "\n" not in message and name in message and ".coderag.toml" in message, message


def test_ranges_are_inclusive_and_numbers_in_a_file_must_be_numbers(tmp_path, monkeypatch):
    settings = tmp_path / ".coderag.toml"
    settings.write_text("dim = 65536\ndebounce_ms = 0\nlock_timeout = 0\ndense_weight = 1000\n")
    cfg = load_config(tmp_path)
    assert (cfg.dim, cfg.debounce_ms, cfg.lock_timeout, cfg.dense_weight) == (65536, 0, 0.0, 1000.0)
    settings.write_text("dim = 65537\n")
    with pytest.raises(CoderagError, match="'dim'.*from 1 to 65,536"):
        load_config(tmp_path)
    settings.write_text('embed_batch = "5"\n')  # TOML text, not a number: refused in a file...
    with pytest.raises(CoderagError, match="'embed_batch'"):
        load_config(tmp_path)
    settings.unlink()
    monkeypatch.setenv("CODERAG_EMBED_BATCH", " 5 ")  # ...while the environment is all text
    assert load_config(tmp_path).embed_batch == 5


def test_the_environment_beats_the_file_and_the_caller_beats_both(tmp_path, monkeypatch):
    (tmp_path / ".coderag.toml").write_text("lock_timeout = 5\nrrf_k = 20\n")
    cfg = load_config(tmp_path)
    assert (cfg.lock_timeout, cfg.rrf_k) == (5.0, 20)
    assert cfg.repo_file("lock_timeout").endswith(".coderag.toml")
    monkeypatch.setenv("CODERAG_LOCK_TIMEOUT", "7")
    cfg = load_config(tmp_path)
    assert (cfg.lock_timeout, cfg.rrf_k) == (7.0, 20)
    assert cfg.repo_file("lock_timeout") is None and cfg.repo_file("rrf_k") is not None
    cfg = load_config(tmp_path, lock_timeout=9, rrf_k=None)  # None: not given
    assert (cfg.lock_timeout, cfg.rrf_k) == (9.0, 20)
    with pytest.raises(CoderagError, match="'rrf_k' in the arguments"):
        load_config(tmp_path, rrf_k=0)


def test_a_repository_may_not_choose_a_model_folder_it_ships(tmp_path):
    (tmp_path / "vendor-model").mkdir()
    (tmp_path / ".coderag.toml").write_text('rerank_model = "vendor-model"\n')
    with pytest.raises(CoderagError, match="'rerank_model'.*inside the repository"):
        load_config(tmp_path)
    chosen = load_config(tmp_path, rerank_model=str(tmp_path / "vendor-model"))  # the user's
    assert chosen.rerank_model == str(tmp_path / "vendor-model")
    (tmp_path / ".coderag.toml").write_text('rerank_model = "no-such-folder"\n')
    assert load_config(tmp_path).rerank_model == "no-such-folder"  # a Hub id: not a folder here


def test_setting_checks_in_the_library(tmp_path, monkeypatch):
    (tmp_path / "pyproject.toml").write_text("[tool.coderag]\ncandidates = 0\n")
    with pytest.raises(CoderagError, match=r"'candidates' in .*pyproject.toml"):
        load_config(tmp_path)
    (tmp_path / "pyproject.toml").write_text("[tool]\ncoderag = 5\n")
    with pytest.raises(CoderagError, match=r"\[tool.coderag\]"):
        load_config(tmp_path)
    (tmp_path / ".coderag.toml").write_text(
        'rrf_k = 60\ndense_weight = 2\nignore = "*.log"\nrerank = false\n_from_repo = 1\n'
    )
    with pytest.raises(CoderagError, match="unknown setting '_from_repo'"):
        load_config(tmp_path)
    (tmp_path / ".coderag.toml").write_text(
        'rrf_k = 60\ndense_weight = 2\nignore = "*.log"\nrerank = false\nmodel = "o/m"\n'
    )
    cfg = load_config(tmp_path)
    assert (cfg.rrf_k, cfg.dense_weight, cfg.ignore, cfg.rerank) == (60, 2.0, ["*.log"], "off")
    assert isinstance(cfg.dense_weight, float) and cfg.repo_file("rrf_k").endswith(".coderag.toml")
    assert "CODERAG_ALLOW_DOWNLOAD=1" in cfg.local_only("model")
    assert cfg.replace(model="o/m").local_only("model") is None  # the caller chose it
    assert load_config(tmp_path, model="o/m").local_only("model") is None
    monkeypatch.setenv("CODERAG_MODEL", "o/m")
    assert load_config(tmp_path).local_only("model") is None
    monkeypatch.delenv("CODERAG_MODEL")
    monkeypatch.setenv("CODERAG_ALLOW_DOWNLOAD", "1")
    assert load_config(tmp_path).local_only("model") is None
    monkeypatch.setenv("CODERAG_DIM", "many")
    with pytest.raises(CoderagError, match="CODERAG_DIM"):
        load_config(tmp_path)
    monkeypatch.setenv("CODERAG_DIM", "128")
    assert load_config(tmp_path).dim == 128
    assert Config().local_only("model") is None


def test_rerank_setting_values(smallrepo, monkeypatch):
    assert load_config(smallrepo).rerank == "auto"
    monkeypatch.setenv("CODERAG_RERANK", "true")
    assert load_config(smallrepo).rerank == "on"
    monkeypatch.setenv("CODERAG_RERANK", "OFF")
    assert load_config(smallrepo).rerank == "off"
    monkeypatch.setenv("CODERAG_RERANK", "sometimes")
    with pytest.raises(CoderagError, match="on, off or auto"):
        load_config(smallrepo)
    monkeypatch.delenv("CODERAG_RERANK")
    (smallrepo / ".coderag.toml").write_text("rerank = true\nrerank_depth = 12\n")
    cfg = load_config(smallrepo)
    assert (cfg.rerank, cfg.rerank_depth) == ("on", 12)
