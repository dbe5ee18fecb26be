; Elixir. defmodule is a module; def/defp/defmacro clauses of one name merge into one
; function (merge_clauses); @doc attaches to the next def, @spec/@impl are attributes.
(comment) @comment

(call
  target: (identifier) @_kw
  (arguments (alias) @name)
  (do_block
    . (unary_operator
        operand: (call target: (identifier) @_md (#eq? @_md "moduledoc")))? @doc) @body
  (#any-of? @_kw "defmodule" "defprotocol" "defimpl")) @definition.module

(call
  target: (identifier) @_kw
  (arguments
    [
      (call target: (identifier) @name)
      (identifier) @name
      (binary_operator left: (call target: (identifier) @name))
      (binary_operator left: (identifier) @name)
    ])
  (#any-of? @_kw "def" "defp" "defmacro" "defmacrop" "defguard" "defguardp" "defdelegate" "defn" "defnp")) @definition.function

(unary_operator
  operand: (call target: (identifier) @_d)
  (#any-of? @_d "doc" "typedoc")) @doc

(unary_operator
  operand: (call target: (identifier) @_a)
  (#any-of? @_a "spec" "impl" "decorate" "deprecated")) @attribute
