; Rust. impl blocks are class-like: symbol "impl Trait for Type", their methods Type::fn.
; Attributes (#[derive(..)]) and /// doc comments above an item are attached to it.
(line_comment) @comment
(block_comment) @comment
(attribute_item) @attribute

(function_item name: (identifier) @name body: (_) @body) @definition.function
(function_signature_item name: (identifier) @name) @definition.function
(struct_item name: (type_identifier) @name) @definition.struct
(enum_item name: (type_identifier) @name body: (_) @body) @definition.enum
(union_item name: (type_identifier) @name body: (_) @body) @definition.union
(trait_item name: (type_identifier) @name body: (_) @body) @definition.trait
(impl_item trait: (_)? @trait type: (_) @name body: (_) @body) @definition.impl
(mod_item name: (identifier) @name body: (_) @body) @definition.module
(macro_definition name: (identifier) @name) @definition.function
