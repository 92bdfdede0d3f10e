"""Mongo-style ``where`` conditions over conversation documents. Pure.

Documents are the JSON objects the SDK receives (``objectId``, ``c``, ``m``, ``tr``,
``lm`` ... and custom attributes at top level). Supported: equality (an array field
equals a value when it contains it), ``$ne $lt $lte $gt $gte $in $nin $all $size
$exists $regex`` (with ``$options`` i/m/s/x), ``$and`` and ``$or``; dotted keys reach
into nested objects; ``{"__type": "Date", "iso": ...}`` compares by its ISO text.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable, Sequence
from typing import cast

from chatroom.protocol.errors import ChatError, ErrorCode

Doc = dict[str, object]

_MISSING = object()


def bad_query(reason: str) -> ChatError:
    return ChatError(ErrorCode.CONVERSATION_QUERY_FAILED, f"invalid where: {reason}")


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
    """Raise 4310 for anything malformed in ``where``, wherever it is: ``matches``
    stops at the first failing condition and would not look at the rest."""
    if not isinstance(where, dict):
        raise bad_query("a condition is a JSON object")
    for key, cond in where.items():
        if key in ("$and", "$or"):
            for clause in _clauses(cond):
                validate(clause)
        elif key.startswith("$"):
            raise bad_query(f"unknown operator {key}")
        elif isinstance(cond, dict) and any(str(k).startswith("$") for k in cond):
            for op, arg in cond.items():
                _validate_operator(op, arg, cond)


def _validate_operator(op: str, arg: object, cond: dict[str, object]) -> None:
    if op in ("$in", "$nin", "$all"):
        _items(arg, op)
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
_FLAGS = {"i": re.IGNORECASE, "m": re.MULTILINE, "s": re.DOTALL, "x": re.VERBOSE}


def _regex(value: object, pattern: object, options: object) -> bool:
    if not isinstance(pattern, str) or not isinstance(options, str):
        raise bad_query("$regex takes a string pattern and string $options")
    compiled = compile_regex(pattern, options)
    candidates = value if isinstance(value, list) else [value]
    return any(isinstance(v, str) and compiled.search(v) for v in candidates)


@functools.lru_cache(maxsize=256)
def compile_regex(pattern: str, options: str) -> re.Pattern[str]:
    """A ``$regex`` with its ``$options`` as Python compiles it (4310 if it cannot);
    cached, since a query tests one pattern against many conversations."""
    flags = 0
    for letter in options:
        if letter not in _FLAGS:
            raise bad_query(f"unknown regex option {letter!r}")
        flags |= _FLAGS[letter]
    try:
        return re.compile(_unquote(pattern), flags)
    except re.error as exc:
        raise bad_query(f"bad regex: {exc}") from None


# Java-style literal quoting, which the SDKs use for contains/startsWith/endsWith
# (``\Q...\E``, the end optional); Python's re has no such syntax.
_QUOTED = re.compile(r"\\Q(.*?)(?:\\E|$)", re.DOTALL)


def _unquote(pattern: str) -> str:
    return _QUOTED.sub(lambda m: re.escape(m.group(1)), pattern)


def sort_docs(docs: list[Doc], spec: str) -> list[Doc]:
    """Sort by a comma list of keys, ``-key`` descending; missing values sort last."""
    keys = [k.strip() for k in spec.split(",") if k.strip()]
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
