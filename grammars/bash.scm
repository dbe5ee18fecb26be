; Bash / POSIX shell: functions; everything else is top-level code.
(comment) @comment

(function_definition name: (_) @name body: (_) @body) @definition.function
