"""chatroom.core.matcher: Mongo-style ``where`` conditions over conversation documents. Pure.

The documents are what the SDK receives for a conversation (protocol.md 3.4) and the
conditions are what it sends (protocol.md 4.7): ``{"objectId": cid}``,
``{"m": {"$all": [...]}}``, ``{"tr": true}``, dates as ``{"__type": "Date", "iso": ..}``.
A malformed condition fails the query with 4310.
"""

from __future__ import annotations

import pytest

from chatroom.core.matcher import Doc, matches, sort_docs, sort_keys, validate
from chatroom.protocol.errors import ChatError, ErrorCode


def date(iso: str) -> dict[str, object]:
    return {"__type": "Date", "iso": iso}


DOC: Doc = {
    "objectId": "c1",
    "c": "alice",
    "m": ["alice", "bob", "carol"],
    "tr": False,
    "name": "Tea Party",
    "level": 3,
    "score": 2.5,
    "lm": date("2026-11-21T20:22:31.522Z"),
    "createdAt": "2026-11-01T00:00:00.000Z",
    "color": {"text": "red", "bg": {"hex": "#fff"}},
    "nothing": None,
}


@pytest.mark.parametrize(
    ("where", "expected"),
    [
        # equality
        ({}, True),
        ({"objectId": "c1"}, True),
        ({"objectId": "c2"}, False),
        ({"tr": False}, True),
        ({"tr": True}, False),
        ({"level": 3}, True),
        ({"level": 3.0}, True),
        ({"m": "bob"}, True),  # an array equals a value it contains
        ({"m": "dave"}, False),
        ({"m": ["alice", "bob", "carol"]}, True),  # or an equal array
        ({"m": ["bob", "alice", "carol"]}, False),
        ({"missing": "x"}, False),
        ({"nothing": None}, True),
        ({"objectId": "c1", "c": "alice"}, True),  # several keys: all must hold
        ({"objectId": "c1", "c": "bob"}, False),
        # $ne
        ({"c": {"$ne": "bob"}}, True),
        ({"c": {"$ne": "alice"}}, False),
        ({"m": {"$ne": "bob"}}, False),
        ({"missing": {"$ne": "x"}}, True),
        # comparisons: numbers, strings, dates
        ({"level": {"$gt": 2}}, True),
        ({"level": {"$gt": 3}}, False),
        ({"level": {"$gte": 3}}, True),
        ({"level": {"$lt": 3}}, False),
        ({"level": {"$lte": 3}}, True),
        ({"score": {"$gt": 2, "$lt": 3}}, True),
        ({"score": {"$gt": 2, "$lt": 2.4}}, False),
        ({"name": {"$gte": "Tea"}}, True),
        ({"name": {"$lt": "Tea"}}, False),
        ({"level": {"$gt": "2"}}, False),  # a number is not compared with a string
        ({"missing": {"$lt": 10}}, False),
        ({"nothing": {"$lt": 10}}, False),
        ({"lm": {"$gt": date("2026-11-21T00:00:00.000Z")}}, True),
        ({"lm": {"$lt": date("2026-11-21T00:00:00.000Z")}}, False),
        ({"lm": {"$gte": "2026-11-21T20:22:31.522Z"}}, True),
        ({"createdAt": {"$lt": date("2026-11-02T00:00:00.000Z")}}, True),
        ({"lm": date("2026-11-21T20:22:31.522Z")}, True),
        ({"lm": "2026-11-21T20:22:31.522Z"}, True),
        # $in, $nin
        ({"objectId": {"$in": ["c0", "c1"]}}, True),
        ({"objectId": {"$in": ["c0", "c2"]}}, False),
        ({"objectId": {"$in": []}}, False),
        ({"m": {"$in": ["dave", "carol"]}}, True),
        ({"missing": {"$in": ["x"]}}, False),
        ({"objectId": {"$nin": ["c0", "c2"]}}, True),
        ({"objectId": {"$nin": ["c1"]}}, False),
        ({"m": {"$nin": ["dave", "carol"]}}, False),
        ({"missing": {"$nin": ["x"]}}, True),
        # $all, $size
        ({"m": {"$all": ["carol", "alice"]}}, True),
        ({"m": {"$all": ["alice", "dave"]}}, False),
        ({"m": {"$all": []}}, True),
        ({"name": {"$all": ["Tea Party"]}}, False),  # not an array
        ({"m": {"$size": 3}}, True),
        ({"m": {"$size": 2}}, False),
        ({"name": {"$size": 9}}, False),
        ({"m": {"$all": ["alice", "bob"]}, "c": "alice"}, True),
        # $exists
        ({"name": {"$exists": True}}, True),
        ({"name": {"$exists": False}}, False),
        ({"missing": {"$exists": False}}, True),
        ({"nothing": {"$exists": True}}, True),  # present, even if null
        # $regex
        ({"name": {"$regex": "^Tea"}}, True),
        ({"name": {"$regex": "^tea"}}, False),
        ({"name": {"$regex": "^tea", "$options": "i"}}, True),
        ({"name": {"$regex": "party$", "$options": "i"}}, True),
        ({"m": {"$regex": "^car"}}, True),
        ({"level": {"$regex": "3"}}, False),
        ({"missing": {"$regex": "."}}, False),
        # dotted keys
        ({"color.text": "red"}, True),
        ({"color.text": "blue"}, False),
        ({"color.bg.hex": {"$exists": True}}, True),
        ({"color.bg.rgb": {"$exists": True}}, False),
        ({"name.first": {"$exists": True}}, False),
        ({"color": {"text": "red", "bg": {"hex": "#fff"}}}, True),
        # $and, $or
        ({"$and": [{"c": "alice"}, {"level": 3}]}, True),
        ({"$and": [{"c": "alice"}, {"level": 4}]}, False),
        ({"$or": [{"c": "bob"}, {"level": 3}]}, True),
        ({"$or": [{"c": "bob"}, {"level": 4}]}, False),
        ({"$or": [{"c": "bob"}, {"$and": [{"tr": False}, {"m": "carol"}]}]}, True),
        ({"$or": [{"c": "alice"}], "tr": True}, False),
    ],
)
def test_conditions(where: dict[str, object], expected: bool) -> None:
    assert matches(DOC, where) is expected


@pytest.mark.parametrize(
    "where",
    [
        "objectId",
        ["objectId", "c1"],
        None,
        {"$nor": [{"c": "alice"}]},
        {"$and": []},
        {"$and": {"c": "alice"}},
        {"$or": []},
        {"$or": "c"},
        {"$and": ["c"]},
        {"c": {"$like": "a%"}},
        {"objectId": {"$in": "c1"}},
        {"objectId": {"$nin": "c1"}},
        {"m": {"$all": "alice"}},
        {"m": {"$size": "3"}},
        {"m": {"$size": True}},
        {"name": {"$exists": 1}},
        {"name": {"$regex": 1}},
        {"name": {"$regex": "("}},
        {"name": {"$regex": "a", "$options": "q"}},
        {"name": {"$regex": "a", "$options": 1}},
    ],
)
def test_malformed_conditions_fail_with_4310(where: object) -> None:
    with pytest.raises(ChatError) as info:
        matches(DOC, where)
    assert info.value.code == ErrorCode.CONVERSATION_QUERY_FAILED
    assert int(info.value.code) == 4310


def test_a_malformed_condition_inside_or_fails() -> None:
    with pytest.raises(ChatError) as info:
        matches(DOC, {"$or": [{"c": {"$bad": 1}}, {"c": "alice"}]})
    assert info.value.code == ErrorCode.CONVERSATION_QUERY_FAILED


# sorting


DOCS: list[Doc] = [
    {"objectId": "a", "lm": date("2026-01-02T00:00:00.000Z"), "n": 2},
    {"objectId": "b", "n": 1},
    {"objectId": "c", "lm": date("2026-01-03T00:00:00.000Z"), "n": 2},
    {"objectId": "d", "lm": None, "n": 3},
    {"objectId": "e", "lm": date("2026-01-01T00:00:00.000Z"), "n": 1},
]


def ids(docs: list[Doc]) -> list[object]:
    return [d["objectId"] for d in docs]


def test_sort_descending_puts_missing_values_last() -> None:
    assert ids(sort_docs(DOCS, sort_keys("-lm"))) == ["c", "a", "e", "b", "d"]


def test_sort_ascending_puts_missing_values_last() -> None:
    assert ids(sort_docs(DOCS, sort_keys("lm"))) == ["e", "a", "c", "b", "d"]


def test_sort_by_several_keys() -> None:
    assert ids(sort_docs(DOCS, sort_keys("n,-lm"))) == ["e", "b", "c", "a", "d"]
    assert ids(sort_docs(DOCS, sort_keys("-n, objectId"))) == ["d", "a", "c", "b", "e"]


def test_sort_is_stable_and_does_not_change_its_input() -> None:
    before = list(DOCS)
    assert ids(sort_docs(DOCS, sort_keys(""))) == ["a", "b", "c", "d", "e"]
    assert ids(sort_docs(DOCS, sort_keys("missing"))) == ["a", "b", "c", "d", "e"]
    assert before == DOCS


# regular expressions: RE2, linear in the text


@pytest.mark.timeout(20)  # backtracking engines take minutes on this; RE2 microseconds
def test_a_catastrophic_pattern_is_answered_in_linear_time() -> None:
    doc: Doc = {"name": "a" * 40 + "!"}
    assert matches(doc, {"name": {"$regex": "(a+)+$"}}) is False
    assert matches(doc, {"name": {"$regex": "(a|aa)*!$"}}) is True


@pytest.mark.parametrize(
    ("pattern", "named"),
    [
        ("(a)\\1", "invalid escape sequence"),  # backreference
        ("(?=Tea)", "invalid perl operator: (?="),  # lookahead
        ("(?<=T)ea", "invalid perl operator: (?<"),  # lookbehind
        ("^((?!Tea).)*x$", "invalid perl operator: (?!"),  # not the plain idiom
    ],
)
def test_patterns_that_need_backtracking_are_refused_naming_why(pattern: str, named: str) -> None:
    with pytest.raises(ChatError) as info:
        validate({"name": {"$regex": pattern}})
    assert info.value.code == ErrorCode.CONVERSATION_QUERY_FAILED
    assert named in info.value.reason
    assert "no backreferences or lookaround" in info.value.reason


@pytest.mark.parametrize(
    ("text", "options", "expected"),
    [
        ("Tea Party", "", False),
        ("Coffee", "", True),
        ("", "", True),
        ("TEA party", "", True),
        ("TEA party", "i", False),
        ("Coffee\n", "", True),  # $ matches before a final line break
        ("Coffee\nmore", "", False),  # . does not cross a line break
        ("Coffee\nmore", "s", True),
        ("Tea\nParty", "s", False),
    ],
)
def test_the_does_not_contain_idiom_matches_as_pythons_re_would(
    text: str, options: str, expected: bool
) -> None:
    for pattern in ("^((?!Tea).)*$", "^(?:(?!Tea).)*$"):
        where = {"name": {"$regex": pattern, "$options": options}}
        assert matches({"name": text}, where) is expected, (pattern, text, options)
    escaped = {"name": {"$regex": "^((?!a\\.b).)*$"}}
    assert matches({"name": "a.b"}, escaped) is False
    assert matches({"name": "axb"}, escaped) is True


def test_sdk_quoting_and_options() -> None:
    assert matches(DOC, {"name": {"$regex": "\\Qa P\\E"}}) is True  # contains("a P")
    assert matches(DOC, {"name": {"$regex": "^\\QTea (\\E"}}) is False
    assert matches({"name": "x(y"}, {"name": {"$regex": "\\Q(\\E"}}) is True
    # contains("a\\Eb"): the SDK ends the quote, adds an escaped backslash and E, reopens it
    assert matches({"name": "a\\Eb"}, {"name": {"$regex": "\\Qa\\E\\\\E\\Qb\\E"}}) is True
    assert matches({"name": "a\nb"}, {"name": {"$regex": "^b", "$options": "m"}}) is True
    assert matches({"name": "a\nb"}, {"name": {"$regex": "a.b", "$options": "s"}}) is True
    with pytest.raises(ChatError, match="unknown regex option 'x'"):
        validate({"name": {"$regex": "a b", "$options": "x"}})


# bounds and key syntax


def refused(where: object) -> str:
    with pytest.raises(ChatError) as info:
        validate(where)
    assert info.value.code == ErrorCode.CONVERSATION_QUERY_FAILED
    return info.value.reason


def test_the_size_of_a_where_is_bounded() -> None:
    many = {"$or": [{"name": str(i)} for i in range(1000)]}
    assert "more than 100 conditions" in refused(many)
    assert "more than 100 conditions" in refused({f"k{i}": i for i in range(101)})
    validate({"$or": [{"name": str(i)} for i in range(40)]})  # within bounds
    deep: dict[str, object] = {"name": "x"}
    for _ in range(9):
        deep = {"$and": [deep]}
    assert "nested more than 8 levels" in refused(deep)
    lists = {"objectId": {"$in": [str(i) for i in range(600)]}, "m": {"$all": ["a"] * 500}}
    assert "more than 1000 values" in refused(lists)
    assert "$regex longer than 1000" in refused({"name": {"$regex": "a" * 1001}})


@pytest.mark.parametrize(
    ("key", "named"),
    [
        ("na\x00me", "control character"),
        ("a\nb", "control character"),
        ("", "empty"),
        ("a..b", "empty part"),
        ("x" * 257, "longer than 256"),
    ],
)
def test_keys_must_be_field_paths(key: str, named: str) -> None:
    assert named in refused({key: 1})
    assert named in refused({"$or": [{"c": "x"}, {key: {"$exists": True}}]})
    with pytest.raises(ChatError) as info:
        sort_keys(f"name,-{key}")
    assert info.value.code == ErrorCode.CONVERSATION_QUERY_FAILED
    assert info.value.reason.startswith("invalid sort:")
    assert named in info.value.reason


def test_sort_keys_are_bounded() -> None:
    assert sort_keys("a,-b, c") == ["a", "-b", "c"]
    assert sort_keys("") == []
    assert sort_keys(" ,a,, ") == ["a"]
    with pytest.raises(ChatError, match="more than 8 keys"):
        sort_keys(",".join(f"k{i}" for i in range(9)))
    # leading empty entries do not carry the rest past the bound as one "key"
    with pytest.raises(ChatError, match="more than 8 keys"):
        sort_keys("," * 8 + ",".join(f"k{i}" for i in range(60)))
