"""create_app(): wires settings, store, model cache, queue and routers together."""

from __future__ import annotations

import logging
from collections.abc import Callable

from fastapi import FastAPI
from fastapi_offline import FastAPIOffline

from app.api.auth import AuthBeforeBody, Authenticator
from app.api.body_size import BodySizeLimit
from app.api.docs import DESCRIPTION, install_examples
from app.api.errors import install_error_handlers
from app.api.event_schemas import install_event_schemas
from app.api.hot_path import HotPathStats, HotRecommendations
from app.api.observability import install_metrics
from app.api.problems import install_openapi
from app.api.routes import catalogue, datasets, events, filters, health, jobs, models, queries, retraining, tuning
from app.api.storable import StorableText
from app.config import Settings, get_settings
from app.db import get_sessionmaker
from app.services.filters import FilterCache
from app.services.job_events import StreamSlots
from app.services.live_vectors import LiveEvents
from app.services.serving import ModelCache
from app.storage import open_store
from app.web.dashboard import install_dashboard

log = logging.getLogger(__name__)


def _enqueuer(settings: Settings) -> tuple[object, Callable[[str], None]]:
    """Send training tasks by name, so the API never imports the worker's torch code."""
    from workers.celery_app import TRAIN_TASK, create_celery

    celery = create_celery(settings)
    if settings.task_always_eager:

        def run_inline(job_id: str) -> None:
            from workers.tasks import train_job

            train_job(settings, job_id)

        return celery, run_inline

    def send(job_id: str) -> None:
        try:
            celery.send_task(TRAIN_TASK, args=[job_id], queue=settings.queue)
        except Exception:  # the job row stays queued; it is the source of truth
            log.exception("could not send job %s to the broker", job_id)

    return celery, send


def create_app(settings: Settings | None = None) -> FastAPI:
    """The Unfold HTTP API."""
    settings = settings or get_settings()
    # FastAPIOffline: /docs and /redoc load Swagger UI and ReDoc from the package, so they work offline.
    app = FastAPIOffline(title="Unfold", version="0.1.0", description=DESCRIPTION)
    app.state.settings = settings
    app.state.store = open_store(settings.resolved_artifact_root, settings)
    app.state.model_cache = ModelCache(app.state.store, int(settings.model_cache_mb * 2**20))
    # Compiled filters and aligned attributes: a tenth of the model cache's budget.
    app.state.filter_cache = FilterCache(app.state.store, int(settings.model_cache_mb * 2**20) // 10)
    app.state.auth = Authenticator(
        get_sessionmaker(settings.resolved_database_url), settings, ttl=settings.auth_cache_seconds
    )
    app.state.celery, app.state.enqueue = _enqueuer(settings)
    app.state.stream_slots = StreamSlots(settings.max_streams_per_tenant)
    from workers.dispatch import tuning_dispatch  # imported here, like _enqueuer's: cheap, no torch

    app.state.tuning_dispatch = tuning_dispatch(settings, app.state.celery)
    install_error_handlers(app)
    # Added first, so it sits inside the timing and body-limit middlewares added after it.
    app.state.hot_path = HotPathStats()
    # Users' events since their model was trained (app.services.live_vectors).
    app.state.live_events = LiveEvents(get_sessionmaker(settings.resolved_database_url))
    app.add_middleware(
        HotRecommendations,
        cache=app.state.model_cache,
        stats=app.state.hot_path,
        max_k=settings.max_k,
        auth=app.state.auth,
        live=app.state.live_events,
    )
    # Outside the hot path: a NUL in a model id must not reach the database through a cache miss.
    app.add_middleware(StorableText)
    install_metrics(app)
    app.add_middleware(BodySizeLimit, limits=settings.limits)
    # Outermost: a request without a valid key is refused before its body is read or measured.
    app.add_middleware(AuthBeforeBody, auth=app.state.auth)
    for module in (health, datasets, catalogue, events, jobs, models, retraining, queries, tuning, filters):
        app.include_router(module.router)
    install_openapi(app)  # error bodies documented as application/problem+json
    install_event_schemas(app)  # the events body, read by its route as JSON or NDJSON
    install_examples(app)  # examples with their nulls, which FastAPI's encoding drops
    install_dashboard(app)  # the page at / (no key needed: it holds no data) and its static files
    return app
