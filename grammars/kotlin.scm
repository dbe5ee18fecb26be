; Kotlin. class_declaration also covers interfaces, enum and data classes; a companion
; object is part of its class (its functions are the class's methods).
(line_comment) @comment
(block_comment) @comment

(package_header (qualified_identifier) @package)

(class_declaration name: (_) @name) @definition.class
(object_declaration name: (_) @name) @definition.object
(function_declaration name: (_) @name) @definition.function
(secondary_constructor "constructor" @name) @definition.method
