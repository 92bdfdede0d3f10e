"""The docs a clone has: generated references match their sources, and every link
in the README and docs/ points to a file of the repository."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from chatroom.protocol import docgen

ROOT = Path(__file__).resolve().parents[1]
DOCS = [ROOT / "README.md", ROOT / "bench" / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
LINK = re.compile(r"\]\(([^)#\s]+)(?:#[^)]*)?\)")


@pytest.mark.parametrize(
    ("path", "generate", "what"),
    [
        ("docs/protocol-fields.md", docgen.fields_doc, "fields"),
        ("docs/errors.md", docgen.errors_doc, "errors"),
    ],
)
def test_generated_references_match_their_sources(path: str, generate: object, what: str) -> None:
    assert callable(generate)
    committed = (ROOT / path).read_text()
    assert committed == generate(), (
        f"{path} is stale: run .venv/bin/python -m chatroom.protocol.docgen {what} > {path}"
    )


def test_each_code_is_explained_by_its_own_comment() -> None:
    cells = [row.split(" | ") for row in docgen.errors_doc().splitlines() if row[:3] == "| 4"]
    rows = {name.strip("`"): meaning.removesuffix(" |") for _, name, meaning in cells}
    # comments written above a member are read, and a member's text is its own
    assert "(4113/4116 refusals)" in rows["QUOTA_EXCEEDED"]
    assert "did not read fast enough" not in rows["QUOTA_EXCEEDED"]
    assert "did not read fast enough" in rows["SLOW_CONSUMER"]
    assert "user_messages_per_second" in rows["MESSAGE_SENT_QUOTA_EXCEEDED"]
    assert rows["APP_QUOTA_EXCEEDED"] == "over the connection's ``requests_per_second``"
    assert rows["SESSION_CONFLICT"] == "session conflict"  # no comment: the name in words


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_link_points_into_the_repository(doc: Path) -> None:
    text = doc.read_text()
    assert "../shared" not in text
    for target in LINK.findall(text):
        if re.match(r"[a-z]+:", target):
            continue  # a web address
        assert (doc.parent / target).exists(), f"{doc.name} links to missing {target}"
