"""Live user vectors: a model served through an alias answers a user with that user's events since it was trained.

The events are the database's (every API process reads them there); each process keeps, per model it serves
through an alias, the events since the model's dataset version, read again when they are REFRESH_SECONDS old.
A user without such events is answered from the trained factors as before: the hot path only checks that the
state is fresh and that the user is not in it (a dict lookup). A user with events gets the fold-in vector of
all their interactions, the training ones (the artifact's seen items and weights) and the events, summed per
item — the WALS row solve with the item factors fixed (app.recsys.fold_in) — and none of those items back.
A user the model never saw gets the same from their events alone.

Freshness: an answer reflects every event committed at least REFRESH_SECONDS + GRACE_SECONDS before it. When
the state expires, the first request to notice starts a read in the background and every request is answered
from the old state for at most GRACE_SECONDS; a state older than that is read before the answer (a process
that had no traffic). Under steady traffic no request waits for the database.
"""

from __future__ import annotations

import logging
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from app.errors import InvalidInput, NotFound
from app.models import Dataset, Event, Model
from app.recsys.confidence import confidence
from app.recsys.filtered_search import Allowed, search_allowed
from app.recsys.fold_in import fold_in
from app.services.dataset_versions import get_version
from app.services.serving import LoadedModel, Scored

log = logging.getLogger(__name__)

# Read at most this many events per refresh: a backlog is caught up over a few requests, none of them slow.
READ_CHUNK = 50_000


@dataclass
class _UserEvents:
    """One user's events since the model's version: item index -> summed weight, and how many there were."""

    weights: dict[int, float] = field(default_factory=dict)
    count: int = 0
    vector: np.ndarray | None = None  # the fold-in vector for `count` events, computed on first use
    vector_count: int = -1


@dataclass
class Stream:
    """The events since a model's dataset version, as this process last read them."""

    model_id: str
    dataset_id: str
    cursor: int  # the seq of the last event read
    users: dict[str, _UserEvents] = field(default_factory=dict)
    fresh_until: float = 0.0
    refreshing: bool = False  # a read in the background is under way
    lock: threading.Lock = field(default_factory=threading.Lock)

    def events_of(self, user: str) -> _UserEvents | None:
        return self.users.get(user)


class LiveEvents:
    """Per API process: the event streams of the models served through aliases, refreshed from the database.

    A stream is fresh for REFRESH_SECONDS after a read began. For GRACE_SECONDS after that it still answers,
    while one read runs in the background (started by the first request to find it due), so under steady
    traffic no request waits for the database. Past the grace, a request reads it first (`refreshed`).
    """

    REFRESH_SECONDS = 0.4
    GRACE_SECONDS = 0.3

    def __init__(self, sessions: sessionmaker[Session]) -> None:
        self._sessions = sessions
        self.clock = time.monotonic  # replaceable in tests
        self._streams: dict[str, Stream] = {}
        self._lock = threading.Lock()
        # One thread for the background reads: they are short, and one at a time keeps them off the serving cores.
        self._reader = ThreadPoolExecutor(max_workers=1, thread_name_prefix="live-events")
        self.refreshes = 0
        self.live_answers = 0

    def current(self, model: LoadedModel) -> Stream | None:
        """The model's stream when it may answer now, without I/O; None when it must be read first (`refreshed`).

        Within the grace after its freshness it answers as it stands, and the first caller to see it due starts
        the read in the background.
        """
        stream = self._streams.get(model.id)
        if stream is None:
            return None
        now = self.clock()
        if stream.fresh_until >= now:
            return stream
        if stream.fresh_until + self.GRACE_SECONDS < now:
            return None
        if not stream.refreshing:
            stream.refreshing = True
            self._reader.submit(self._refresh_in_background, stream, model)
        return stream

    def refreshed(self, model: LoadedModel, tenant: str) -> Stream:
        """The model's stream with the events committed since it was last read (registered on first use)."""
        stream = self._streams.get(model.id)
        if stream is None:
            with self._sessions() as session:
                stream = Stream(model.id, *_start(session, model.id, tenant))
            with self._lock:
                stream = self._streams.setdefault(model.id, stream)
        self._read(stream, model)
        return stream

    def _refresh_in_background(self, stream: Stream, model: LoadedModel) -> None:
        try:
            self._read(stream, model)
        except Exception:  # the stream stays due: past the grace a request reads it and meets the error itself
            log.exception("reading the events of model %s failed", stream.model_id)
        finally:
            stream.refreshing = False

    def _read(self, stream: Stream, model: LoadedModel) -> None:
        """Fold the events committed since the stream's cursor into it, unless another reader just did."""
        with stream.lock:
            started = self.clock()
            if stream.fresh_until >= started:  # another request refreshed it while this one waited
                return
            with self._sessions() as session:
                rows = session.execute(
                    select(Event.seq, Event.user, Event.item, Event.weight)
                    .where(Event.dataset_id == stream.dataset_id, Event.seq > stream.cursor)
                    .order_by(Event.seq)
                    .limit(READ_CHUNK)
                ).all()
            index = model.item_index
            # Each user's events are rebuilt aside and swapped in whole: requests read the stream on other threads
            # while this runs, and must never see a user's weights half-updated.
            updated: dict[str, _UserEvents] = {}
            for _seq, user, item, weight in rows:
                events = updated.get(user)
                if events is None:
                    held = stream.users.get(user)
                    events = updated[user] = (
                        _UserEvents(dict(held.weights), held.count) if held is not None else _UserEvents()
                    )
                code = index.get(item)
                if code is not None:  # an item the model does not know cannot be scored nor folded in
                    events.weights[code] = events.weights.get(code, 0.0) + float(weight)
                events.count += 1
            stream.users.update(updated)
            if rows:
                stream.cursor = rows[-1][0]
            stream.fresh_until = started + self.REFRESH_SECONDS
            self.refreshes += 1

    def forget(self, model_id: str) -> None:
        """Drop a model's stream (the model was deleted)."""
        with self._lock:
            self._streams.pop(model_id, None)

    def watched(self) -> list[str]:
        """Ids of the models whose events this process follows."""
        return list(self._streams)


def _start(session: Session, model_id: str, tenant: str) -> tuple[str, int]:
    """(dataset id, seq of the last event the model was trained with) of a model of `tenant`."""
    row = session.get(Model, model_id)
    if row is None or row.tenant != tenant:
        raise NotFound(f"no model {model_id!r}")
    dataset = session.get(Dataset, row.dataset_id)
    if dataset is None:  # the dataset was deleted: its events went with it
        return row.dataset_id, 0
    version = row.spec.get("dataset_version")
    return dataset.id, get_version(session, dataset, version if isinstance(version, int) else 1).events_through


def live_vector(model: LoadedModel, user: str, events: _UserEvents) -> tuple[np.ndarray, np.ndarray] | None:
    """(the user's fold-in vector, every item index they touched), training interactions and events together;
    None when none of their items is in the model. Computed once per new event count."""
    art = model.artifact
    row = model.user_index.get(user)
    if row is not None:
        seen = art.seen(row).astype(np.int64)
        start = art.seen_indptr[row]
        # Models saved before weights were kept: each training interaction weighs 1.
        seen_w = (
            art.seen_weights[start : start + seen.shape[0]].astype(np.float64)
            if art.seen_weights is not None
            else np.ones(seen.shape[0])
        )
    else:
        seen, seen_w = np.zeros(0, np.int64), np.zeros(0)
    items = np.concatenate([seen, np.fromiter(events.weights.keys(), np.int64, len(events.weights))])
    weights = np.concatenate([seen_w, np.fromiter(events.weights.values(), np.float64, len(events.weights))])
    if items.shape[0] == 0:
        return None
    # Repeated items (seen in training and again as events) merge by summing their weights, as at ingestion.
    items, inverse = np.unique(items, return_inverse=True)
    r = np.bincount(inverse, weights=weights)
    if events.vector is None or events.vector_count != events.count:
        params = art.meta["fold_in"]
        conf = params["confidence"]
        c = confidence(r, conf["scheme"], conf["alpha"], conf["eps"])
        try:
            events.vector = fold_in(
                art.item_factors,
                model.YtY,
                items,
                c,
                params["unobserved_weight"],
                params["l2"],
                params.get("l2_scaling", "none"),
                params.get("l2_exponent", 1.0),
            )
        except np.linalg.LinAlgError:
            raise InvalidInput(f"the interactions of user {user!r} do not determine a vector") from None
        events.vector_count = events.count
    return events.vector, items.astype(np.int32)


def recommend_live(
    model: LoadedModel,
    stream: Stream,
    user: str,
    k: int,
    exclude_seen: bool,
    exclude: list[str] | None = None,
    allowed: Allowed | None = None,
) -> Scored | None:
    """Top-k for a user with events in `stream`, from the live vector; None for a user without any there.
    `allowed`: a compiled query filter (app.services.filters), the only items returned."""
    events = stream.events_of(user)
    if events is None:
        return None
    computed = live_vector(model, user, events)
    if computed is None:
        # Only events on items the model does not know: nothing to fold in, the user is answered as without events.
        return None
    vector, touched = computed
    parts = [touched] if exclude_seen else []
    extra = [model.item_index[i] for i in exclude or () if i in model.item_index]
    if extra:
        parts.append(np.array(extra, np.int32))
    excluded = np.unique(np.concatenate(parts)).astype(np.int32) if parts else None
    indptr = np.array([0, excluded.shape[0]], np.int64) if excluded is not None else None
    [(top, scores)] = search_allowed(model.index, vector, k, allowed, indptr, excluded)
    return model.named(top, scores)
