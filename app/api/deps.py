"""Dependencies declared once as Annotated aliases; state lives on app.state, built in create_app."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Annotated

from fastapi import Depends, Request
from fastapi.concurrency import run_in_threadpool
from sqlalchemy.orm import Session, sessionmaker

from app.api.auth import Authenticator
from app.config import Settings
from app.db import get_sessionmaker
from app.limits import Limits
from app.services.filters import FilterCache
from app.services.serving import ModelCache
from app.services.tuning import Dispatch
from app.storage import ArtifactStore


def _settings(request: Request) -> Settings:
    return request.app.state.settings  # type: ignore[no-any-return]


def _session(request: Request) -> Iterator[Session]:
    session = get_sessionmaker(request.app.state.settings.resolved_database_url)()
    try:
        yield session
    finally:
        session.close()


async def _sessions(request: Request) -> sessionmaker[Session]:
    # async: no I/O here, and a sync dependency would cost a threadpool hop on every model query.
    return get_sessionmaker(request.app.state.settings.resolved_database_url)


def _store(request: Request) -> ArtifactStore:
    return request.app.state.store  # type: ignore[no-any-return]


def _cache(request: Request) -> ModelCache:
    return request.app.state.model_cache  # type: ignore[no-any-return]


def _filters(request: Request) -> FilterCache:
    return request.app.state.filter_cache  # type: ignore[no-any-return]


def _limits(request: Request) -> Limits:
    return request.app.state.settings.limits  # type: ignore[no-any-return]


def _enqueue(request: Request) -> Callable[[str], None]:
    return request.app.state.enqueue  # type: ignore[no-any-return]


def _dispatch(request: Request) -> Dispatch:
    return request.app.state.tuning_dispatch  # type: ignore[no-any-return]


async def _tenant(request: Request) -> str:
    """The caller's tenant (401 when a key is required and missing or not valid)."""
    auth: Authenticator = request.app.state.auth
    header = request.headers.get("authorization")
    # Remembered answers stay on the event loop; only a lookup goes to a thread (it may read the DB).
    tenant = auth.peek(header)
    if tenant is None:
        tenant = await run_in_threadpool(auth.authenticate, header)
    return tenant


SettingsDep = Annotated[Settings, Depends(_settings)]
SessionDep = Annotated[Session, Depends(_session)]
# For a service that opens its own short sessions (from a threadpool, say).
SessionsDep = Annotated[sessionmaker[Session], Depends(_sessions)]
StoreDep = Annotated[ArtifactStore, Depends(_store)]
CacheDep = Annotated[ModelCache, Depends(_cache)]
# Compiled query filters and the attribute versions they were compiled from (app.services.filters).
FiltersDep = Annotated[FilterCache, Depends(_filters)]
EnqueueDep = Annotated[Callable[[str], None], Depends(_enqueue)]
# Sends a tuning run's trials and its final retrain to the queue.
DispatchDep = Annotated[Dispatch, Depends(_dispatch)]
# Every /v1 route takes it: the tenant whose datasets, jobs, models and aliases the request sees.
TenantDep = Annotated[str, Depends(_tenant)]
LimitsDep = Annotated[Limits, Depends(_limits)]
