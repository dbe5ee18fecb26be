; TypeScript and TSX (the tsx row shares this file). JavaScript's rules plus interfaces,
; type aliases, enums, abstract classes and namespaces.
(comment) @comment

(class_declaration name: (_) @name body: (_) @body) @definition.class
(abstract_class_declaration name: (_) @name body: (_) @body) @definition.class
(class name: (_) @name body: (_) @body) @definition.class
(interface_declaration name: (_) @name body: (_) @body) @definition.interface
(enum_declaration name: (_) @name body: (_) @body) @definition.enum
(type_alias_declaration name: (_) @name) @definition.type
(export_statement
  declaration: [
    (class_declaration name: (_) @name)
    (abstract_class_declaration name: (_) @name)
    (interface_declaration name: (_) @name)
    (enum_declaration name: (_) @name)
  ]) @definition.class
(export_statement declaration: (type_alias_declaration name: (_) @name)) @definition.type

(internal_module name: (_) @name body: (_) @body) @definition.namespace
(expression_statement (internal_module name: (_) @name body: (_) @body)) @definition.namespace
(export_statement declaration: (internal_module name: (_) @name)) @definition.namespace
(module name: (_) @name body: (_) @body) @definition.namespace

(class_body (method_definition name: (_) @name body: (_) @body) @definition.method)
(class_body
  (public_field_definition
    name: (_) @name
    value: [(arrow_function body: (_) @body) (function_expression body: (_) @body)])
  @definition.method)

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
