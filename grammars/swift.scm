; Swift. class_declaration covers class, struct, enum, actor and extension.
(comment) @comment
(multiline_comment) @comment

(class_declaration name: (_) @name body: (_) @body) @definition.class
(class_declaration declaration_kind: "extension" name: (_) @name body: (_) @body) @definition.impl
(protocol_declaration name: (_) @name body: (_) @body) @definition.protocol
(function_declaration name: (simple_identifier) @name body: (_) @body) @definition.function
(protocol_function_declaration name: (simple_identifier) @name) @definition.method
(init_declaration "init" @name body: (_) @body) @definition.method
(deinit_declaration "deinit" @name body: (_) @body) @definition.method
