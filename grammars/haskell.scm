; Haskell. A signature and the equations of one name merge into one function
; (the language row sets merge_clauses); -- | haddock comments attach to what follows.
(comment) @comment
(haddock) @comment
(pragma) @attribute

(header module: (_) @package)

(signature name: (_) @name) @definition.function
(function name: (_) @name) @definition.function
(bind name: (_) @name) @definition.function
(data_type name: (_) @name) @definition.type
(newtype name: (_) @name) @definition.type
(type_synonym name: (_) @name) @definition.type
(type_family name: (_) @name) @definition.type
(class name: (_) @name) @definition.class
(instance name: (_) @trait patterns: (_) @name) @definition.impl
