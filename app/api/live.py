"""The API's side of live user vectors (app.services.live_vectors): a query through an alias looks at the events."""

from __future__ import annotations

from fastapi import Request
from fastapi.concurrency import run_in_threadpool

from app.recsys.filtered_search import Allowed
from app.services.live_vectors import LiveEvents, recommend_live
from app.services.serving import LoadedModel, Scored


async def live_recommendations(
    request: Request,
    model: LoadedModel,
    name: str,
    tenant: str,
    user: str,
    k: int,
    exclude_seen: bool,
    exclude: list[str] | None,
    allowed: Allowed | None = None,
) -> Scored | None:
    """The answer from the user's live vector when `name` is an alias and the user has events since the model's
    version; None to answer from the trained factors (a model named by its id is served as trained)."""
    if name == model.id:
        return None
    live: LiveEvents = request.app.state.live_events
    stream = live.current(model)
    if stream is None:  # first use, or a state past its grace: read the new events first (off the event loop)
        stream = await run_in_threadpool(live.refreshed, model, tenant)
    scored = recommend_live(model, stream, user, k, exclude_seen, exclude, allowed)
    if scored is not None:
        live.live_answers += 1
    return scored
