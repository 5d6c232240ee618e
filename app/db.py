"""Engine and session factories; SQLite gets the pragmas that let an API and a worker share it."""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.orm import Session, sessionmaker

# Engines kept per process, least recently used first. One evicted is disposed: its pooled connections close
# now, rather than when the garbage collector finds them open (a ResourceWarning in whatever code runs then).
MAX_ENGINES = 8
_engines: OrderedDict[str, tuple[Engine, sessionmaker[Session]]] = OrderedDict()
_engines_lock = threading.Lock()


def _create_engine(url: str) -> Engine:
    if url.startswith("sqlite"):
        engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 30})

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_conn, _record):  # type: ignore[no-untyped-def]
            # WAL lets the API read while the worker writes progress; busy_timeout waits
            # for a lock instead of failing at once.
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA busy_timeout=30000")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.close()

        return engine
    return create_engine(url, pool_pre_ping=True, pool_size=10, max_overflow=20)


def _cached(url: str) -> tuple[Engine, sessionmaker[Session]]:
    with _engines_lock:
        entry = _engines.get(url)
        if entry is not None:
            _engines.move_to_end(url)
            return entry
        engine = _create_engine(url)
        # Sessions keep loaded attributes after commit (services return ORM rows).
        entry = _engines[url] = (engine, sessionmaker(bind=engine, expire_on_commit=False))
        evicted = _engines.popitem(last=False)[1][0] if len(_engines) > MAX_ENGINES else None
    if evicted is not None:
        evicted.dispose()
    return entry


def get_engine(url: str) -> Engine:
    """One engine per URL per process (for the MAX_ENGINES URLs used last)."""
    return _cached(url)[0]


def get_sessionmaker(url: str) -> sessionmaker[Session]:
    """Sessions on get_engine(url) that keep loaded attributes after commit (services return ORM rows)."""
    return _cached(url)[1]


@contextmanager
def session_scope(url: str) -> Iterator[Session]:
    """A session committed on success and rolled back on error."""
    session = get_sessionmaker(url)()
    try:
        yield session
        session.commit()
    except BaseException:
        session.rollback()
        raise
    finally:
        session.close()
