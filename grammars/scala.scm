; Scala. Classes, objects and traits; def with or without a body.
(comment) @comment
(block_comment) @comment

(package_clause name: (_) @package)

(class_definition name: (_) @name) @definition.class
(object_definition name: (_) @name) @definition.object
(trait_definition name: (_) @name) @definition.trait
(enum_definition name: (_) @name) @definition.enum
(function_definition name: (_) @name body: (_) @body) @definition.function
(function_declaration name: (_) @name) @definition.function
