"""The process's engine cache: one engine per URL, and an engine pushed out is disposed, not left to the GC."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import text

from app.db import MAX_ENGINES, get_engine, get_sessionmaker


def test_one_engine_per_url_and_an_evicted_one_is_disposed(tmp_path: Path) -> None:
    urls = [f"sqlite:///{tmp_path / f'db{i}.sqlite'}" for i in range(MAX_ENGINES + 1)]
    first = get_engine(urls[0])
    assert get_engine(urls[0]) is first and get_sessionmaker(urls[0]).kw["bind"] is first
    with first.connect() as connection:
        connection.execute(text("select 1"))
    pool = first.pool
    assert pool.checkedin() == 1  # an open connection waits in the pool
    for url in urls[1:]:
        get_engine(url)
    assert first.pool is not pool  # disposed: its pooled connections were closed
    assert get_engine(urls[0]) is not first
