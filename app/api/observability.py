"""Prometheus metrics: request latency per route, jobs by status, training seconds, model-cache hits."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

from fastapi import FastAPI, Response
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from sqlalchemy import ColumnElement, func, select
from sqlalchemy.orm import Session
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.db import get_sessionmaker
from app.models import Job
from app.services.jobs import JOB_STATUSES


def _job_seconds(session: Session) -> ColumnElement[Any]:
    """finished_at − started_at in seconds, in the database's own date arithmetic."""
    if session.get_bind().dialect.name == "postgresql":
        return func.extract("epoch", Job.finished_at - Job.started_at)
    return (func.julianday(Job.finished_at) - func.julianday(Job.started_at)) * 86400.0


class _StateCollector(Collector):
    """Reads job counts and cache counters at scrape time, so they are never stale."""

    def __init__(self, app: FastAPI) -> None:
        self.app = app

    def collect(self) -> Iterator[Metric]:
        state = self.app.state
        with get_sessionmaker(state.settings.resolved_database_url)() as session:
            counts = dict(session.execute(select(Job.status, func.count()).group_by(Job.status)).all())
            # Summed in SQL so a scrape stays one small query however many jobs have run.
            ended = session.execute(
                select(Job.status, func.count(), func.coalesce(func.sum(_job_seconds(session)), 0.0))
                .where(Job.started_at.is_not(None), Job.finished_at.is_not(None))
                .group_by(Job.status)
            ).all()
        jobs = GaugeMetricFamily("unfold_jobs", "Training jobs by status", labels=["status"])
        for status in JOB_STATUSES:
            jobs.add_metric([status], counts.get(status, 0))
        yield jobs
        seconds = CounterMetricFamily(
            "unfold_training_seconds", "Wall seconds of finished jobs, from start to end, by outcome", labels=["status"]
        )
        runs = CounterMetricFamily(
            "unfold_training_runs", "Finished jobs that had started, by outcome", labels=["status"]
        )
        for status, n, total in ended:
            seconds.add_metric([status], float(total))
            runs.add_metric([status], n)
        yield seconds
        yield runs
        cache = CounterMetricFamily("unfold_model_cache", "Model cache lookups", labels=["result"])
        cache.add_metric(["hit"], state.model_cache.hits)
        cache.add_metric(["miss"], state.model_cache.misses)
        yield cache
        hot = CounterMetricFamily(
            "unfold_hot_path_answers", "GET recommendations answered by the hot path (the rest by the full route)"
        )
        hot.add_metric([], state.hot_path.answered)
        yield hot


class _Timing:
    """Pure ASGI timing (BaseHTTPMiddleware costs a task and a queue per request on the hot path)."""

    def __init__(self, app: ASGIApp, latency: Histogram) -> None:
        self.app = app
        self.latency = latency

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status = 500

        async def recording_send(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, recording_send)
        finally:
            # The route template, not the raw path, so ids do not explode the label set.
            # path_format: without converters ("{user}", not "{user:path}"), as /docs names the route.
            matched = scope.get("route")
            route = getattr(matched, "path_format", None) or getattr(matched, "path", "unmatched")
            self.latency.labels(scope["method"], route, str(status)).observe(time.perf_counter() - start)


def install_metrics(app: FastAPI) -> None:
    """Add a timing middleware and GET /metrics, with a registry per app (tests build many apps)."""
    registry = CollectorRegistry()
    registry.register(_StateCollector(app))
    latency = Histogram(
        "unfold_http_request_seconds",
        "HTTP request latency",
        ["method", "route", "status"],
        registry=registry,
        buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 10),
    )

    app.add_middleware(_Timing, latency=latency)

    @app.get("/metrics", include_in_schema=False)
    def metrics() -> Response:
        return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)
