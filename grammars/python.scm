; Python: classes, functions (methods are functions nested in a class), docstrings.
; bare strings at module level: the module docstring and attribute docstrings
(module (expression_statement (string) @doc))

(class_definition
  name: (identifier) @name
  body: (block . (expression_statement (string) @doc)?) @body) @definition.class

(function_definition
  name: (identifier) @name
  body: (block . (expression_statement (string) @doc)?) @body) @definition.function

(decorated_definition
  definition: (class_definition name: (identifier) @name)) @definition.class

(decorated_definition
  definition: (function_definition name: (identifier) @name)) @definition.function

(comment) @comment
