; Go. Methods carry their receiver type: (*Server).Serve / Server.String.
(comment) @comment

(function_declaration name: (identifier) @name body: (_)? @body) @definition.function

(method_declaration
  receiver: (parameter_list (parameter_declaration type: (_) @receiver))
  name: (field_identifier) @name
  body: (_)? @body) @definition.method

(type_declaration (type_spec name: (type_identifier) @name type: (struct_type) @body)) @definition.struct
(type_declaration (type_spec name: (type_identifier) @name type: (interface_type) @body)) @definition.interface
(type_declaration
  (type_spec
    name: (type_identifier) @name
    type: (_) @_t)
  (#not-match? @_t "^(struct|interface)")) @definition.type
