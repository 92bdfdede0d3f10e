"""Mongo-style ``where`` conditions over conversation documents. Pure.

Documents are the JSON objects the SDK receives (``objectId``, ``c``, ``m``, ``tr``,
``lm`` ... and custom attributes at top level). Supported: equality (an array field
equals a value when it contains it), ``$ne $lt $lte $gt $gte $in $nin $all $size
$exists $regex`` (with ``$options`` i/m/s), ``$and`` and ``$or``; dotted keys reach
into nested objects; ``{"__type": "Date", "iso": ...}`` compares by its ISO text.

Any client sends these, so they are bounded before anything runs (``validate``): at
most ``MAX_CONDITIONS`` conditions nested at most ``MAX_DEPTH`` deep, ``MAX_LIST_ITEMS``
values in all ``$in``/``$nin``/``$all`` lists, keys without control characters. Regular
expressions are RE2's, which match in time linear in the text: a pattern that needs
backtracking (backreferences, lookaround) is refused rather than allowed to stall the
server, except the "does not contain" idiom ``^((?!text).)*$`` of the SDK guides.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable, Sequence
from typing import Protocol, cast

import re2

from chatroom.protocol.errors import ChatError, ErrorCode

Doc = dict[str, object]

_MISSING = object()


MAX_DEPTH = 8
"""Levels of ``$and``/``$or`` nesting; deeper: 4310."""
MAX_CONDITIONS = 100
"""Field conditions (``{"key": ...}``, whatever operators each has) in one ``where``,
and clauses in one ``$and``/``$or`` list; more: 4310."""
MAX_LIST_ITEMS = 1000
"""Values in all the ``$in``/``$nin``/``$all`` lists of one ``where``; more: 4310."""
MAX_KEY_LENGTH = 256
"""Characters of one key in ``where`` or ``sort``; longer: 4310."""
MAX_PATTERN_LENGTH = 1000
"""Characters of one ``$regex``; longer: 4310."""
MAX_SORT_KEYS = 8
"""Keys in one ``sort``; more: 4310."""


def bad_query(reason: str, what: str = "where") -> ChatError:
    """4310 CONVERSATION_QUERY_FAILED, the reason naming the part at fault."""
    return ChatError(ErrorCode.CONVERSATION_QUERY_FAILED, f"invalid {what}: {reason}")


def matches(doc: Doc, where: object) -> bool:
    """True when ``doc`` satisfies ``where``. Malformed conditions raise 4310."""
    if not isinstance(where, dict):
        raise bad_query("a condition is a JSON object")
    for key, cond in where.items():
        if key == "$and":
            if not _clauses(cond) or not all(matches(doc, c) for c in _clauses(cond)):
                return False
        elif key == "$or":
            if not any(matches(doc, c) for c in _clauses(cond)):
                return False
        elif key.startswith("$"):
            raise bad_query(f"unknown operator {key}")
        elif not _field_matches(_lookup(doc, key), cond):
            return False
    return True


def validate(where: object) -> None:
    """Raise 4310 for anything malformed or beyond the bounds (module docstring) in
    ``where``, wherever it is: ``matches`` stops at the first failing condition and
    would not look at the rest."""
    _validate(where, 1, _Budget())


class _Budget:
    """What one ``where`` has used of ``MAX_CONDITIONS`` and ``MAX_LIST_ITEMS``."""

    def __init__(self) -> None:
        self.conditions = 0
        self.items = 0

    def spend(self, conditions: int = 0, items: int = 0) -> None:
        self.conditions += conditions
        self.items += items
        if self.conditions > MAX_CONDITIONS:
            raise bad_query(f"more than {MAX_CONDITIONS} conditions")
        if self.items > MAX_LIST_ITEMS:
            raise bad_query(f"more than {MAX_LIST_ITEMS} values in $in/$nin/$all lists")


def _validate(where: object, depth: int, budget: _Budget) -> None:
    if not isinstance(where, dict):
        raise bad_query("a condition is a JSON object")
    if depth > MAX_DEPTH:
        raise bad_query(f"$and/$or nested more than {MAX_DEPTH} levels deep")
    budget.spend(sum(1 for key in where if key not in ("$and", "$or")))
    for key, cond in where.items():
        if key in ("$and", "$or"):
            clauses = _clauses(cond)
            if len(clauses) > MAX_CONDITIONS:  # checked before the walk, which stays short
                raise bad_query(f"more than {MAX_CONDITIONS} conditions")
            for clause in clauses:
                _validate(clause, depth + 1, budget)
        elif key.startswith("$"):
            raise bad_query(f"unknown operator {key}")
        else:
            check_key(key)
            if isinstance(cond, dict) and any(str(k).startswith("$") for k in cond):
                for op, arg in cond.items():
                    _validate_operator(op, arg, cond, budget)


# C0 controls and DEL: SQLite's JSON paths end at a NUL, and no SDK sends them.
_CONTROL = re.compile("[\x00-\x1f\x7f]")


def check_key(key: str, what: str = "where") -> None:
    """4310 unless ``key`` is a usable field path: 1-256 characters, no control
    characters, no empty part between dots."""
    shown = repr(key[:40])
    if not key or len(key) > MAX_KEY_LENGTH:
        raise bad_query(f"key {shown} is empty or longer than {MAX_KEY_LENGTH}", what)
    if _CONTROL.search(key):
        raise bad_query(f"key {shown} contains a control character", what)
    if any(not part for part in key.split(".")):
        raise bad_query(f"key {shown} has an empty part between dots", what)


def sort_keys(spec: str) -> list[str]:
    """The keys of a ``sort`` comma list (``"name, -createdAt"`` -> ``["name",
    "-createdAt"]``), blank entries dropped; 4310 unless there are at most
    ``MAX_SORT_KEYS``, each valid for ``check_key`` after an optional ``-``/``+``."""
    keys = [key for key in (raw.strip() for raw in spec.split(",")) if key]
    if len(keys) > MAX_SORT_KEYS:
        raise bad_query(f"more than {MAX_SORT_KEYS} keys", "sort")
    for key in keys:
        check_key(key.lstrip("-+"), "sort")
    return keys


def _validate_operator(op: str, arg: object, cond: dict[str, object], budget: _Budget) -> None:
    if op in ("$in", "$nin", "$all"):
        budget.spend(items=len(_items(arg, op)))
    elif op == "$regex":
        _regex("", arg, cond.get("$options", ""))
    elif op == "$options":
        if "$regex" not in cond:
            raise bad_query("$options needs $regex")
    elif op in ("$size", "$exists"):
        _operator(op, _MISSING, arg, cond)
    elif op != "$ne" and op not in _COMPARISONS:
        raise bad_query(f"unknown operator {op}")


def _clauses(cond: object) -> list[object]:
    if not isinstance(cond, list) or not cond:
        raise bad_query("$and/$or take a non-empty list")
    return cond


def _lookup(doc: Doc, key: str) -> object:
    value: object = doc
    for part in key.split("."):
        if not isinstance(value, dict) or part not in value:
            return _MISSING
        value = value[part]
    return value


def _plain(value: object) -> object:
    if isinstance(value, dict) and value.get("__type") == "Date":
        return value.get("iso")
    return value


def _field_matches(value: object, cond: object) -> bool:
    if isinstance(cond, dict) and any(str(k).startswith("$") for k in cond):
        return all(_operator(op, value, arg, cond) for op, arg in cond.items())
    return _equals(value, cond)


def _equals(value: object, expected: object) -> bool:
    value, expected = _plain(value), _plain(expected)
    if isinstance(value, list) and not isinstance(expected, list):
        return any(_plain(v) == expected for v in value)
    return value is not _MISSING and value == expected


def _compare(value: object, arg: object, test: Callable[[int], bool]) -> bool:
    a, b = _plain(value), _plain(arg)
    if a is _MISSING or a is None:
        return False
    numbers = (int, float)
    if isinstance(a, numbers) and isinstance(b, numbers) and not isinstance(a, bool):
        return test((a > b) - (a < b))
    if isinstance(a, str) and isinstance(b, str):
        return test((a > b) - (a < b))
    return False


def _items(arg: object, op: str) -> Sequence[object]:
    if not isinstance(arg, list):
        raise bad_query(f"{op} takes a list")
    return [_plain(a) for a in arg]


def _operator(op: str, value: object, arg: object, cond: dict[str, object]) -> bool:
    values = [_plain(v) for v in value] if isinstance(value, list) else [_plain(value)]
    if op == "$ne":
        return not _equals(value, arg)
    if op in _COMPARISONS:
        return _compare(value, arg, _COMPARISONS[op])
    if op == "$in":
        return any(v in _items(arg, op) for v in values if v is not _MISSING)
    if op == "$nin":
        return not any(v in _items(arg, op) for v in values if v is not _MISSING)
    if op == "$all":
        return isinstance(value, list) and all(a in values for a in _items(arg, op))
    if op == "$size":
        if not isinstance(arg, int) or isinstance(arg, bool):
            raise bad_query("$size takes an integer")
        return isinstance(value, list) and len(value) == arg
    if op == "$exists":
        if not isinstance(arg, bool):
            raise bad_query("$exists takes true or false")
        return (value is not _MISSING) == arg
    if op == "$regex":
        return _regex(value, arg, cond.get("$options", ""))
    if op == "$options":
        return True
    raise bad_query(f"unknown operator {op}")


_COMPARISONS: dict[str, Callable[[int], bool]] = {
    "$lt": lambda c: c < 0,
    "$lte": lambda c: c <= 0,
    "$gt": lambda c: c > 0,
    "$gte": lambda c: c >= 0,
}


class Searcher(Protocol):
    """A compiled ``$regex``: ``search`` is truthy when the text has a match."""

    def search(self, text: str) -> object: ...


def _regex(value: object, pattern: object, options: object) -> bool:
    if not isinstance(pattern, str) or not isinstance(options, str):
        raise bad_query("$regex takes a string pattern and string $options")
    compiled = compile_regex(pattern, options)
    candidates = value if isinstance(value, list) else [value]
    return any(isinstance(v, str) and compiled.search(v) for v in candidates)


def _re2_options() -> re2.Options:
    options = re2.Options()
    options.log_errors = False  # a refused pattern is the client's error, not the log's
    # A pattern whose automaton needs more is refused: this bounds the memory of the
    # cached patterns (``compile_regex`` and the re2 module's own cache of 128).
    options.max_mem = 1 << 20
    return options


_RE2_OPTIONS = _re2_options()


@functools.lru_cache(maxsize=64)
def compile_regex(pattern: str, options: str) -> Searcher:
    """A ``$regex`` with its ``$options`` (i, m, s) compiled for RE2, or 4310 naming
    why it cannot be; cached, since a query tests one pattern against many
    conversations. RE2 takes ``\\Q...\\E`` (the SDKs' contains/startsWith) as it is."""
    if len(pattern) > MAX_PATTERN_LENGTH:
        raise bad_query(f"$regex longer than {MAX_PATTERN_LENGTH} characters")
    for letter in options:
        if letter not in "ims":
            raise bad_query(f"unknown regex option {letter!r} (i, m and s are supported)")
    negated = _not_containing(pattern, options)
    if negated is not None:
        return negated
    flags = "".join(sorted(set(options)))
    try:
        return cast(
            Searcher, re2.compile(f"(?{flags}){pattern}" if flags else pattern, _RE2_OPTIONS)
        )
    except re2.error as exc:
        why = exc.args[0].decode(errors="replace") if exc.args else "unusable"
        raise bad_query(
            f"$regex refused: {why} (RE2 syntax, linear time: no backreferences or lookaround)"
        ) from None


# ``^((?!text).)*$``: what the LeanCloud guides give for "does not contain". The text
# here is literal (escaped punctuation allowed), so no lookahead engine is needed.
_NOT_CONTAINING = re.compile(
    r"\^\((?:\?:)?\(\?!((?:[^\\.^$*+?()\[\]{}|]|\\[^0-9A-Za-z])+)\)\.\)\*\$"
)
_ESCAPED = re.compile(r"\\(.)", re.DOTALL)


class _NotContaining:
    """``^((?!text).)*$`` as Python's ``re`` matches it, in linear time: no
    occurrence of ``text`` and, without ``s``, no line break but a final one."""

    def __init__(self, text: str, options: str) -> None:
        self._fold = "i" in options
        self._text = text.lower() if self._fold else text
        self._dotall = "s" in options

    def search(self, text: str) -> bool:
        if not self._dotall and "\n" in text[:-1]:
            return False
        return self._text not in (text.lower() if self._fold else text)


def _not_containing(pattern: str, options: str) -> Searcher | None:
    found = _NOT_CONTAINING.fullmatch(pattern)
    if found is None or not set(options) <= {"i", "s"}:
        return None
    return _NotContaining(_ESCAPED.sub(r"\1", found.group(1)), options)


def sort_docs(docs: list[Doc], keys: list[str]) -> list[Doc]:
    """Sort by ``keys`` (from ``sort_keys``), ``-key`` descending; missing values sort
    last."""
    out = list(docs)
    for key in reversed(keys):
        descending = key.startswith("-")
        name = key.lstrip("-+")
        present = [d for d in out if _lookup(d, name) not in (_MISSING, None)]
        absent = [d for d in out if _lookup(d, name) in (_MISSING, None)]
        present.sort(key=lambda d: _sortable(_plain(_lookup(d, name))), reverse=descending)
        out = present + absent
    return out


def _sortable(value: object) -> tuple[int, object]:
    if isinstance(value, bool):
        return (0, int(value))
    if isinstance(value, (int, float)):
        return (1, value)
    if isinstance(value, str):
        return (2, value)
    return (3, cast(object, repr(value)))
