"""Sensitive-word filtering (features.md F45): hits become ``***``.

The operator names a word file in the config (``sensitive_words_file``), one word per
line. The file is polled, not watched: ``apply`` looks at its modification time and
size at most every ``check_interval`` seconds and re-reads it when either changed, so an
edit takes effect within a few seconds without a signal or a restart. A file that
cannot be read keeps the previous list (and is logged), so a half-written file never
switches filtering off. Pure but for that one ``stat``/read; no trio.
"""

from __future__ import annotations

import logging
import os
import re
import time
from collections.abc import Callable

import orjson

log = logging.getLogger(__name__)

MASK = "***"


def compile_words(words: list[str]) -> re.Pattern[str] | None:
    """One case-insensitive alternation, longest words first (so that a longer word
    wins over its prefix); None for an empty list."""
    unique = sorted({w for w in words if w}, key=lambda w: (-len(w), w))
    if not unique:
        return None
    return re.compile("|".join(re.escape(w) for w in unique), re.IGNORECASE)


def parse_word_file(text: str) -> list[str]:
    """Words of a word file: one per line, stripped; blank lines and ``#`` comments skipped."""
    words = []
    for line in text.splitlines():
        word = line.strip()
        if word and not word.startswith("#"):
            words.append(word)
    return words


def filter_content(pattern: re.Pattern[str] | None, content: str) -> str:
    """``content`` with every hit masked. Typed JSON messages are filtered in their
    ``_lctext`` only (masking inside keys or other fields could break the JSON or the
    SDK's message class); any other text is filtered as a whole. Unchanged content is
    returned as the very same string."""
    if pattern is None or not content:
        return content
    if content.startswith("{"):
        try:
            value = orjson.loads(content)
        except orjson.JSONDecodeError:
            value = None
        if isinstance(value, dict):
            text = value.get("_lctext")
            if not isinstance(text, str):
                return content
            masked = pattern.sub(MASK, text)
            if masked == text:
                return content
            value["_lctext"] = masked
            return orjson.dumps(value).decode()
    return pattern.sub(MASK, content)


class WordFilter:
    """The operator's word list, re-read when its file changes."""

    def __init__(
        self,
        path: str,
        check_interval: float = 5.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.path = path
        self.check_interval = check_interval
        self._clock = clock
        self._pattern: re.Pattern[str] | None = None
        self._signature: tuple[int, int] | None = None
        self._next_check = float("-inf")
        self.reloads = 0

    @property
    def enabled(self) -> bool:
        return bool(self.path)

    def apply(self, content: str) -> str:
        """``content`` filtered with the current list (see ``filter_content``)."""
        if not self.path:
            return content
        now = self._clock()
        if now >= self._next_check:
            self._next_check = now + self.check_interval
            self._reload_if_changed()
        return filter_content(self._pattern, content)

    def _reload_if_changed(self) -> None:
        try:
            st = os.stat(self.path)
            signature = (st.st_mtime_ns, st.st_size)
            if signature == self._signature:
                return
            with open(self.path, encoding="utf-8", errors="replace") as fh:
                words = parse_word_file(fh.read())
        except OSError as exc:
            if self._signature is not None or self.reloads == 0:
                log.warning("sensitive words: cannot read %s: %s", self.path, exc)
            self._signature = None
            return
        self._signature = signature
        self._pattern = compile_words(words)
        self.reloads += 1
        log.info("sensitive words: %d loaded from %s", len(words), self.path)
