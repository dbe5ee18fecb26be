; Zig. Containers are `const Name = struct/enum/union {...}` declarations; test blocks
; count as functions named by their string (test "sum" -> symbol "sum" with quotes).
(comment) @comment

(variable_declaration (identifier) @name (struct_declaration) @body) @definition.struct
(variable_declaration (identifier) @name (enum_declaration) @body) @definition.enum
(variable_declaration (identifier) @name (union_declaration) @body) @definition.union
(variable_declaration (identifier) @name (opaque_declaration) @body) @definition.type
(function_declaration name: (identifier) @name body: (_)? @body) @definition.function
(test_declaration [(string) @name (identifier) @name] (block) @body) @definition.function
