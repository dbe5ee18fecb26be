; inherits: ecmascript
; JavaScript (+ JSX). Methods are captured inside class bodies only; functions assigned
; to const/let/var count as functions; export wrappers widen the definition. The shared
; patterns (classes, methods, functions, assignments) are in ecmascript.scm.
(export_statement declaration: (class_declaration name: (_) @name)) @definition.class

(class_body
  (field_definition
    property: (_) @name
    value: [(arrow_function body: (_) @body) (function_expression body: (_) @body)])
  @definition.method)
