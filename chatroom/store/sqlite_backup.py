"""A consistent copy of a SQLite store while the server writes to it.

SQLite's online backup API copies the file page by page. The source connection holds
one read transaction over the whole copy, so every step reads the same snapshot (in
WAL mode the server's commits go on meanwhile, and the copy never has to restart):
the copy holds exactly the messages committed, and so acknowledged, before it began.
The copy is written beside the destination and renamed into place once it is whole
and passes ``PRAGMA quick_check``; it is a single file (journal mode DELETE).
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import time
from collections.abc import Callable
from pathlib import Path

from .base import StoreError

Progress = Callable[[int, int, int], object]  # (status, pages left, pages in all)


def backup(
    source: str,
    destination: str,
    *,
    pages: int = 1024,
    pause: float = 0.0,
    busy_timeout_ms: int = 5000,
    progress: Progress | None = None,
) -> int:
    """Copy ``source`` to ``destination`` (which must not exist), ``pages`` pages per
    step with ``pause`` seconds between steps; the number of pages. StoreError when the
    source is not a SQLite database or the copy fails its check. Blocking: run it in
    a worker thread from async code."""
    if not Path(source).is_file():
        raise StoreError(f"{source}: no such database file")
    target = Path(destination)
    if target.exists():
        raise StoreError(f"{destination}: exists already (the backup never overwrites)")
    partial = target.with_name(target.name + ".partial")
    partial.unlink(missing_ok=True)
    src = sqlite3.connect(f"file:{source}?mode=ro", uri=True, isolation_level=None)
    try:
        src.execute(f"PRAGMA busy_timeout = {int(busy_timeout_ms)}")
        src.execute("BEGIN")
        src.execute("SELECT count(*) FROM sqlite_master").fetchone()  # the snapshot starts
        with contextlib.closing(sqlite3.connect(partial, isolation_level=None)) as dst:
            src.backup(dst, pages=pages, sleep=pause, progress=_paced(progress, pause))
            src.execute("COMMIT")
            dst.execute("PRAGMA journal_mode = DELETE")
            check = dst.execute("PRAGMA quick_check").fetchone()[0]
            if check != "ok":
                raise StoreError(f"the copy of {source} fails its check: {check}")
            count = int(dst.execute("PRAGMA page_count").fetchone()[0])
    except sqlite3.DatabaseError as exc:
        partial.unlink(missing_ok=True)
        raise StoreError(f"backup of {source} failed: {exc}") from exc
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
    finally:
        src.close()
    os.replace(partial, target)
    return count


def _paced(progress: Progress | None, pause: float) -> Progress | None:
    """``progress``, then ``pause`` seconds before the next step when pages remain:
    sqlite3's own ``sleep`` only waits after a step that found the database busy."""
    if pause <= 0:
        return progress

    def step(status: int, remaining: int, total: int) -> None:
        if progress is not None:
            progress(status, remaining, total)
        if remaining > 0:
            time.sleep(pause)

    return step
