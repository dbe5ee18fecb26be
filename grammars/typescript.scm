; inherits: ecmascript
; TypeScript and TSX (the tsx row shares this file). JavaScript's rules (ecmascript.scm) plus
; interfaces, type aliases, enums, abstract classes and namespaces.
(abstract_class_declaration name: (_) @name body: (_) @body) @definition.class
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

(class_body
  (public_field_definition
    name: (_) @name
    value: [(arrow_function body: (_) @body) (function_expression body: (_) @body)])
  @definition.method)
