# The /bin/sh script `coderag hook install` writes for each git hook (read by
# coderag.hooks.install.hook_script). Everything above the "#@ head" line is this note and
# is not written. The script is the head followed by one body: "#@ pre-commit" (a failing
# chained hook stops the commit; nothing to index then), "#@ post-rewrite" (both read the
# rewritten commits from stdin), or "#@ other" for the rest. Words in @ are filled in:
#   NAME      the hook (pre-commit, post-checkout, ...)
#   MARKER    how `coderag hook install|uninstall` recognise their own scripts
#   CHAINED   the suffix of the user's own hook, moved aside by install and run first
#   PYTHON    the interpreter coderag was installed with, shell-quoted
#   FLAGS     " --strict" or nothing
#   ON_ERROR  without --strict: a warning when coderag cannot run at all (never a failure)
#   MISSING   "return 1" with --strict, else "return 0"
#@ head
#!/bin/sh
# coderag @NAME@ hook, @MARKER@.
# Keeps the coderag index in step with git. `coderag hook uninstall` removes it and puts back
# the hook that was here before (kept meanwhile as @NAME@@CHAINED@, and run first).
chained="$(dirname "$0")/@NAME@@CHAINED@"
coderag_hook() {
    if [ -x @PYTHON@ ]; then
        @PYTHON@ -m coderag hook run@FLAGS@ @NAME@ -- "$@"@ON_ERROR@
    elif command -v coderag >/dev/null 2>&1; then
        coderag hook run@FLAGS@ @NAME@ -- "$@"@ON_ERROR@
    else
        echo "coderag: not installed any more; @NAME@ hook skipped (remove it: $0)" >&2
        @MISSING@
    fi
}
#@ pre-commit
if [ -x "$chained" ]; then
    "$chained" "$@" || exit $?
fi
coderag_hook "$@"
#@ post-rewrite
input=$(cat; echo x)
input=${input%x}
status=0
if [ -x "$chained" ]; then
    printf '%s' "$input" | "$chained" "$@" || status=$?
fi
printf '%s' "$input" | coderag_hook "$@"
rc=$?
[ "$status" -eq 0 ] && status=$rc
exit "$status"
#@ other
status=0
if [ -x "$chained" ]; then
    "$chained" "$@" || status=$?
fi
coderag_hook "$@"
rc=$?
[ "$status" -eq 0 ] && status=$rc
exit "$status"
