"""languages.py: the language table, language detection, the grammar query files; and one
annotated fixture per language: exact chunk kinds, symbols and line spans.

Each entry of ``EXPECTED`` maps a fixture in ``tests/fixtures/languages/`` to the repo path
it is chunked under and the table of (kind, symbol, start_line, end_line) it must produce
with a 256-token budget. Property tests check coverage and the size limit on every fixture
at several budgets.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from coderag.chunking import chunk_file, languages, parse

FIXTURES = Path(__file__).parent.parent / "fixtures" / "languages"
_TOKEN = re.compile(r"\w+|[^\w\s]")


class WordCounter:
    def __init__(self, max_tokens: int = 256):
        self.max_tokens = max_tokens

    def count(self, text: str) -> int:
        return len(_TOKEN.findall(text))


CODE_LANGUAGES = [
    "python", "javascript", "typescript", "tsx", "go", "rust", "java", "c", "cpp", "csharp",
    "ruby", "php", "kotlin", "swift", "scala", "bash", "lua", "haskell", "elixir", "zig",
]  # fmt: skip


@pytest.mark.parametrize(
    ("path", "head", "expected"),
    [
        ("pkg/util.py", "", "python"),
        ("stubs/x.pyi", "", "python"),
        ("web/App.jsx", "", "javascript"),
        ("web/mod.mjs", "", "javascript"),
        ("web/app.ts", "", "typescript"),
        ("web/App.tsx", "", "tsx"),
        ("cmd/main.go", "", "go"),
        ("src/lib.rs", "", "rust"),
        ("A.java", "", "java"),
        ("x.c", "", "c"),
        ("x.h", "", "c"),
        ("x.cpp", "", "cpp"),
        ("x.HPP", "", "cpp"),
        ("Program.cs", "", "csharp"),
        ("lib/a.rb", "", "ruby"),
        ("Rakefile", "", "ruby"),
        ("index.php", "", "php"),
        ("Main.kt", "", "kotlin"),
        ("build.gradle.kts", "", "kotlin"),
        ("App.swift", "", "swift"),
        ("Main.scala", "", "scala"),
        ("run.sh", "", "bash"),
        ("init.lua", "", "lua"),
        ("Main.hs", "", "haskell"),
        ("lib/app.ex", "", "elixir"),
        ("test/app_test.exs", "", "elixir"),
        ("build.zig", "", "zig"),
        ("README.md", "", "markdown"),
        ("docs/index.rst", "", "rst"),
        ("notes.txt", "", None),
        ("data.json", "", None),
        ("Makefile", "", None),
        ("bin/tool", "#!/usr/bin/env python3\nprint(1)\n", "python"),
        ("bin/tool", "#!/usr/bin/python3.11\n", "python"),
        ("bin/tool", "#!/bin/bash\nset -e\n", "bash"),
        ("bin/tool", "#!/usr/bin/env -S node --no-warnings\n", "javascript"),
        ("bin/tool", "#! /usr/bin/env ruby\n", "ruby"),
        ("bin/tool", "#!/usr/bin/env perl\n", None),
        ("bin/tool", "no shebang", None),
        (".bashrc", "", "bash"),
    ],
)
def test_detect_language(path, head, expected):
    assert languages.detect_language(path, head) == expected


def test_supported_languages_cover_the_issue():
    langs = languages.supported_languages()
    assert set(CODE_LANGUAGES) <= set(langs)
    assert {"markdown", "rst"} <= set(langs)
    assert len(langs) == len(set(langs))


def test_extension_table_has_no_conflicts():
    seen = {}
    for sp in languages.LANGUAGES:
        for ext in sp.extensions:
            assert ext == ext.lower() and ext.startswith(".")
            assert ext not in seen, f"{ext} in {seen.get(ext)} and {sp.name}"
            seen[ext] = sp.name


def test_grammar_text_of_a_source_checkout():
    text = languages.grammar_text("python")
    assert "@definition.function" in text


def test_grammar_text_puts_inherited_patterns_first():
    shared = languages.grammar_text("ecmascript")
    for name in ("javascript", "typescript"):
        text = languages.grammar_text(name)
        assert text.startswith(shared + "\n"), name
        assert len(text) > len(shared) + 1, name
    tsx = languages.spec("tsx")
    assert tsx is not None and tsx.query_name == "typescript"


# fixture file -> (repo path, language, expected chunks at a 256-token budget)
EXPECTED: dict[str, tuple[str, str | None, list[tuple[str, str | None, int, int]]]] = {
    "shapes.py": ("geometry/shapes.py", 'python', [
        ("code", 'geometry.shapes', 1, 19),  # #!/usr/bin/env python3
        ("doc", 'geometry.shapes', 2, 5),  # """Geometry helpers: shapes, areas and a
        ("doc", 'geometry.shapes', 16, 18),  # # Registry of shape constructors, keyed
        ("function", 'geometry.shapes.register', 22, 25),  # def register(cls):
        ("doc", 'geometry.shapes.register', 23, 23),  # """Class decorator: add ``cls`` to the r
        ("class", 'geometry.shapes.Shape', 28, 31),  # class Shape:
        ("doc", 'geometry.shapes.Shape', 29, 29),  # """Base class of all shapes."""
        ("method", 'geometry.shapes.Shape.area', 33, 34),  # def area(self) -> float:
        ("method", 'geometry.shapes.Shape.describe', 36, 37),  # def describe(self) -> str:
        ("class", 'geometry.shapes.Circle', 40, 45),  # @register
        ("doc", 'geometry.shapes.Circle', 43, 43),  # """A circle given by its radius."""
        ("method", 'geometry.shapes.Circle.diameter', 47, 49),  # @property
        ("method", 'geometry.shapes.Circle.area', 51, 56),  # # Area uses the classic formula.
        ("doc", 'geometry.shapes.Circle.area', 51, 51),  # # Area uses the classic formula.
        ("class", 'geometry.shapes.Circle.Meta', 58, 59),  # class Meta:
        ("function", 'geometry.shapes.area_of', 62, 68),  # def area_of(name: str, *args: float) ->
        ("doc", 'geometry.shapes.area_of', 63, 63),  # """Build the shape ``name`` from ``args`
        ("code", 'geometry.shapes', 71, 74),  # if __name__ == "__main__":
    ]),
    "guide.md": ("docs/guide.md", 'markdown', [
        ("doc", None, 1, 5),  # ---
        ("doc", 'Install > From source', 7, 16),  # # Install
        ("doc", 'Install > From PyPI', 18, 20),  # ## From PyPI
        ("doc", 'Usage', 22, 25),  # Usage
        ("doc", 'Usage > Options', 27, 30),  # ### Options
    ]),
    "widgets.js": ("web/widgets.js", 'javascript', [
        ("code", None, 1, 5),  # // Widget toolkit: a base class, a butto
        ("class", 'Widget', 7, 12),  # /**
        ("doc", 'Widget', 7, 10),  # /**
        ("method", 'Widget.constructor', 14, 17),  # constructor(id) {
        ("method", 'Widget.render', 19, 23),  # /** Render the widget to a string. */
        ("doc", 'Widget.render', 19, 19),  # /** Render the widget to a string. */
        ("class", 'Button', 25, 26),  # class Button extends Widget {
        ("method", 'Button.render', 28, 31),  # render() {
        ("method", 'Button.color', 33, 36),  # get color() {
        ("function", 'formatLabel', 38, 47),  # /**
        ("doc", 'formatLabel', 38, 41),  # /**
        ("function", 'Greeting', 49, 51),  # export const Greeting = ({ name }) => {
        ("code", None, 53, 59),  # const helpers = {
        ("function", 'res.redirect', 61, 68),  # /**
        ("doc", 'res.redirect', 61, 64),  # /**
        ("function", 'app.use', 70, 74),  # /** Mount a middleware function. */
        ("doc", 'app.use', 70, 70),  # /** Mount a middleware function. */
        ("function", 'exports.compile', 76, 78),  # exports.compile = function (source) {
        ("function", 'exports.escape', 80, 80),  # exports.escape = (s) => s.replace(/</g,
        ("function", 'proto.handle', 82, 85),  # /** Handle one request. */
        ("doc", 'proto.handle', 82, 82),  # /** Handle one request. */
        ("method", 'Button.prototype.toggle', 87, 89),  # Button.prototype.toggle = function
        ("function", 'handler', 91, 93),  # const handler = function () {
        ("function", 'load', 95, 97),  # const load = async (url) => {
        ("code", None, 99, 100),  # handlers["x"] = function () {};
        ("function", 'module.exports', 102, 104),  # module.exports = function createApp()
    ]),
    "store.ts": ("src/store.ts", 'typescript', [
        ("code", None, 1, 2),  # // In-memory key/value store with typed
        ("class", 'Key', 4, 4),  # export type Key = string | number;
        ("class", 'StoreOptions', 6, 10),  # /** Options accepted by {@link Store}. *
        ("doc", 'StoreOptions', 6, 6),  # /** Options accepted by {@link Store}. *
        ("class", 'Level', 12, 15),  # export enum Level {
        ("class", 'Store', 17, 23),  # /**
        ("doc", 'Store', 17, 20),  # /**
        ("method", 'Store.constructor', 25, 27),  # constructor(private readonly options: St
        ("method", 'Store.get', 29, 32),  # /** Read a value. */
        ("doc", 'Store.get', 29, 29),  # /** Read a value. */
        ("method", 'Store.set', 34, 39),  # set(key: Key, value: V): void {
        ("method", 'Store.evict', 41, 45),  # private evict = (): void => {
        ("code", None, 47, 47),  # export namespace Util {
        ("function", 'Util.keyOf', 48, 51),  # export function keyOf(value: unknown): K
        ("function", 'createStore', 53, 55),  # export function createStore<V>(capacity
        ("code", None, 57, 57),  # export default createStore;
        ("method", 'Store.prototype.clear', 59, 62),  # /** Empty a store in place. */
        ("doc", 'Store.prototype.clear', 59, 59),  # /** Empty a store in place. */
        ("function", 'exports.open', 64, 65),  # exports.open = (capacity: number): Store
    ]),
    "Panel.tsx": ("src/Panel.tsx", 'tsx', [
        ("code", None, 1, 1),  # import React, { useState } from "react";
        ("class", 'PanelProps', 3, 6),  # interface PanelProps {
        ("function", 'Panel', 8, 18),  # /** A collapsible panel. */
        ("doc", 'Panel', 8, 8),  # /** A collapsible panel. */
        ("class", 'PanelGroup', 20, 20),  # export class PanelGroup extends React.Co
        ("method", 'PanelGroup.render', 21, 30),  # render() {
        ("function", 'Empty', 32, 32),  # export const Empty = (): JSX.Element =>
    ]),
    "server.go": ("server/server.go", 'go', [
        ("code", None, 1, 16),  # // Package server implements a tiny HTTP
        ("class", 'Server', 18, 23),  # // Server serves connections.
        ("doc", 'Server', 18, 19),  # // Server serves connections.
        ("class", 'Handler', 25, 28),  # // Handler handles one connection.
        ("doc", 'Handler', 25, 25),  # // Handler handles one connection.
        ("function", 'NewServer', 30, 33),  # // NewServer returns a server listening
        ("doc", 'NewServer', 30, 30),  # // NewServer returns a server listening
        ("method", '(*Server).Serve', 35, 46),  # // Serve accepts connections until the l
        ("doc", '(*Server).Serve', 35, 35),  # // Serve accepts connections until the l
        ("method", 'Server.String', 48, 50),  # func (s Server) String() string {
        ("function", 'init', 52, 56),  # func init() {
    ]),
    "geometry.rs": ("src/geometry.rs", 'rust', [
        ("code", None, 1, 4),  # //! Geometry primitives.
        ("class", 'Point', 6, 11),  # /// A point in the plane.
        ("doc", 'Point', 6, 6),  # /// A point in the plane.
        ("class", 'Shape', 13, 14),  # /// Anything with an area.
        ("doc", 'Shape', 13, 13),  # /// Anything with an area.
        ("method", 'Shape::area', 15, 15),  # fn area(&self) -> f64;
        ("method", 'Shape::name', 16, 19),  # fn name(&self) -> &str {
        ("class", 'Kind', 21, 24),  # pub enum Kind {
        ("class", 'impl Point', 26, 28),  # impl Point {
        ("method", 'Point::distance', 30, 36),  # /// Distance to another point.
        ("doc", 'Point::distance', 30, 30),  # /// Distance to another point.
        ("class", 'impl fmt::Display for Point', 38, 38),  # impl fmt::Display for Point {
        ("method", 'Point::fmt', 39, 42),  # fn fmt(&self, f: &mut fmt::Formatter<'_>
        ("class", 'util', 44, 44),  # pub mod util {
        ("function", 'util::clamp', 45, 49),  # /// Clamp a value into a range.
        ("doc", 'util::clamp', 45, 45),  # /// Clamp a value into a range.
        ("function", 'square', 51, 55),  # macro_rules! square {
        ("class", 'tests', 57, 59),  # #[cfg(test)]
        ("function", 'tests::distance_is_symmetric', 61, 66),  # #[test]
    ]),
    "Inventory.java": ("src/main/java/com/example/inventory/Inventory.java", 'java', [
        ("code", 'com.example.inventory', 1, 8),  # /*
        ("doc", 'com.example.inventory', 1, 4),  # /*
        ("class", 'com.example.inventory.Inventory', 10, 16),  # /**
        ("doc", 'com.example.inventory.Inventory', 10, 12),  # /**
        ("method", 'com.example.inventory.Inventory.Inventory', 18, 21),  # /** Creates an empty inventory. */
        ("doc", 'com.example.inventory.Inventory.Inventory', 18, 18),  # /** Creates an empty inventory. */
        ("method", 'com.example.inventory.Inventory.add', 23, 31),  # /**
        ("doc", 'com.example.inventory.Inventory.add', 23, 26),  # /**
        ("method", 'com.example.inventory.Inventory.size', 33, 35),  # public int size() {
        ("class", 'com.example.inventory.Inventory.Item', 37, 39),  # /** An item in the inventory. */
        ("doc", 'com.example.inventory.Inventory.Item', 37, 37),  # /** An item in the inventory. */
        ("method", 'com.example.inventory.Inventory.Item.Item', 41, 44),  # Item(String name) {
        ("class", 'com.example.inventory.Inventory.State', 46, 47),  # enum State { OPEN, CLOSED }
        ("class", 'com.example.inventory.Auditor', 49, 49),  # interface Auditor {
        ("method", 'com.example.inventory.Auditor.audit', 50, 51),  # void audit(Inventory inventory);
    ]),
    "list.c": ("src/list.c", 'c', [
        ("code", None, 1, 5),  # /* Singly linked list of integers. */
        ("class", 'node', 7, 11),  # /* One list node. */
        ("doc", 'node', 7, 7),  # /* One list node. */
        ("code", None, 13, 13),  # typedef struct node node_t;
        ("class", 'color', 15, 15),  # enum color { RED, GREEN };
        ("code", None, 17, 17),  # static int node_count = 0;
        ("function", 'node_new', 19, 32),  # /*
        ("doc", 'node_new', 19, 22),  # /*
        ("function", 'list_free', 34, 42),  # // Free a whole list.
        ("doc", 'list_free', 34, 34),  # // Free a whole list.
        ("function", 'main', 44, 50),  # int main(void)
    ]),
    "matrix.cpp": ("src/matrix.cpp", 'cpp', [
        ("code", None, 1, 5),  # // Small dense matrix library.
        ("class", 'linalg::Matrix', 7, 10),  # /// A row-major matrix of doubles.
        ("doc", 'linalg::Matrix', 7, 7),  # /// A row-major matrix of doubles.
        ("method", 'linalg::Matrix::at', 12, 16),  # /// Element access.
        ("doc", 'linalg::Matrix::at', 12, 12),  # /// Element access.
        ("method", 'linalg::Matrix::rows', 18, 18),  # std::size_t rows() const { return rows_;
        ("code", 'linalg::Matrix', 20, 23),  # private:
        ("method", 'linalg::Matrix::Matrix', 25, 26),  # Matrix::Matrix(std::size_t rows, std::si
        ("class", 'linalg::Shape', 28, 31),  # struct Shape {
        ("function", 'linalg::dot', 33, 40),  # template <typename T>
        ("function", 'main', 42, 46),  # int main() {
    ]),
    "Billing.cs": ("src/Billing.cs", 'csharp', [
        ("code", None, 1, 5),  # using System;
        ("class", 'Acme.Billing.InvoiceService', 6, 14),  # /// <summary>
        ("doc", 'Acme.Billing.InvoiceService', 6, 8),  # /// <summary>
        ("method", 'Acme.Billing.InvoiceService.Add', 16, 20),  # /// <summary>Adds an invoice.</summary>
        ("doc", 'Acme.Billing.InvoiceService.Add', 16, 16),  # /// <summary>Adds an invoice.</summary>
        ("method", 'Acme.Billing.InvoiceService.Sum', 22, 32),  # [Obsolete("use Total")]
        ("class", 'Acme.Billing.IInvoiceService', 34, 35),  # public interface IInvoiceService
        ("method", 'Acme.Billing.IInvoiceService.Add', 36, 37),  # void Add(Invoice invoice);
        ("class", 'Acme.Billing.Invoice', 39, 39),  # public record Invoice(string Id, decimal
        ("class", 'Acme.Billing.Money', 41, 45),  # public struct Money
        ("class", 'Acme.Billing.Status', 47, 48),  # public enum Status { Draft, Sent }
    ]),
    "account.rb": ("lib/bank/account.rb", 'ruby', [
        ("code", None, 1, 3),  # # frozen_string_literal: true
        ("class", 'Bank', 5, 6),  # # Banking domain objects.
        ("doc", 'Bank', 5, 5),  # # Banking domain objects.
        ("class", 'Bank.Account', 7, 12),  # # An account holding a balance.
        ("doc", 'Bank.Account', 7, 8),  # # An account holding a balance.
        ("method", 'Bank.Account.initialize', 14, 17),  # def initialize(owner)
        ("method", 'Bank.Account.deposit', 19, 24),  # # Add money to the account.
        ("doc", 'Bank.Account.deposit', 19, 19),  # # Add money to the account.
        ("method", 'Bank.Account.open', 26, 28),  # def self.open(owner)
        ("code", 'Bank.Account', 30, 30),  # private
        ("method", 'Bank.Account.log', 32, 35),  # def log(msg)
        ("function", 'Bank.version', 37, 40),  # def self.version
        ("code", None, 42, 44),  # account = Bank::Account.open("ada")
    ]),
    "UserController.php": ("app/Http/UserController.php", 'php', [
        ("code", 'App\\Http', 1, 7),  # <?php
        ("class", 'App\\Http\\UserController', 9, 15),  # /**
        ("doc", 'App\\Http\\UserController', 9, 11),  # /**
        ("method", 'App\\Http\\UserController::show', 17, 24),  # /**
        ("doc", 'App\\Http\\UserController::show', 17, 19),  # /**
        ("method", 'App\\Http\\UserController::create', 26, 30),  # public static function create(): self
        ("class", 'App\\Http\\Renderable', 32, 33),  # interface Renderable
        ("method", 'App\\Http\\Renderable::render', 34, 35),  # public function render(): string;
        ("class", 'App\\Http\\Loggable', 37, 38),  # trait Loggable
        ("method", 'App\\Http\\Loggable::log', 39, 43),  # public function log(string $msg): void
        ("function", 'App\\Http\\helper', 45, 48),  # function helper(string $name): string
        ("code", 'App\\Http', 50, 50),  # echo helper("done");
    ]),
    "Repository.kt": ("src/Repository.kt", 'kotlin', [
        ("code", 'com.example.data', 1, 3),  # package com.example.data
        ("class", 'com.example.data.User', 5, 8),  # /**
        ("doc", 'com.example.data.User', 5, 7),  # /**
        ("class", 'com.example.data.UserRepository', 10, 11),  # /** Stores and loads users. */
        ("doc", 'com.example.data.UserRepository', 10, 10),  # /** Stores and loads users. */
        ("method", 'com.example.data.UserRepository.find', 12, 12),  # suspend fun find(id: Long): User?
        ("method", 'com.example.data.UserRepository.all', 13, 14),  # fun all(): Flow<User>
        ("class", 'com.example.data.InMemoryRepository', 16, 17),  # class InMemoryRepository : UserRepositor
        ("method", 'com.example.data.InMemoryRepository.find', 19, 19),  # override suspend fun find(id: Long): Use
        ("method", 'com.example.data.InMemoryRepository.all', 21, 25),  # /** Every user, in id order. */
        ("doc", 'com.example.data.InMemoryRepository.all', 21, 21),  # /** Every user, in id order. */
        ("code", 'com.example.data.InMemoryRepository', 27, 30),  # companion object {
        ("class", 'com.example.data.Registry', 32, 32),  # object Registry {
        ("method", 'com.example.data.Registry.register', 33, 36),  # fun register(repo: UserRepository) {
        ("class", 'com.example.data.Role', 38, 38),  # enum class Role { ADMIN, USER }
        ("function", 'com.example.data.main', 40, 43),  # fun main() {
    ]),
    "Cache.swift": ("Sources/Cache.swift", 'swift', [
        ("code", None, 1, 1),  # import Foundation
        ("class", 'Cacheable', 3, 6),  # /// A key that can be cached.
        ("doc", 'Cacheable', 3, 3),  # /// A key that can be cached.
        ("class", 'Cache', 8, 12),  # /// A simple LRU cache.
        ("doc", 'Cache', 8, 9),  # /// A simple LRU cache.
        ("method", 'Cache.init', 14, 16),  # init(capacity: Int) {
        ("method", 'Cache.value', 18, 21),  # /// Returns the cached value.
        ("doc", 'Cache.value', 18, 18),  # /// Returns the cached value.
        ("method", 'Cache.insert', 23, 31),  # @discardableResult
        ("class", 'Entry', 33, 36),  # struct Entry: Cacheable {
        ("class", 'Policy', 38, 41),  # enum Policy {
        ("class", 'extension Cache', 43, 43),  # extension Cache {
        ("method", 'Cache.clear', 44, 47),  # func clear() {
        ("function", 'makeDefaultCache', 49, 51),  # func makeDefaultCache() -> Cache<String>
        ("code", None, 53, 53),  # let shared = makeDefaultCache()
    ]),
    "Queue.scala": ("src/Queue.scala", 'scala', [
        ("code", 'com.example.queue', 1, 3),  # package com.example.queue
        ("class", 'com.example.queue.Job', 5, 6),  # /** A job to be processed. */
        ("doc", 'com.example.queue.Job', 5, 5),  # /** A job to be processed. */
        ("class", 'com.example.queue.Queue', 8, 11),  # /**
        ("doc", 'com.example.queue.Queue', 8, 10),  # /**
        ("method", 'com.example.queue.Queue.push', 12, 12),  # def push(a: A): Unit
        ("method", 'com.example.queue.Queue.pop', 13, 14),  # def pop(): Option[A]
        ("class", 'com.example.queue.MemoryQueue', 16, 17),  # class MemoryQueue[A] extends Queue[A] {
        ("method", 'com.example.queue.MemoryQueue.push', 19, 20),  # /** Adds an element. */
        ("doc", 'com.example.queue.MemoryQueue.push', 19, 19),  # /** Adds an element. */
        ("method", 'com.example.queue.MemoryQueue.pop', 22, 26),  # def pop(): Option[A] = {
        ("class", 'com.example.queue.Worker', 28, 29),  # object Worker {
        ("method", 'com.example.queue.Worker.main', 31, 35),  # def main(args: Array[String]): Unit = {
    ]),
    "deploy.sh": ("scripts/deploy.sh", 'bash', [
        ("code", None, 1, 7),  # #!/usr/bin/env bash
        ("doc", None, 1, 3),  # #!/usr/bin/env bash
        ("function", 'log', 9, 12),  # # Print a message with a timestamp.
        ("doc", 'log', 9, 9),  # # Print a message with a timestamp.
        ("function", 'build', 14, 17),  # function build {
        ("function", 'upload', 19, 22),  # upload() {
        ("code", None, 24, 26),  # build
    ]),
    "inventory.lua": ("lua/inventory.lua", 'lua', [
        ("code", None, 1, 6),  # -- Inventory module.
        ("function", 'Inventory.new', 8, 15),  # --- Create a new inventory.
        ("doc", 'Inventory.new', 8, 9),  # --- Create a new inventory.
        ("function", 'Inventory:add', 17, 23),  # --- Add count of an item.
        ("doc", 'Inventory:add', 17, 17),  # --- Add count of an item.
        ("function", 'describe', 25, 27),  # local function describe(inv)
        ("code", None, 29, 31),  # Inventory.describe = describe
    ]),
    "Stack.hs": ("src/Data/Stack.hs", 'haskell', [
        ("code", 'Data.Stack', 1, 9),  # -- | A purely functional stack.
        ("class", 'Data.Stack.Stack', 11, 13),  # -- | A stack of values.
        ("doc", 'Data.Stack.Stack', 11, 11),  # -- | A stack of values.
        ("class", 'Data.Stack.Sized', 15, 16),  # -- | Things that can be sized.
        ("doc", 'Data.Stack.Sized', 15, 15),  # -- | Things that can be sized.
        ("method", 'Data.Stack.Sized.size', 17, 17),  # size :: f a -> Int
        ("class", 'Data.Stack.instance Sized Stack', 19, 19),  # instance Sized Stack where
        ("method", 'Data.Stack.Stack.size', 20, 20),  # size (Stack xs) = length xs
        ("function", 'Data.Stack.empty', 22, 24),  # -- | The empty stack.
        ("doc", 'Data.Stack.empty', 22, 22),  # -- | The empty stack.
        ("function", 'Data.Stack.push', 26, 28),  # -- | Push a value.
        ("doc", 'Data.Stack.push', 26, 26),  # -- | Push a value.
        ("function", 'Data.Stack.pop', 30, 32),  # pop :: Stack a -> Maybe (a, Stack a)
        ("class", 'Data.Stack.Depth', 34, 34),  # type Depth = Int
    ]),
    "accounts.ex": ("lib/bank/accounts.ex", 'elixir', [
        ("class", 'Bank.Accounts', 1, 10),  # defmodule Bank.Accounts do
        ("doc", 'Bank.Accounts', 2, 4),  # @moduledoc """
        ("function", 'Bank.Accounts.open', 12, 18),  # @doc """
        ("doc", 'Bank.Accounts.open', 12, 14),  # @doc """
        ("function", 'Bank.Accounts.deposit', 20, 24),  # @doc "Deposits `amount`."
        ("doc", 'Bank.Accounts.deposit', 20, 20),  # @doc "Deposits `amount`."
        ("function", 'Bank.Accounts.audit', 26, 28),  # defp audit(account) do
        ("function", 'Bank.Accounts.with_account', 30, 33),  # defmacro with_account(do: block) do
        ("class", 'Bank.Accounts.Limits', 35, 35),  # defmodule Bank.Accounts.Limits do
        ("function", 'Bank.Accounts.Limits.limit', 36, 37),  # def limit, do: 100
    ]),
    "buffer.zig": ("src/buffer.zig", 'zig', [
        ("code", None, 1, 4),  # //! A growable byte buffer.
        ("class", 'Buffer', 6, 10),  # /// A growable buffer of bytes.
        ("doc", 'Buffer', 6, 6),  # /// A growable buffer of bytes.
        ("method", 'Buffer.init', 12, 16),  # /// Create an empty buffer.
        ("doc", 'Buffer.init', 12, 12),  # /// Create an empty buffer.
        ("method", 'Buffer.deinit', 18, 21),  # pub fn deinit(self: *Buffer) void {
        ("class", 'Mode', 23, 23),  # pub const Mode = enum { read, write };
        ("function", 'sum', 25, 30),  # /// Sum a slice.
        ("doc", 'sum', 25, 25),  # /// Sum a slice.
        ("function", '"sum"', 32, 34),  # test "sum" {
    ]),
    "manual.rst": ("docs/manual.rst", 'rst', [
        ("doc", 'Manual', 1, 5),  # =======
        ("doc", 'Manual > Install > From source', 7, 17),  # Install
        ("doc", 'Manual > Install > From wheels', 19, 22),  # From wheels
        ("doc", 'Manual > Reference', 24, 27),  # Reference
    ]),
    "notes.txt": ("NOTES.txt", None, [
        ("doc", None, 1, 6),  # Release notes
    ]),
}  # fmt: skip


def _chunks(name: str, max_tokens: int = 256):
    repo_path, language, _ = EXPECTED[name]
    text = (FIXTURES / name).read_text(encoding="utf-8")
    return text, chunk_file(repo_path, text, language, WordCounter(max_tokens))


def test_every_fixture_has_a_table_and_detects_its_language():
    files = sorted(p.name for p in FIXTURES.iterdir() if p.is_file())
    assert files == sorted(EXPECTED)
    for name, (repo_path, language, _) in EXPECTED.items():
        head = (FIXTURES / name).read_text(encoding="utf-8")[:200]
        assert languages.detect_language(repo_path, head) == language, name


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_fixture_chunks_exactly(name):
    _, language, expected = EXPECTED[name]
    assert language is None or parse.grammar_available(language)
    _, chunks = _chunks(name)
    got = [(c.kind, c.symbol, c.start_line, c.end_line) for c in chunks]
    assert got == expected


def _check(text: str, chunks, counter):
    lines = text.split("\n")
    if lines[-1] == "":
        lines.pop()
    covered = set()
    for c in chunks:
        assert counter.count(c.embed_text) <= counter.max_tokens
        original = "\n".join(lines[c.start_line - 1 : c.end_line])
        assert c.text == original or (c.start_line == c.end_line and c.text in original)
        covered.update(range(c.start_line, c.end_line + 1))
    assert all(i + 1 in covered for i, ln in enumerate(lines) if ln.strip())


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(name=st.sampled_from(sorted(EXPECTED)), max_tokens=st.integers(min_value=24, max_value=600))
def test_property_coverage_and_size_limit(name, max_tokens):
    text, chunks = _chunks(name, max_tokens)
    _check(text, chunks, WordCounter(max_tokens))


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    name=st.sampled_from(sorted(EXPECTED)),
    cut=st.integers(min_value=0, max_value=5000),
    junk=st.sampled_from(["", "{", "}", "(((", '"', "'''", "/*", "end", "\t\t", "é✓"]),
)
def test_property_damaged_files_still_covered(name, cut, junk):
    repo_path, language, _ = EXPECTED[name]
    text = (FIXTURES / name).read_text(encoding="utf-8")
    pos = cut % (len(text) + 1)
    damaged = text[:pos] + junk + text[pos:]
    counter = WordCounter(128)
    _check(damaged, chunk_file(repo_path, damaged, language, counter), counter)


def test_every_supported_language_has_a_fixture():
    covered = {language for _, language, _ in EXPECTED.values()}
    assert set(languages.supported_languages()) <= covered


@pytest.mark.parametrize("language", languages.supported_languages())
def test_ten_thousand_nested_brackets(language, monkeypatch):
    # some grammars' error recovery is slow on this input: the per-file time limit must
    # cut it short and the file still be covered by line windows
    monkeypatch.setattr(parse, "PARSE_TIMEOUT_S", 0.3)
    text = "x = " + "(" * 10000 + "[" * 10000 + "{" * 10000 + "}" * 10000 + "]" * 10000 + "\n"
    text += "y = " + ")" * 10000 + "\n"
    counter = WordCounter(256)
    _check(text, chunk_file(f"deep.{language}", text, language, counter), counter)


def test_chunking_is_thread_safe():
    from concurrent.futures import ThreadPoolExecutor

    names = sorted(EXPECTED) * 4
    serial = [_chunks(n)[1] for n in names]
    with ThreadPoolExecutor(8) as pool:
        parallel = list(pool.map(lambda n: _chunks(n)[1], names))
    assert parallel == serial
