"""The List filter language: conditions on `name` with `=`, `!=`, `IN (...)`, `NOT IN (...)`, and AND."""

from __future__ import annotations

import dataclasses
import re

from desktop_image_operator_dev.fakecloud.codes import ApiError, StatusCode

FILTERABLE_FIELDS = frozenset({"name"})

_TOKEN = re.compile(
    r"""\s*(?:
        (?P<string>"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*')
      | (?P<symbol>!=|=|\(|\)|,)
      | (?P<word>[A-Za-z0-9_.\-]+)
    )""",
    re.VERBOSE,
)
_ESCAPE = re.compile(r"\\(.)")


@dataclasses.dataclass(frozen=True)
class Condition:
    field: str
    values: frozenset[str]
    negated: bool

    def matches(self, value: str) -> bool:
        return (value in self.values) != self.negated


@dataclasses.dataclass(frozen=True)
class _Token:
    kind: str  # "string", "symbol" or "word"
    text: str


def _invalid(problem: str) -> ApiError:
    return ApiError(StatusCode.INVALID_ARGUMENT, f"filter: {problem}")


def _tokenize(text: str) -> list[_Token]:
    tokens: list[_Token] = []
    position, end = 0, len(text.rstrip())
    while position < end:
        match = _TOKEN.match(text, position)
        if match is None:
            raise _invalid(f"unexpected character at position {position}: {text[position : position + 10]!r}")
        kind = match.lastgroup or ""
        raw = match[kind]
        if kind == "string":
            raw = _ESCAPE.sub(r"\1", raw[1:-1])
        tokens.append(_Token(kind, raw))
        position = match.end()
    return tokens


class _Parser:
    def __init__(self, tokens: list[_Token]) -> None:
        self.tokens = tokens
        self.index = 0

    def peek(self) -> _Token | None:
        return self.tokens[self.index] if self.index < len(self.tokens) else None

    def take(self) -> _Token:
        token = self.peek()
        if token is None:
            raise _invalid("unexpected end of expression")
        self.index += 1
        return token

    def keyword(self, word: str) -> bool:
        token = self.peek()
        if token is not None and token.kind == "word" and token.text.upper() == word:
            self.index += 1
            return True
        return False

    def symbol(self, symbol: str) -> None:
        token = self.take()
        if token.kind != "symbol" or token.text != symbol:
            raise _invalid(f"expected {symbol!r}, got {token.text!r}")

    def value(self) -> str:
        token = self.take()
        if token.kind == "symbol":
            raise _invalid(f"expected a value, got {token.text!r}")
        return token.text

    def condition(self) -> Condition:
        field = self.take()
        if field.kind != "word":
            raise _invalid(f"expected a field name, got {field.text!r}")
        if field.text not in FILTERABLE_FIELDS:
            raise _invalid(
                f"field {field.text!r} cannot be filtered on; use one of: {', '.join(FILTERABLE_FIELDS)}"
            )
        negated = self.keyword("NOT")
        if self.keyword("IN"):
            self.symbol("(")
            values = [self.value()]
            while (token := self.take()).text == "," and token.kind == "symbol":
                values.append(self.value())
            if token.kind != "symbol" or token.text != ")":
                raise _invalid(f"expected ',' or ')', got {token.text!r}")
            return Condition(field.text, frozenset(values), negated)
        if negated:
            raise _invalid("NOT must be followed by IN")
        operator = self.take()
        if operator.kind != "symbol" or operator.text not in ("=", "!="):
            raise _invalid(f"expected '=', '!=', 'IN' or 'NOT IN', got {operator.text!r}")
        return Condition(field.text, frozenset({self.value()}), operator.text == "!=")

    def expression(self) -> list[Condition]:
        conditions = [self.condition()]
        while self.keyword("AND"):
            conditions.append(self.condition())
        leftover = self.peek()
        if leftover is not None:
            raise _invalid(f"unexpected {leftover.text!r}")
        return conditions


def parse_filter(text: str) -> list[Condition]:
    """The conditions of a filter expression (empty for an empty filter); INVALID_ARGUMENT when malformed."""
    tokens = _tokenize(text)
    if not tokens:
        return []
    return _Parser(tokens).expression()
