; Ruby. Modules and classes are class-like (functions directly in a module stay
; functions); `def self.x` is a singleton method.
(comment) @comment

(class name: (_) @name) @definition.class
(singleton_class value: (_) @name) @definition.class
(module name: (_) @name) @definition.module
(method name: (_) @name) @definition.function
(singleton_method name: (_) @name) @definition.function
