"""The filter expression language: parse once, check against an attribute schema, evaluate to a bitmap.

    category = "books" and price < 20
    category in ("books", "music") and not tags has "explicit"
    in_stock and (brand != "acme" or rating >= 4.5) and tags has any ("new", "sale")
    @in_stock and id not in ("i1", "i2")            # @name: a stored (named) filter

Grammar (keywords are case-insensitive; `#` is not a comment):

    expr       := or
    or         := and ("or" and)*
    and        := unary ("and" unary)*
    unary      := "not" unary | "(" expr ")" | "@" NAME | test
    test       := attr ("=" | "==" | "!=" | "<" | "<=" | ">" | ">=") value
                | attr ["not"] "in" "(" value ("," value)* ")"
                | attr "has" value | attr "has" ("any" | "all") "(" value ("," value)* ")"
                | attr "exists" | attr "is" ["not"] "null"
                | attr                                   (a boolean attribute that is true)
    attr       := NAME | `any text but a backquote`
    value      := "string" | 'string' | number | true | false

An item without a value for an attribute matches no test on it except `is null`; `not` negates the
result, so `not price < 20` keeps the items without a price. `id` names the item id itself.

Pure: numpy only. Errors are FilterError, a ValueError with the 0-based character `position`.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import numpy as np

# Attribute kinds (app.recsys.attributes) and the pseudo-attribute naming the item id.
CATEGORICAL, TAGS, NUMERIC, BOOLEAN = "categorical", "tags", "numeric", "boolean"
ID = "id"
MAX_LENGTH = 4000
MAX_DEPTH = 64
COMPARISONS = ("=", "!=", "<", "<=", ">", ">=")

Value = str | float | bool


class FilterError(ValueError):
    """A filter that cannot be parsed or does not fit the schema; `position` is a 0-based character offset."""

    def __init__(self, message: str, position: int) -> None:
        super().__init__(f"{message} (at column {position + 1})")
        self.reason = message
        self.position = position


@dataclass(frozen=True)
class Attr:
    name: str
    pos: int


@dataclass(frozen=True)
class Compare:
    attr: Attr
    op: str  # one of COMPARISONS
    value: Value
    value_pos: int


@dataclass(frozen=True)
class In:
    attr: Attr
    values: tuple[Value, ...]
    value_pos: int


@dataclass(frozen=True)
class Has:
    attr: Attr
    mode: str  # "any" | "all" (a single value is "any" of one)
    values: tuple[Value, ...]
    value_pos: int


@dataclass(frozen=True)
class Exists:
    attr: Attr


@dataclass(frozen=True)
class Truthy:
    attr: Attr


@dataclass(frozen=True)
class Ref:
    name: str
    pos: int


@dataclass(frozen=True)
class Not:
    item: Expr


@dataclass(frozen=True)
class And:
    items: tuple[Expr, ...]


@dataclass(frozen=True)
class Or:
    items: tuple[Expr, ...]


Expr = Compare | In | Has | Exists | Truthy | Ref | Not | And | Or

_TOKEN = re.compile(
    r"""\s*(?:
      (?P<string>"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*')
    | (?P<number>[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?(?![A-Za-z_]))
    | (?P<quoted>`[^`]*`)
    | (?P<ref>@[A-Za-z0-9][A-Za-z0-9._-]*)
    | (?P<name>[A-Za-z_][A-Za-z0-9_.\-]*)
    | (?P<op>==|!=|<=|>=|<>|[=<>(),])
    )""",
    re.VERBOSE,
)
_ESCAPE = re.compile(r"\\(.)", re.DOTALL)
KEYWORDS = {"and", "or", "not", "in", "has", "any", "all", "exists", "is", "null", "true", "false"}


@dataclass(frozen=True)
class _Token:
    kind: str  # string, number, quoted, ref, name, op, end
    text: str
    pos: int

    @property
    def word(self) -> str:
        return self.text.lower() if self.kind == "name" else ""


def _tokens(text: str) -> list[_Token]:
    out: list[_Token] = []
    pos = 0
    while True:
        while pos < len(text) and text[pos].isspace():
            pos += 1
        if pos == len(text):
            out.append(_Token("end", "", pos))
            return out
        m = _TOKEN.match(text, pos)
        if m is None or m.lastgroup is None:
            snippet = text[pos : pos + 10]
            if text[pos] in "\"'`":
                raise FilterError(f"unterminated {text[pos]} quote", pos)
            raise FilterError(f"unexpected character {snippet[0]!r}", pos)
        start = m.start(m.lastgroup)
        out.append(_Token(m.lastgroup, m.group(m.lastgroup), start))
        pos = m.end()


class _Parser:
    def __init__(self, text: str) -> None:
        self.tokens = _tokens(text)
        self.i = 0
        self.depth = 0

    @property
    def tok(self) -> _Token:
        return self.tokens[self.i]

    def take(self) -> _Token:
        tok = self.tokens[self.i]
        self.i += 1
        return tok

    def at_word(self, *words: str) -> bool:
        return self.tok.word in words

    def expect_op(self, op: str) -> _Token:
        if self.tok.kind != "op" or self.tok.text != op:
            raise FilterError(f"expected {op!r}, found {_describe(self.tok)}", self.tok.pos)
        return self.take()

    def expr(self) -> Expr:
        self.depth += 1
        if self.depth > MAX_DEPTH:
            raise FilterError(f"nested more than {MAX_DEPTH} deep", self.tok.pos)
        items = [self.conj()]
        while self.at_word("or"):
            self.take()
            items.append(self.conj())
        self.depth -= 1
        return items[0] if len(items) == 1 else Or(tuple(items))

    def conj(self) -> Expr:
        items = [self.unary()]
        while self.at_word("and"):
            self.take()
            items.append(self.unary())
        return items[0] if len(items) == 1 else And(tuple(items))

    def unary(self) -> Expr:
        tok = self.tok
        if tok.word == "not":
            self.take()
            self.depth += 1
            if self.depth > MAX_DEPTH:
                raise FilterError(f"nested more than {MAX_DEPTH} deep", tok.pos)
            inner = self.unary()
            self.depth -= 1
            return Not(inner)
        if tok.kind == "op" and tok.text == "(":
            self.take()
            inner = self.expr()
            self.expect_op(")")
            return inner
        if tok.kind == "ref":
            self.take()
            return Ref(tok.text[1:], tok.pos)
        return self.test()

    def attr(self) -> Attr:
        tok = self.tok
        if tok.kind == "quoted":
            self.take()
            name = tok.text[1:-1]
            if not name:
                raise FilterError("an attribute name in backquotes cannot be empty", tok.pos)
            return Attr(name, tok.pos)
        if tok.kind == "name" and tok.word not in KEYWORDS:
            self.take()
            return Attr(tok.text, tok.pos)
        raise FilterError(f"expected an attribute name, found {_describe(tok)}", tok.pos)

    def value(self) -> tuple[Value, int]:
        tok = self.tok
        if tok.kind == "string":
            self.take()
            return _ESCAPE.sub(r"\1", tok.text[1:-1]), tok.pos
        if tok.kind == "number":
            self.take()
            number = float(tok.text)
            if not np.isfinite(number):
                raise FilterError(f"number {tok.text} is out of range", tok.pos)
            return number, tok.pos
        if tok.word in ("true", "false"):
            self.take()
            return tok.word == "true", tok.pos
        raise FilterError(
            f"expected a value (a quoted string, a number, true or false), found {_describe(tok)}", tok.pos
        )

    def values(self) -> tuple[tuple[Value, ...], int]:
        start = self.expect_op("(").pos
        values = [self.value()[0]]
        while self.tok.kind == "op" and self.tok.text == ",":
            self.take()
            values.append(self.value()[0])
        self.expect_op(")")
        return tuple(values), start

    def test(self) -> Expr:
        attr = self.attr()
        tok = self.tok
        if tok.kind == "op" and tok.text in ("=", "==", "!=", "<>", "<", "<=", ">", ">="):
            self.take()
            op = {"==": "=", "<>": "!="}.get(tok.text, tok.text)
            value, pos = self.value()
            return Compare(attr, op, value, pos)
        if tok.word == "not" and self.tokens[self.i + 1].word == "in":
            self.i += 2
            values, pos = self.values()
            return Not(In(attr, values, pos))
        if tok.word == "in":
            self.take()
            values, pos = self.values()
            return In(attr, values, pos)
        if tok.word == "has":
            self.take()
            if self.at_word("any", "all"):
                mode = self.take().word
                values, pos = self.values()
                return Has(attr, mode, values, pos)
            value, pos = self.value()
            return Has(attr, "any", (value,), pos)
        if tok.word == "exists":
            self.take()
            return Exists(attr)
        if tok.word == "is":
            self.take()
            negated = self.at_word("not")
            if negated:
                self.take()
            if not self.at_word("null"):
                raise FilterError(f"expected null, found {_describe(self.tok)}", self.tok.pos)
            self.take()
            return Exists(attr) if negated else Not(Exists(attr))
        return Truthy(attr)


def _describe(tok: _Token) -> str:
    return "the end of the filter" if tok.kind == "end" else repr(tok.text)


def parse(text: str) -> Expr:
    """The expression tree of a filter; FilterError naming the position of the first problem."""
    if len(text) > MAX_LENGTH:
        raise FilterError(f"a filter is at most {MAX_LENGTH} characters, this one has {len(text)}", MAX_LENGTH)
    parser = _Parser(text)
    if parser.tok.kind == "end":
        raise FilterError("the filter is empty", 0)
    tree = parser.expr()
    if parser.tok.kind != "end":
        raise FilterError(f"expected and, or or the end of the filter, found {_describe(parser.tok)}", parser.tok.pos)
    return tree


def refs(expr: Expr) -> list[Ref]:
    """Every @name reference in the expression, in order."""
    found: list[Ref] = []
    _walk(expr, lambda node: found.append(node) if isinstance(node, Ref) else None)
    return found


def _walk(expr: Expr, visit: Callable[[Expr], None]) -> None:
    visit(expr)
    if isinstance(expr, Not):
        _walk(expr.item, visit)
    elif isinstance(expr, And | Or):
        for item in expr.items:
            _walk(item, visit)


def substitute(expr: Expr, named: Mapping[str, Expr]) -> Expr:
    """The expression with each @name replaced by named[name] (the caller resolves nesting and cycles)."""
    if isinstance(expr, Ref):
        return named[expr.name]
    if isinstance(expr, Not):
        return Not(substitute(expr.item, named))
    if isinstance(expr, And):
        return And(tuple(substitute(item, named) for item in expr.items))
    if isinstance(expr, Or):
        return Or(tuple(substitute(item, named) for item in expr.items))
    return expr


def _kind_name(value: Value) -> str:
    return "true/false" if isinstance(value, bool) else "a number" if isinstance(value, float) else "a string"


def _check_value(kind: str, attr: Attr, value: Value, pos: int) -> None:
    wanted = {CATEGORICAL: str, TAGS: str, NUMERIC: float, BOOLEAN: bool}[kind]
    ok = isinstance(value, wanted) and not (wanted is float and isinstance(value, bool))
    if not ok:
        expected = {str: "a quoted string", float: "a number", bool: "true or false"}[wanted]
        raise FilterError(f"{attr.name} is {kind}: compare it with {expected}, not {_kind_name(value)}", pos)


def validate(expr: Expr, schema: Mapping[str, str]) -> None:
    """Check every test against the attribute kinds (name -> kind); `id` is the item id (a string).

    @name references are left to the caller, which checks the stored expressions they stand for."""
    kinds = {**schema, ID: CATEGORICAL} if ID not in schema else dict(schema)

    def kind_of(attr: Attr) -> str:
        if attr.name not in kinds:
            known = ", ".join(sorted(kinds)) if len(kinds) <= 30 else f"{len(kinds)} attributes"
            raise FilterError(f"unknown attribute {attr.name!r} (known: {known})", attr.pos)
        return kinds[attr.name]

    def check(node: Expr) -> None:
        if isinstance(node, Compare):
            kind = kind_of(node.attr)
            if kind == TAGS:
                raise FilterError(f"{node.attr.name} holds several values (tags): test it with has", node.attr.pos)
            if node.op not in ("=", "!=") and kind != NUMERIC:
                raise FilterError(f"{node.op} needs a numeric attribute; {node.attr.name} is {kind}", node.attr.pos)
            _check_value(kind, node.attr, node.value, node.value_pos)
        elif isinstance(node, In):
            kind = kind_of(node.attr)
            if kind == TAGS:
                raise FilterError(f"{node.attr.name} holds several values (tags): use has any (...)", node.attr.pos)
            for value in node.values:
                _check_value(kind, node.attr, value, node.value_pos)
        elif isinstance(node, Has):
            kind = kind_of(node.attr)
            if kind != TAGS:
                raise FilterError(
                    f"has tests a multi-valued (tags) attribute; {node.attr.name} is {kind}", node.attr.pos
                )
            for value in node.values:
                _check_value(kind, node.attr, value, node.value_pos)
        elif isinstance(node, Exists):
            kind_of(node.attr)
        elif isinstance(node, Truthy):
            kind = kind_of(node.attr)
            if kind != BOOLEAN:
                raise FilterError(
                    f"{node.attr.name} is {kind}, not boolean: compare it (e.g. {node.attr.name} = ...)", node.attr.pos
                )

    _walk(expr, check)


def canonical(expr: Expr) -> str:
    """One spelling per meaning-preserving layout (spaces, quotes, case of keywords): a cache key."""
    if isinstance(expr, Compare):
        return f"{_name(expr.attr)} {expr.op} {_literal(expr.value)}"
    if isinstance(expr, In):
        return f"{_name(expr.attr)} in ({', '.join(map(_literal, expr.values))})"
    if isinstance(expr, Has):
        return f"{_name(expr.attr)} has {expr.mode} ({', '.join(map(_literal, expr.values))})"
    if isinstance(expr, Exists):
        return f"{_name(expr.attr)} exists"
    if isinstance(expr, Truthy):
        return _name(expr.attr)
    if isinstance(expr, Ref):
        return f"@{expr.name}"
    if isinstance(expr, Not):
        return f"not ({canonical(expr.item)})"
    joiner = " and " if isinstance(expr, And) else " or "
    return joiner.join(f"({canonical(item)})" for item in expr.items)


def _name(attr: Attr) -> str:
    return f"`{attr.name}`"


def _literal(value: Value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return repr(value)
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


class Columns:
    """What evaluate reads: attribute columns aligned to a catalogue of n items (app.recsys.attributes)."""

    n: int

    def kind(self, name: str) -> str:
        raise NotImplementedError

    def equals(self, name: str, values: tuple[Value, ...]) -> np.ndarray:
        """Items whose (single) value is one of `values`."""
        raise NotImplementedError

    def present(self, name: str) -> np.ndarray:
        raise NotImplementedError

    def numeric(self, name: str) -> np.ndarray:
        """float64 values, NaN where missing."""
        raise NotImplementedError

    def has(self, name: str, values: tuple[Value, ...], mode: str) -> np.ndarray:
        raise NotImplementedError


_NUMERIC_OPS: dict[str, Callable[[np.ndarray, float], np.ndarray]] = {
    "=": np.equal,
    "!=": np.not_equal,
    "<": np.less,
    "<=": np.less_equal,
    ">": np.greater,
    ">=": np.greater_equal,
}


def evaluate(expr: Expr, columns: Columns) -> np.ndarray:
    """The boolean bitmap of the items the (validated, resolved) expression keeps."""
    if isinstance(expr, And):
        out = evaluate(expr.items[0], columns)
        for item in expr.items[1:]:
            out &= evaluate(item, columns)
        return out
    if isinstance(expr, Or):
        out = evaluate(expr.items[0], columns)
        for item in expr.items[1:]:
            out |= evaluate(item, columns)
        return out
    if isinstance(expr, Not):
        return ~evaluate(expr.item, columns)
    if isinstance(expr, Exists):
        return columns.present(expr.attr.name).copy()
    if isinstance(expr, Truthy):
        return columns.equals(expr.attr.name, (True,))
    if isinstance(expr, In):
        return columns.equals(expr.attr.name, expr.values)
    if isinstance(expr, Has):
        return columns.has(expr.attr.name, expr.values, expr.mode)
    if isinstance(expr, Compare):
        name = expr.attr.name
        if columns.kind(name) == NUMERIC:
            values = columns.numeric(name)
            with np.errstate(invalid="ignore"):
                out = _NUMERIC_OPS[expr.op](values, float(expr.value))
            return out & ~np.isnan(values) if expr.op == "!=" else out
        same = columns.equals(name, (expr.value,))
        return same if expr.op == "=" else ~same & columns.present(name)
    raise TypeError(f"cannot evaluate {type(expr).__name__} (resolve named filters first)")
