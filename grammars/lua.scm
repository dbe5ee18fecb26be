; Lua. `function M.f` / `function M:m` keep the table in the name.
(comment) @comment

(function_declaration name: (_) @name body: (_)? @body) @definition.function
(assignment_statement
  (variable_list . name: (_) @name)
  (expression_list . value: (function_definition body: (_)? @body))) @definition.function
(variable_declaration
  (assignment_statement
    (variable_list . name: (_) @name)
    (expression_list . value: (function_definition body: (_)? @body)))) @definition.function
