"""Installing git hooks in real git repositories: chaining the user's hooks, uninstalling,
``core.hooksPath``, and the script itself (the ``hook.sh`` resource)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from coderag import cli, hooks

from ..conftest import run_cli
from ..gitutil import append, commit_all, git, head

USER_HOOK = """#!/bin/sh
echo "$0 $*" >> "$(git rev-parse --git-dir)/user-hook.log"
exit "$(cat "$(git rev-parse --git-dir)/user-status" 2>/dev/null || echo 0)"
"""


@pytest.mark.slow  # real git commands running the installed hooks
def test_install_chains_existing_hooks_and_uninstall_restores_them(gitrepo: Path):
    folder = gitrepo / ".git" / "hooks"
    for name in ("pre-commit", "post-checkout"):
        (folder / name).write_text(USER_HOOK)
        (folder / name).chmod(0o755)

    r = run_cli("hook", "install", "--repo", str(gitrepo))
    assert r.returncode == 0, r.stderr
    assert "pre-commit.coderag-chained" in r.stdout  # it says where the user's hook went
    for name in hooks.HOOKS:
        assert hooks.is_ours(folder / name) and os.access(folder / name, os.X_OK)
    assert (folder / "pre-commit.coderag-chained").read_text() == USER_HOOK
    assert (folder / "post-checkout.coderag-chained").read_text() == USER_HOOK
    assert not (folder / "post-merge.coderag-chained").exists()
    # installing again updates our scripts and never chains them to themselves
    hooks.install(gitrepo)
    assert (folder / "pre-commit.coderag-chained").read_text() == USER_HOOK
    assert not (folder / "pre-commit.coderag-chained.coderag-chained").exists()

    log = gitrepo / ".git" / "user-hook.log"
    append(gitrepo / "README.md", "\nMore words.\n")
    commit_all(gitrepo, "second")  # the user's hook ran and let the commit through
    assert log.read_text().count("pre-commit.coderag-chained") == 1

    (gitrepo / ".git" / "user-status").write_text("3")
    append(gitrepo / "README.md", "\nEven more.\n")
    before = head(gitrepo)
    r = commit_all(gitrepo, "refused", check=False)
    assert r.returncode != 0  # the user's hook said no: no commit
    assert head(gitrepo) == before
    assert log.read_text().count("pre-commit.coderag-chained") == 2

    # post-checkout: the user's hook gets git's arguments, and its failure is git's failure
    r = git(gitrepo, "checkout", "-q", "-b", "other", check=False)
    assert r.returncode != 0
    assert f"post-checkout.coderag-chained {before} {before} 1" in log.read_text()
    (gitrepo / ".git" / "user-status").write_text("0")
    assert git(gitrepo, "checkout", "-q", "main").returncode == 0

    r = run_cli("hook", "uninstall", "--repo", str(gitrepo))
    assert r.returncode == 0, r.stderr
    assert (folder / "pre-commit").read_text() == USER_HOOK
    assert os.access(folder / "pre-commit", os.X_OK)
    assert (folder / "post-checkout").read_text() == USER_HOOK
    for name in ("post-merge", "post-rewrite"):
        assert not (folder / name).exists()
    assert not list(folder.glob("*.coderag-chained"))
    assert (
        "no coderag hooks installed" in run_cli("hook", "uninstall", "--repo", str(gitrepo)).stdout
    )


@pytest.mark.slow  # real git commands running the installed hooks
def test_install_honours_core_hooks_path_and_flags(gitrepo: Path):
    git(gitrepo, "config", "core.hooksPath", "githooks")
    assert (
        cli.main(["hook", "install", "--pre-commit", "--post-merge", "--repo", str(gitrepo)]) == 0
    )
    installed = sorted(p.name for p in (gitrepo / "githooks").iterdir())
    assert installed == ["post-merge", "pre-commit"]
    assert not (gitrepo / ".git" / "hooks" / "pre-commit").exists()


@pytest.mark.slow  # real git commands running the installed hooks
def test_a_hook_that_cannot_start_coderag_does_not_block_the_commit(gitrepo: Path, tmp_path):
    broken = tmp_path / "python"  # an interpreter without coderag, as after an uninstall
    broken.write_text('#!/bin/sh\necho "No module named coderag" >&2\nexit 1\n')
    broken.chmod(0o755)
    hooks.install(gitrepo, ["pre-commit"], python=str(broken))
    append(gitrepo / "README.md", "\nOne.\n")
    r = commit_all(gitrepo, "goes through")
    assert "No module named coderag" in r.stderr and "could not run" in r.stderr
    hooks.install(gitrepo, ["pre-commit"], python=str(broken), strict=True)
    append(gitrepo / "README.md", "\nTwo.\n")
    assert commit_all(gitrepo, "stopped", check=False).returncode != 0
    assert git(gitrepo, "log", "-1", "--format=%s").stdout.strip() == "goes through"


# ------------------------------------------------------------------------- server path
# Stand-ins for the heavy libraries: importing any of them leaves a mark and fails, so a hook
# process that loaded a model (or even opened the store) would be caught.


# ------------------------------------------------------------------------- the script
@pytest.mark.parametrize("name", hooks.HOOKS)
@pytest.mark.parametrize("strict", [False, True], ids=["lenient", "strict"])
def test_the_script_is_the_resource_filled_in(name, strict):
    script = hooks.hook_script(name, strict=strict, python="/opt/my env/bin/python")
    assert script.startswith("#!/bin/sh\n# coderag " + name + " hook, " + hooks.MARKER)
    assert "#@" not in script and not [w for w in script.split() if w.count("@") >= 2]
    assert "'/opt/my env/bin/python' -m coderag hook run" in script  # quoted for sh
    assert f'chained="$(dirname "$0")/{name}{hooks.CHAINED}"' in script
    assert ("--strict" in script) == strict
    assert ("could not run; carrying on" in script) != strict
    # the body: pre-commit stops at a failing chained hook, post-rewrite replays its stdin
    assert ('"$chained" "$@" || exit $?' in script) == (name == "pre-commit")
    assert ("printf '%s' \"$input\" | coderag_hook" in script) == (name == "post-rewrite")
    assert script.endswith('exit "$status"\n') != (name == "pre-commit")


def test_the_script_passes_sh_syntax_check(tmp_path):
    import shutil
    import subprocess

    if shutil.which("sh") is None:
        pytest.skip("no /bin/sh")
    for name in hooks.HOOKS:
        path = tmp_path / name
        path.write_text(hooks.hook_script(name))
        assert subprocess.run(["sh", "-n", str(path)], capture_output=True).returncode == 0
