"""SQLite cache: the embedded default; one file, WAL mode, shared safely by processes.

Writes run on one dedicated thread and are write-behind: ``set_many`` buffers
and returns at once; a background flush writes the buffer in one transaction
(reads see the buffer too), and ``aclose`` flushes what is left. Reads run
inline through their own connection (see ``get_many`` for why). Entries carry an absolute expiry
(wall-clock seconds) so every process agrees on it; expired entries are never
served and are purged in the background.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sqlite3
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TypeVar

import orjson

from ..errors import CacheUnavailable, ConfigurationError
from .base import DEFAULT_TTL_SECONDS, CachedDecision

__all__ = ["SQLiteCache"]

T = TypeVar("T")
log = logging.getLogger("llm_decide.cache")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS decisions (
    key TEXT PRIMARY KEY,
    value TEXT NOT NULL,
    expires_at REAL NOT NULL
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS decisions_expiry ON decisions (expires_at);
"""
#: SQLite's default limit of host parameters is 999 on old builds.
_CHUNK = 900


class SQLiteCache:
    """Decisions in a SQLite file.

    >>> import asyncio, tempfile, os
    >>> path = os.path.join(tempfile.mkdtemp(), "c.sqlite3")
    >>> async def demo():
    ...     cache = SQLiteCache(path)
    ...     await cache.set_many({"k": {"label": "A", "confidence": 1.0, "reason": ""}})
    ...     found = await cache.get_many(["k"])
    ...     await cache.aclose()
    ...     return list(found)
    >>> asyncio.run(demo())
    ['k']
    """

    def __init__(
        self,
        path: str | Path,
        *,
        default_ttl: float = DEFAULT_TTL_SECONDS,
        flush_delay: float = 0.05,
        purge_interval: float = 600.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.path = Path(path).expanduser()
        self.default_ttl = default_ttl
        self.flush_delay = flush_delay
        self.purge_interval = purge_interval
        self._clock = clock
        self._executor = ThreadPoolExecutor(1, thread_name_prefix="llm-decide-sqlite")
        self._pending: dict[str, tuple[float, CachedDecision]] = {}
        self._flusher: asyncio.Task[None] | None = None
        self._last_purge = 0.0
        self._closed = False
        self._json1 = False
        #: Buffered writes that failed (logged; the decisions are still in the output).
        self.write_errors = 0
        try:
            self._db = self._open()
            self._reader = self._connect()
        except BaseException:
            self._executor.shutdown(wait=False)
            raise

    def _connect(self) -> sqlite3.Connection:
        try:
            db = sqlite3.connect(
                self.path, timeout=30.0, isolation_level=None, check_same_thread=False
            )
            # Lookups are random reads across the whole file: map it and cache more
            # pages, or every key costs a pread() per B-tree level (~20 us).
            db.execute("PRAGMA mmap_size=1073741824")
            db.execute("PRAGMA cache_size=-65536")
            return db
        except (sqlite3.Error, OSError) as exc:
            raise self._unusable(exc) from exc

    def _unusable(self, exc: BaseException) -> ConfigurationError:
        return ConfigurationError(
            f"cannot use the SQLite cache file {self.path}: {exc}. Delete or move the file, "
            "pick another with --cache sqlite:///PATH, or run with --cache none"
        )

    def _open(self) -> sqlite3.Connection:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            db = self._connect()
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=NORMAL")
            db.executescript(_SCHEMA)
            db.execute("SELECT count(*) FROM decisions WHERE expires_at < 0").fetchone()
            try:
                db.execute("SELECT json_group_object('k', json('{}'))").fetchone()
                self._json1 = True
            except sqlite3.OperationalError:  # an SQLite built without JSON functions
                self._json1 = False
            return db
        except (sqlite3.Error, OSError) as exc:
            raise self._unusable(exc) from exc

    async def _run(self, work: Callable[[], T]) -> T:
        loop = asyncio.get_running_loop()
        try:
            return await loop.run_in_executor(self._executor, work)
        except sqlite3.Error as exc:
            raise CacheUnavailable(f"SQLite cache {self.path}: {exc}") from exc

    # -- reads ------------------------------------------------------------------

    async def get_many(self, keys: Sequence[str]) -> dict[str, CachedDecision]:
        now = self._clock()
        found: dict[str, CachedDecision] = {}
        rest: list[str] = []
        for key in keys:
            pending = self._pending.get(key)
            if pending is not None and pending[0] > now:
                found[key] = pending[1]
            else:
                rest.append(key)
        if rest:
            # Read on the loop's own thread, through a connection of its own: a lookup
            # costs about what hashing the article does (~5 us a key), while a hop to
            # the executor thread waited on the GIL for more than half of a warm run.
            try:
                found.update(self._select(rest, now))
            except sqlite3.Error as exc:
                raise CacheUnavailable(f"SQLite cache {self.path}: {exc}") from exc
        return found

    def _select(self, keys: list[str], now: float) -> dict[str, CachedDecision]:
        found: dict[str, CachedDecision] = {}
        for start in range(0, len(keys), _CHUNK):
            chunk = keys[start : start + _CHUNK]
            marks = ",".join("?" * len(chunk))
            where = f"WHERE key IN ({marks}) AND expires_at > ?"
            if self._json1:
                # One row for the whole chunk: sqlite3 releases and re-takes the GIL
                # per row, which under a busy event loop cost more than the lookups.
                (blob,) = self._reader.execute(
                    f"SELECT json_group_object(key, json(value)) FROM decisions {where}",
                    (*chunk, now),
                ).fetchone()
                found.update(orjson.loads(blob))
            else:
                for key, value in self._reader.execute(
                    f"SELECT key, value FROM decisions {where}", (*chunk, now)
                ):
                    found[key] = orjson.loads(value)
        return found

    # -- writes -----------------------------------------------------------------

    async def set_many(self, items: Mapping[str, CachedDecision], ttl: float | None = None) -> None:
        if self._closed:
            return
        expires_at = self._clock() + (self.default_ttl if ttl is None else ttl)
        for key, value in items.items():
            self._pending[key] = (expires_at, value)
        if self._flusher is None or self._flusher.done():
            self._flusher = asyncio.create_task(self._flush_soon())

    async def _flush_soon(self) -> None:
        await asyncio.sleep(self.flush_delay)  # let a burst of writes share one transaction
        # A failed background write is logged and counted in flush(); nobody awaits this task.
        with contextlib.suppress(CacheUnavailable):
            await self.flush()

    async def flush(self) -> None:
        """Write buffered entries now (in one transaction); purge expired ones now and then."""
        if not self._pending:
            return
        batch, self._pending = self._pending, {}
        rows = [(k, orjson.dumps(v).decode(), exp) for k, (exp, v) in batch.items()]
        purge = self._clock() - self._last_purge >= self.purge_interval
        try:
            await self._run(lambda: self._write(rows, purge))
        except CacheUnavailable as exc:
            self.write_errors += 1
            log.warning("%s; %d decisions were not cached", exc, len(rows))
            raise
        if purge:
            self._last_purge = self._clock()

    def _write(self, rows: list[tuple[str, str, float]], purge: bool) -> None:
        with self._db:
            self._db.execute("BEGIN IMMEDIATE")
            self._db.executemany(
                "INSERT OR REPLACE INTO decisions (key, value, expires_at) VALUES (?, ?, ?)", rows
            )
            if purge:
                self._db.execute("DELETE FROM decisions WHERE expires_at <= ?", (self._clock(),))

    async def purge_expired(self) -> int:
        """Delete expired entries now; returns how many."""
        now = self._clock()

        def purge() -> int:
            with self._db:
                deleted = self._db.execute("DELETE FROM decisions WHERE expires_at <= ?", (now,))
                return deleted.rowcount

        return await self._run(purge)

    async def aclose(self) -> None:
        if self._closed:
            return
        try:
            if self._flusher is not None and not self._flusher.done():
                self._flusher.cancel()
            await self.flush()
        finally:
            self._closed = True
            self._reader.close()
            await asyncio.get_running_loop().run_in_executor(self._executor, self._db.close)
            self._executor.shutdown(wait=True)
