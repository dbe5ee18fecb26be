; Patterns JavaScript and TypeScript share (TypeScript's grammar extends JavaScript's):
; not a language of its own. javascript.scm and typescript.scm start with
; `; inherits: ecmascript`, which puts these patterns before their own.
(comment) @comment

(class_declaration name: (_) @name body: (_) @body) @definition.class
(class name: (_) @name body: (_) @body) @definition.class

(class_body (method_definition name: (_) @name body: (_) @body) @definition.method)

(function_declaration name: (identifier) @name body: (_) @body) @definition.function
(generator_function_declaration name: (identifier) @name body: (_) @body) @definition.function
(export_statement
  declaration: [
    (function_declaration name: (identifier) @name)
    (generator_function_declaration name: (identifier) @name)
  ]) @definition.function

(lexical_declaration
  (variable_declarator
    name: (identifier) @name
    value: [(arrow_function body: (_) @body) (function_expression body: (_) @body)
            (generator_function body: (_) @body)])) @definition.function
(variable_declaration
  (variable_declarator
    name: (identifier) @name
    value: [(arrow_function body: (_) @body) (function_expression body: (_) @body)
            (generator_function body: (_) @body)])) @definition.function
(export_statement
  declaration: (lexical_declaration
    (variable_declarator
      name: (identifier) @name
      value: [(arrow_function) (function_expression) (generator_function)]))) @definition.function

; Assignments to a member: `exports.compile = function (x) {}`, `res.redirect = function
; redirect(url) {}`, `module.exports = () => {}`. The whole left-hand side is the name
; (symbol `res.redirect`, name `redirect`); `X.prototype.Y = ...` and `this.Y = ...` are
; methods. Left-hand sides with calls or subscripts (`require("x").y`, `a[k]`) are not.
(expression_statement
  (assignment_expression
    left: (member_expression) @name
    right: [(function_expression body: (_) @body) (arrow_function body: (_) @body)
            (generator_function body: (_) @body)])
  (#match? @name "^[A-Za-z_$][\\w$.\\s]*$")) @definition.function
(expression_statement
  (assignment_expression
    left: (member_expression
      object: (member_expression property: (property_identifier) @_proto)) @name
    right: [(function_expression) (arrow_function) (generator_function)])
  (#eq? @_proto "prototype")
  (#match? @name "^[A-Za-z_$][\\w$.\\s]*$")) @definition.method
(expression_statement
  (assignment_expression
    left: (member_expression object: (this)) @name
    right: [(function_expression) (arrow_function) (generator_function)])) @definition.method
