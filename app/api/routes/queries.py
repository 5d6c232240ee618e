"""Nearest-neighbour queries against a model (by id or alias): numpy only, no torch."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Annotated

import orjson
from fastapi import APIRouter, Depends, Query, Request, Response
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import StreamingResponse
from pydantic import BeforeValidator

from app.api.catalogue_params import ColdItemsQuery, DiversifyQuery, FallbackQuery, FilterQuery, SegmentQuery
from app.api.deps import CacheDep, FiltersDep, LimitsDep, SessionsDep, TenantDep
from app.api.hot_path import PEEK_MISSED
from app.api.live import live_recommendations
from app.api.params import ExcludeSeen, ItemId, ModelId, UserId, only_query, parse_k
from app.api.problems import V1_ERRORS, problems
from app.api.schemas import (
    BatchRecommendations,
    BatchRequest,
    FoldInRecommendations,
    FoldInRequest,
    NeighborsRequest,
    Recommendations,
    ScoredItem,
    SegmentOut,
    UserRecommendations,
)
from app.limits import check_batch_cost, check_batch_users, check_k
from app.services import models, query_options, serving

# Every query names a model (or alias) that may not exist: 404 on all of them.
router = APIRouter(prefix="/v1/models/{model_id}", tags=["queries"], responses={**V1_ERRORS, **problems(404)})

NDJSON = "application/x-ndjson"
# The upper bound is UNFOLD_MAX_K (app.limits), checked in each route so that it can be configured.
KQuery = Annotated[
    int, BeforeValidator(parse_k), Query(ge=1, description="How many items to return (1..UNFOLD_MAX_K, default 1000).")
]


async def _loaded(
    request: Request, cache: CacheDep, sessions: SessionsDep, tenant: TenantDep, model_id: ModelId
) -> serving.LoadedModel:
    # The hot path stays on the event loop: a remembered name and a loaded model need no I/O.
    # Only a miss (database lookup, loading an artifact) goes to the threadpool.
    # Unless the hot path already peeked and missed: that miss may have been this request's turn to
    # refresh an expired name, which a second peek would hand to the next request, and so on forever.
    loaded = None if request.scope.get(PEEK_MISSED) else cache.peek(tenant, model_id)
    if loaded is not None:
        return loaded

    return await run_in_threadpool(models.loaded_model, sessions, cache, model_id, tenant=tenant)


ModelDep = Annotated[serving.LoadedModel, Depends(_loaded)]


def _items(scored: serving.Scored) -> list[ScoredItem]:
    return [ScoredItem(item=i, score=s) for i, s in scored]


# `:path`: an external id may hold "/" (sent as %2F, which the server decodes before routing); the
# converter keeps it one parameter. The literal segment after it makes the match unambiguous.
@router.get(
    "/users/{user:path}/recommendations",
    response_model=UserRecommendations,
    summary="Top-k items for a user",
    description="For a user the model never saw (and who has no events), `fallback` decides: popular items "
    "(default; `source` says popular) or a 404 that points to fold-in. With `segment=ATTRIBUTE` the popular items "
    "are those of the training users sharing the user's value of that user attribute (POST "
    "/v1/datasets/{id}/users uploads them); `segment` in the answer names it. A user without a value gets the "
    "global popular items. An unknown or numeric attribute is a 422 naming it.",
    responses=problems(422),
    dependencies=[
        Depends(only_query("k", "exclude_seen", "exclude", "filter", "fallback", "diversify", "cold_items", "segment"))
    ],
)
async def recommend_user(
    request: Request,
    model: ModelDep,
    sessions: SessionsDep,
    tenant: TenantDep,
    model_id: ModelId,
    limits: LimitsDep,
    filters: FiltersDep,
    user: UserId,
    k: KQuery = 10,
    exclude_seen: ExcludeSeen = True,
    exclude: Annotated[list[str], Query(max_length=1000, description="Items not to return (repeatable).")] = [],  # noqa: B006
    filter: FilterQuery = None,
    fallback: FallbackQuery = "popular",
    diversify: DiversifyQuery = None,
    cold_items: ColdItemsQuery = False,
    segment: SegmentQuery = None,
) -> UserRecommendations:
    check_k(k, limits)
    refine = query_options.Refinement()
    refined = filter is not None or diversify is not None or cold_items or segment is not None
    if refined:
        # Compiling a filter may need the database (attribute version, named filters): off the event loop.
        refine = await run_in_threadpool(
            query_options.refine, sessions, filters, model, tenant, filter, diversify, cold_items, segment
        )
    # Through an alias, a user's events since the model was trained change the answer (docs/events.md).
    live = await live_recommendations(
        request, model, model_id, tenant, user, refine.pool(k), exclude_seen, exclude, refine.allowed
    )
    if live is not None:
        return UserRecommendations(model_id=model.id, items=_items(refine.finish(model, live, k)), source="fold_in")
    if refined or user not in model.user_index:
        # A filtered search may scan many items: off the event loop, unlike the plain one below.
        scored, source, counts = await run_in_threadpool(
            query_options.user_recommendations, model, user, k, exclude_seen, exclude, refine, fallback
        )
        named = None
        if counts is not None and refine.segment is not None:
            named = SegmentOut(attribute=refine.segment.attribute, value=counts.value, n_users=counts.n_users)
        return UserRecommendations(model_id=model.id, items=_items(scored), source=source, segment=named)
    # Sub-millisecond numpy work: cheaper on the event loop than a threadpool round trip.
    [scored] = serving.recommend_for_users(model, [user], k, exclude_seen, exclude)
    return UserRecommendations(model_id=model.id, items=_items(scored))


@router.post(
    "/recommendations",
    response_model=FoldInRecommendations,
    responses=problems(400, 413),
    summary="Top-k for a new user (fold-in)",
)
def recommend_fold_in(
    model: ModelDep,
    limits: LimitsDep,
    sessions: SessionsDep,
    tenant: TenantDep,
    filters: FiltersDep,
    body: FoldInRequest,
) -> FoldInRecommendations:
    check_k(body.k, limits)
    refine = query_options.refine(sessions, filters, model, tenant, body.filter, body.diversify, body.cold_items)
    scored, unknown = query_options.fold_in(model, body.items, body.weights, body.k, body.exclude_seen, refine)
    return FoldInRecommendations(model_id=model.id, items=_items(scored), unknown_items=unknown)


@router.post(
    "/recommendations/batch",
    response_model=BatchRecommendations,
    responses={
        **problems(400, 413),
        200: {
            "description": "For each known user, at most k items, best first. With `Accept: application/x-ndjson` "
            "the answer streams as NDJSON instead: a first line `{model_id, unknown_users}`, then one line "
            "`{user, items}` per known user (and `{user, items, source: popular}` per unknown user with fallback "
            "popular); streams are exempt from UNFOLD_MAX_BATCH_RESULTS and "
            "UNFOLD_MAX_BATCH_RESPONSE_MB, since they hold one chunk of users in memory at a time.",
            "content": {
                NDJSON: {
                    "schema": {"type": "string"},
                    "example": '{"model_id":"mdl_01a2","unknown_users":["u999"]}\n'
                    '{"user":"u1","items":[{"item":"i50","score":0.93},{"item":"i172","score":0.88}]}\n',
                }
            },
        },
    },
    summary="Top-k for many users",
)
def recommend_batch(
    request: Request,
    model: ModelDep,
    limits: LimitsDep,
    sessions: SessionsDep,
    tenant: TenantDep,
    filters: FiltersDep,
    body: BatchRequest,
) -> Response:
    check_batch_users(len(body.users), limits)
    check_k(body.k, limits)
    refine = query_options.refine(sessions, filters, model, tenant, body.filter, body.diversify, body.cold_items)
    if NDJSON in request.headers.get("accept", ""):
        return StreamingResponse(_ndjson(model, body, refine), media_type=NDJSON)
    # A JSON answer is built whole in memory: its size is bounded before anything is searched.
    n_known, per_user, response_bytes = query_options.batch_cost(model, body.users, body.k, body.fallback)
    check_batch_cost(n_known, per_user, response_bytes, limits)
    results, unknown, popular_users = query_options.batch(
        model, body.users, body.k, body.exclude_seen, body.exclude, refine, body.fallback
    )
    # Built as plain dicts and encoded by orjson: validating 100,000 ScoredItem objects through
    # the response model would take longer than the search (the shape is BatchRecommendations).
    payload = {
        "model_id": model.id,
        "results": {u: [{"item": i, "score": s} for i, s in scored] for u, scored in results.items()},
        "unknown_users": unknown,
        "popular_users": popular_users,
    }
    return Response(orjson.dumps(payload), media_type="application/json")


def _ndjson(model: serving.LoadedModel, body: BatchRequest, refine: query_options.Refinement) -> Iterator[bytes]:
    """The batch answer as NDJSON lines, searched a chunk of users at a time (run in a thread by Starlette)."""
    _, unknown = serving.batch_known_users(model, body.users)
    yield orjson.dumps({"model_id": model.id, "unknown_users": unknown}) + b"\n"
    lines = query_options.iter_batch(model, body.users, body.k, body.exclude_seen, body.exclude, refine, body.fallback)
    for user, scored, source in lines:
        line = {"user": user, "items": [{"item": i, "score": s} for i, s in scored]}
        yield orjson.dumps(line if source == "model" else {**line, "source": source}) + b"\n"


@router.get(
    "/items/{item:path}/similar",
    response_model=Recommendations,
    summary="Items similar to an item",
    dependencies=[Depends(only_query("k", "filter", "diversify", "cold_items"))],
)
def similar_items(
    model: ModelDep,
    limits: LimitsDep,
    sessions: SessionsDep,
    tenant: TenantDep,
    filters: FiltersDep,
    item: ItemId,
    k: KQuery = 10,
    filter: FilterQuery = None,
    diversify: DiversifyQuery = None,
    cold_items: ColdItemsQuery = False,
) -> Recommendations:
    check_k(k, limits)
    refine = query_options.refine(sessions, filters, model, tenant, filter, diversify, cold_items)
    return Recommendations(model_id=model.id, items=_items(query_options.similar(model, item, k, refine)))


@router.post(
    "/neighbors", response_model=Recommendations, responses=problems(400, 413), summary="Items nearest to a raw vector"
)
def neighbors(
    model: ModelDep,
    limits: LimitsDep,
    sessions: SessionsDep,
    tenant: TenantDep,
    filters: FiltersDep,
    body: NeighborsRequest,
) -> Recommendations:
    check_k(body.k, limits)
    refine = query_options.refine(sessions, filters, model, tenant, body.filter, body.diversify, body.cold_items)
    items = query_options.neighbors(model, body.vector, body.k, refine)
    return Recommendations(model_id=model.id, items=_items(items))
