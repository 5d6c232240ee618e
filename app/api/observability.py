"""Prometheus metrics: request latency per route, jobs by status, training seconds, alias retrains, model-cache hits.

With several API processes (`unfold api` starts UNFOLD_API_WORKERS of them) a scrape reaches one at
random, so per-process numbers would jump back and forth between scrapes. `unfold api` then sets
PROMETHEUS_MULTIPROC_DIR to a fresh folder before any process imports prometheus_client: each
process writes its counters there and /metrics sums every process's files (prometheus-client's
multiprocess mode). Job and retrain figures come from the database, the same from any process (retrains are
decided by workers, which may run on other hosts).
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator

from fastapi import FastAPI, Request, Response
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.registry import Collector
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.api.auth import check_metrics_key
from app.db import get_sessionmaker
from app.job_status import JobStatus
from app.services.job_metrics import job_figures
from app.services.retraining import OUTCOMES as RETRAIN_OUTCOMES
from app.services.retraining import retrain_counts


class _JobCollector(Collector):
    """Reads job counts and training seconds from the database at scrape time, so they are never stale."""

    def __init__(self, app: FastAPI) -> None:
        self.app = app

    def collect(self) -> Iterator[Metric]:
        figures = job_figures(get_sessionmaker(self.app.state.settings.resolved_database_url))
        jobs = GaugeMetricFamily("unfold_jobs", "Training jobs by status", labels=["status"])
        for status in JobStatus:
            jobs.add_metric([status], figures.counts.get(status, 0))
        yield jobs
        seconds = CounterMetricFamily(
            "unfold_training_seconds", "Wall seconds of finished jobs, from start to end, by outcome", labels=["status"]
        )
        runs = CounterMetricFamily(
            "unfold_training_runs", "Finished jobs that had started, by outcome", labels=["status"]
        )
        for ended in figures.ended:
            seconds.add_metric([ended.status], ended.seconds)
            runs.add_metric([ended.status], ended.runs)
        yield seconds
        yield runs
        retrains = CounterMetricFamily(
            "unfold_alias_retrains",
            "Decided retrains of aliases' policies: moved (the guardrail let the alias move), refused, failed",
            labels=["outcome"],
        )
        counts = retrain_counts(get_sessionmaker(self.app.state.settings.resolved_database_url))
        for outcome in RETRAIN_OUTCOMES:
            retrains.add_metric([outcome], counts.get(outcome, 0))
        yield retrains


class _ProcessCounters:
    """This process's model-cache and hot-path counts as prometheus Counters (summed across processes
    in multiprocess mode). The cache and the hot path keep plain integers; the new part since the last
    publish is added to the Counters before each response starts, so a scrape that follows an answer
    already counts it."""

    def __init__(self, app: FastAPI, registry: CollectorRegistry | None) -> None:
        self.state = app.state
        self.cache = Counter("unfold_model_cache", "Model cache lookups", ["result"], registry=registry)
        self.hot = Counter(
            "unfold_hot_path_answers",
            "GET recommendations answered by the hot path (the rest by the full route)",
            registry=registry,
        )
        self.published = (0, 0, 0)

    def publish(self) -> None:
        cache, hot_path = getattr(self.state, "model_cache", None), getattr(self.state, "hot_path", None)
        now = (cache.hits if cache else 0, cache.misses if cache else 0, hot_path.answered if hot_path else 0)
        if now == self.published:
            return
        hits, misses, answered = (max(0, new - old) for new, old in zip(now, self.published, strict=True))
        self.published = now
        if hits:
            self.cache.labels("hit").inc(hits)
        if misses:
            self.cache.labels("miss").inc(misses)
        if answered:
            self.hot.inc(answered)


class _Timing:
    """Pure ASGI timing (BaseHTTPMiddleware costs a task and a queue per request on the hot path)."""

    def __init__(self, app: ASGIApp, latency: Histogram, counters: _ProcessCounters) -> None:
        self.app = app
        self.latency = latency
        self.counters = counters

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status = 500
        observed = False

        def observe() -> None:
            nonlocal observed
            observed = True
            # The route template, not the raw path, so ids do not explode the label set.
            # path_format: without converters ("{user}", not "{user:path}"), as /docs names the route.
            matched = scope.get("route")
            route = getattr(matched, "path_format", None) or getattr(matched, "path", "unmatched")
            self.latency.labels(scope["method"], route, str(status)).observe(time.perf_counter() - start)

        async def recording_send(message: Message) -> None:
            # Counted before the client can read the answer: a scrape right after it includes it.
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                self.counters.publish()
            elif message["type"] == "http.response.body" and not message.get("more_body", False):
                observe()
            await send(message)

        try:
            await self.app(scope, receive, recording_send)
        finally:
            if not observed:  # no complete answer was sent (an error, a dropped connection)
                observe()


def install_metrics(app: FastAPI) -> None:
    """Add a timing middleware and GET /metrics, with a registry per app (tests build many apps).

    In multiprocess mode (PROMETHEUS_MULTIPROC_DIR set) the process metrics live in that folder's
    files rather than in the registry, which sums all of them at scrape time.
    """
    registry = CollectorRegistry()
    registry.register(_JobCollector(app))
    multiprocess = bool(os.environ.get("PROMETHEUS_MULTIPROC_DIR"))
    if multiprocess:
        MultiProcessCollector(registry)  # type: ignore[no-untyped-call]  # prometheus-client leaves it unannotated
    own = None if multiprocess else registry
    latency = Histogram(
        "unfold_http_request_seconds",
        "HTTP request latency",
        ["method", "route", "status"],
        registry=own,
        buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 10),
    )
    counters = _ProcessCounters(app, own)

    app.add_middleware(_Timing, latency=latency, counters=counters)

    @app.get("/metrics", include_in_schema=False)
    def metrics(request: Request) -> Response:
        check_metrics_key(request.headers.get("authorization"), app.state.settings.metrics_key)
        counters.publish()
        return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)
