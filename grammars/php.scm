; PHP. `namespace A\B;` prefixes every symbol: A\B\Class::method.
(comment) @comment

(namespace_definition name: (_) @package !body)
(namespace_definition name: (_) @name body: (_) @body) @definition.namespace

(class_declaration name: (name) @name body: (_) @body) @definition.class
(interface_declaration name: (name) @name body: (_) @body) @definition.interface
(trait_declaration name: (name) @name body: (_) @body) @definition.trait
(enum_declaration name: (name) @name body: (_) @body) @definition.enum
(method_declaration name: (name) @name body: (_)? @body) @definition.method
(function_definition name: (name) @name body: (_) @body) @definition.function
