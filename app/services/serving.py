"""Answer nearest-neighbour queries from trained models held in a bounded in-memory cache.

Numpy only: the API process never imports torch.
"""

from __future__ import annotations

import json
import logging
import threading
import time
import zipfile
from collections import OrderedDict
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import numpy as np

from app.errors import DomainError, InvalidInput, NotFound
from app.recsys.artifact import ARRAYS, META, ModelArtifact, load_model
from app.recsys.confidence import confidence
from app.recsys.filtered_search import Allowed, search_allowed
from app.recsys.fold_in import fold_in
from app.recsys.index import INDEX_FILE, INDEX_META, ExactIndex, IndexConfig, ItemIndex, load_index
from app.recsys.search import gather_exclusions
from app.storage import ArtifactStore

log = logging.getLogger(__name__)

Scored = list[tuple[str, float]]
# Factors and queries are float32: inputs are checked against its range before the cast.
FLOAT32_MAX = float(np.finfo(np.float32).max)
# One scored item as JSON without its id: {"item":,"score":} and a separator (17 + 2 bytes) and the
# longest float repr, "-1.2345678901234567e-308" (24 bytes).
RESULT_JSON_BYTES = 43
# A streamed batch searches this many results at a time: what it holds in memory at once.
STREAM_CHUNK_RESULTS = 50_000


class DamagedArtifact(DomainError):
    """A model whose stored files cannot be read (truncated, corrupted, edited): the service's fault, a 500."""

    status = 500
    title = "Damaged model artifact"


def _damaged_part(directory: Path) -> str:
    """Which file of a model directory that failed to load is unreadable (checked only after a failure)."""
    try:
        json.loads((directory / META).read_text())
    except (OSError, ValueError):
        return META
    try:
        with (directory / ARRAYS).open("rb") as fh, np.load(fh, allow_pickle=False) as z:
            for name in z.files:
                z[name]
    except Exception:  # whatever a truncated zip or a damaged array raises
        return ARRAYS
    return f"{INDEX_META} / {INDEX_FILE}"


@dataclass
class LoadedModel:
    """A model artifact, its search index and the lookup structures queries need, built once per load."""

    id: str
    artifact: ModelArtifact
    index: ItemIndex

    @classmethod
    def load(cls, model_id: str, directory: Path) -> LoadedModel:
        """Read a published model; DamagedArtifact naming the model and the file when one is unreadable."""
        try:
            # numpy leaks its file handle when a .npz is not a whole zip (truncated): checked first.
            if not zipfile.is_zipfile(directory / ARRAYS):
                raise ValueError(f"{ARRAYS} is not a complete zip archive")
            artifact = load_model(directory)
            if (directory / INDEX_META).exists():
                index = load_index(directory, artifact.item_factors)
            else:  # a model stored before the worker built indexes: exact search over its factors
                index = ExactIndex(artifact.item_factors, IndexConfig(), {})
        except Exception as exc:
            part = _damaged_part(directory)
            raise DamagedArtifact(
                f"model {model_id!r} cannot be served: its artifact file {part} is damaged "
                f"({type(exc).__name__}: {exc}); train it again or restore the file",
                model_id=model_id,
                damaged=part,
            ) from exc
        return cls(model_id, artifact, index)

    @property
    def nbytes(self) -> int:
        return self.artifact.nbytes + self.index.nbytes()

    @cached_property
    def user_index(self) -> dict[str, int]:
        return {u: i for i, u in enumerate(self.artifact.user_ids.tolist())}

    @cached_property
    def item_index(self) -> dict[str, int]:
        return {v: i for i, v in enumerate(self.artifact.item_ids.tolist())}

    @cached_property
    def longest_item_json(self) -> int:
        """Bytes of the longest item id written as a JSON string (quotes and escapes included)."""
        return max(
            (len(json.dumps(i, ensure_ascii=False).encode()) for i in self.artifact.item_ids.tolist()), default=2
        )

    @cached_property
    def cosine_index(self) -> ItemIndex:
        """Exact cosine search for similar items (the serving index itself when its metric is cosine)."""
        if self.index.config.metric == "cosine":
            return self.index
        return ExactIndex(self.artifact.item_factors, IndexConfig(metric="cosine"), {})

    @cached_property
    def item_counts(self) -> np.ndarray:
        """Users who interacted with each item in the training data: what the popularity fallback ranks by."""
        return np.bincount(self.artifact.seen_indices, minlength=self.artifact.item_ids.shape[0])

    @cached_property
    def popularity_order(self) -> np.ndarray:
        """Item indices by item_counts, highest first (ties: lower index first)."""
        return np.argsort(-self.item_counts, kind="stable")

    @cached_property
    def YtY(self) -> np.ndarray:
        V = self.artifact.item_factors.astype(np.float64)
        return V.T @ V

    def user(self, user: str) -> int:
        try:
            return self.user_index[user]
        except KeyError:
            raise NotFound(
                f"user {user!r} is not in model {self.id!r}; for a user the model has never seen, POST the user's "
                f"items to /v1/models/{self.id}/recommendations (fold-in)"
            ) from None

    def item(self, item: str) -> int:
        try:
            return self.item_index[item]
        except KeyError:
            raise NotFound(f"item {item!r} is not in model {self.id!r}") from None

    def named(self, idx: np.ndarray, scores: np.ndarray) -> Scored:
        ids = self.artifact.item_ids
        return [(str(ids[i]), float(s)) for i, s in zip(idx.tolist(), scores.tolist(), strict=True)]


@dataclass
class _Name:
    """What an id or alias named when last looked up in the database."""

    model_id: str
    artifact_key: str
    verified_until: float  # resolve() looks it up again after this
    served_until: float  # peek() answers from it until this


class ModelCache:
    """Thread-safe LRU of loaded models, bounded by their array and index bytes.

    It also remembers for a moment which model an id or alias names, so the hot query path
    skips the database; an alias moved or a model deleted elsewhere is seen within NAME_TTL +
    REFRESH_GRACE (plus one in-flight lookup), and a name the database no longer knows is dropped
    as soon as one refresh says so. Names are remembered per tenant: the same alias may name
    different models for two tenants, and a tenant never reaches a model through another's name.
    """

    NAME_TTL = 2.0
    # When a remembered name expires, one request goes to look it up again while the others keep
    # being answered from the old entry for up to this long; without it every request arriving
    # during the lookup would queue for the database at once (a latency spike every NAME_TTL).
    REFRESH_GRACE = 1.0

    def __init__(self, store: ArtifactStore, max_bytes: int) -> None:
        self.store = store
        self.max_bytes = max_bytes
        self._models: OrderedDict[str, LoadedModel] = OrderedDict()
        self._names: dict[tuple[str, str], _Name] = {}  # (tenant, id or alias) -> model
        self._loading: dict[str, threading.Lock] = {}
        # model id -> (the error, until when it is answered without reading the files again)
        self._damaged: dict[str, tuple[DamagedArtifact, float]] = {}
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0

    def resolve(self, tenant: str, name: str, lookup: Callable[[], tuple[str, str]]) -> LoadedModel:
        """The model an id or alias of `tenant` names; `lookup` returns (model id, artifact key) from the
        database, scoped to that tenant."""
        now = time.monotonic()
        cached = self._names.get((tenant, name))
        if cached is None or cached.verified_until < now:
            try:
                model_id, key = lookup()
            except NotFound:
                # Deleted (or the alias removed) through another process: stop answering from the old
                # entry now, not after the other callers' grace runs out again and again.
                self._drop(tenant, name, cached)
                raise
            cached = _Name(model_id, key, now + self.NAME_TTL, now + self.NAME_TTL)
            self._names[(tenant, name)] = cached
        return self.get(cached.model_id, cached.artifact_key)

    def _drop(self, tenant: str, name: str, cached: _Name | None) -> None:
        """Forget a name the database no longer knows; when it was the model's own id, the model too."""
        self._names.pop((tenant, name), None)
        if cached is not None and cached.model_id == name:
            self.evict(name)

    def peek(self, tenant: str, name: str) -> LoadedModel | None:
        """The loaded model a fresh remembered name points at, without any I/O; None otherwise.

        Past its TTL, exactly one caller gets None (and goes through resolve) while later callers
        keep the old answer for REFRESH_GRACE.
        """
        cached = self._names.get((tenant, name))
        if cached is None:
            return None
        now = time.monotonic()
        if cached.served_until < now:
            cached.served_until = now + self.REFRESH_GRACE
            return None
        with self._lock:
            return self._cached(cached.model_id)

    def get(self, model_id: str, artifact_key: str) -> LoadedModel:
        with self._lock:
            model = self._cached(model_id)
            if model is not None:
                return model
            damaged = self._damaged.get(model_id)
            if damaged is not None and damaged[1] > time.monotonic():
                raise damaged[0]
            loading = self._loading.setdefault(model_id, threading.Lock())
        # Load outside the cache lock so one slow load does not block queries on other models, but
        # once per model: requests arriving during a load wait for it rather than load a second copy.
        with loading:
            with self._lock:
                model = self._cached(model_id)
                if model is not None:
                    return model
            try:
                loaded = LoadedModel.load(model_id, self.store.local_dir(artifact_key))
            except DamagedArtifact as exc:
                with self._lock:
                    if model_id not in self._damaged:  # logged once, not on every request
                        log.error("%s", exc.detail)
                    # Remembered for a while, so requests do not read broken files again and again.
                    self._damaged[model_id] = (exc, time.monotonic() + self.NAME_TTL)
                raise
            finally:
                with self._lock:
                    self._loading.pop(model_id, None)
            with self._lock:
                self.misses += 1
                self._damaged.pop(model_id, None)
                self._models[model_id] = loaded
                # Least recently used first; the newest model stays even if it alone exceeds the budget.
                while len(self._models) > 1 and self._size() > self.max_bytes:
                    self._models.popitem(last=False)
            return loaded

    def _cached(self, model_id: str) -> LoadedModel | None:
        """A loaded model, marked most recently used (caller holds the lock)."""
        model = self._models.get(model_id)
        if model is not None:
            self._models.move_to_end(model_id)
            self.hits += 1
        return model

    def loaded_ids(self) -> list[str]:
        """Ids of the models in memory, least recently used first."""
        with self._lock:
            return list(self._models)

    def _size(self) -> int:
        return sum(m.nbytes for m in self._models.values())

    def evict(self, model_id: str) -> None:
        with self._lock:
            self._models.pop(model_id, None)
            self._damaged.pop(model_id, None)
            self._names = {n: v for n, v in self._names.items() if v.model_id != model_id}

    def forget_name(self, tenant: str, name: str) -> None:
        """Drop a remembered id/alias → model mapping (after this process moved an alias)."""
        self._names.pop((tenant, name), None)


def _with_extra(indptr: np.ndarray, indices: np.ndarray, extra: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Each row of the exclusion CSR (indptr, indices) followed by the same extra items."""
    n_rows, n_extra = indptr.shape[0] - 1, extra.shape[0]
    counts = np.diff(indptr)
    new_indptr = indptr + n_extra * np.arange(n_rows + 1, dtype=np.int64)
    out = np.empty(new_indptr[-1], dtype=np.int32)
    row_of_seen = np.repeat(np.arange(n_rows), counts)
    out[np.arange(indices.shape[0]) + n_extra * row_of_seen] = indices
    out[(new_indptr[:-1, None] + counts[:, None] + np.arange(n_extra)[None, :]).ravel()] = np.tile(extra, n_rows)
    return new_indptr, out


def recommend_for_users(
    model: LoadedModel,
    users: list[str],
    k: int,
    exclude_seen: bool,
    exclude: list[str] | None = None,
    allowed: Allowed | None = None,
) -> list[Scored]:
    """Top-k items for known users, one search per chunk of users; `exclude` names items no one gets
    (ids the model does not know are ignored: they could not be recommended anyway); `allowed`, a
    compiled filter, the only items anyone gets."""
    rows = np.array([model.user(u) for u in users], dtype=np.int64)
    art = model.artifact
    indptr = indices = None
    if exclude_seen:
        indptr, indices = gather_exclusions(rows, art.seen_indptr, art.seen_indices)
    extra = np.unique(np.array([model.item_index[i] for i in exclude or () if i in model.item_index], np.int32))
    if extra.shape[0]:
        if indptr is None or indices is None:
            indptr, indices = np.zeros(rows.shape[0] + 1, dtype=np.int64), np.zeros(0, dtype=np.int32)
        indptr, indices = _with_extra(indptr, indices, extra)
    results = search_allowed(model.index, art.user_factors[rows], k, allowed, indptr, indices)
    return [model.named(idx, scores) for idx, scores in results]


def recommend_batch(
    model: LoadedModel,
    users: list[str],
    k: int,
    exclude_seen: bool,
    exclude: list[str] | None = None,
    allowed: Allowed | None = None,
) -> tuple[dict[str, Scored], list[str]]:
    """Recommendations for many users; unknown users are reported, not fatal."""
    known, unknown = batch_known_users(model, users)
    answers = recommend_for_users(model, known, k, exclude_seen, exclude, allowed) if known else []
    return dict(zip(known, answers, strict=True)), unknown


def batch_known_users(model: LoadedModel, users: list[str]) -> tuple[list[str], list[str]]:
    """(known, unknown) users of a batch call, each once, in the order given."""
    unique = list(dict.fromkeys(users))
    return [u for u in unique if u in model.user_index], [u for u in unique if u not in model.user_index]


def batch_cost(model: LoadedModel, users: list[str], k: int) -> tuple[int, int, int]:
    """(known users, items each can get, an upper bound of the JSON answer's bytes), before any search."""
    known, unknown = batch_known_users(model, users)
    per_user = min(k, model.artifact.item_ids.shape[0])
    user_bytes = sum(len(json.dumps(u, ensure_ascii=False).encode()) + 4 for u in known + unknown)
    results = len(known) * per_user * (RESULT_JSON_BYTES + model.longest_item_json)
    envelope = 64 + len(model.id)  # {"model_id":…,"results":{},"unknown_users":[]}
    return len(known), per_user, envelope + user_bytes + results


def iter_batch(
    model: LoadedModel,
    users: list[str],
    k: int,
    exclude_seen: bool,
    exclude: list[str] | None = None,
    allowed: Allowed | None = None,
) -> Iterator[tuple[str, Scored]]:
    """(user, top-k) for each known user, searched STREAM_CHUNK_RESULTS results at a time, so a
    streamed answer holds one chunk in memory however many users it has."""
    known, _ = batch_known_users(model, users)
    step = max(1, STREAM_CHUNK_RESULTS // max(1, k))
    for start in range(0, len(known), step):
        part = known[start : start + step]
        yield from zip(part, recommend_for_users(model, part, k, exclude_seen, exclude, allowed), strict=True)


def similar_items(model: LoadedModel, item: str, k: int, allowed: Allowed | None = None) -> Scored:
    """Items closest to an item by cosine similarity, the item itself excluded."""
    i = model.item(item)
    [(idx, scores)] = search_allowed(
        model.cosine_index, model.artifact.item_factors[i], k, allowed, np.array([0, 1]), np.array([i], dtype=np.int32)
    )
    return model.named(idx, scores)


def neighbors(model: LoadedModel, vector: list[float], k: int, allowed: Allowed | None = None) -> Scored:
    """Items with the highest inner product with a raw query vector."""
    if len(vector) != model.artifact.dim:
        raise InvalidInput(
            f"vector has length {len(vector)}, the model's dimension is {model.artifact.dim}", field="vector"
        )
    # Checked in float64: a number beyond float32's range would become inf in the cast.
    q64 = np.asarray(vector, dtype=np.float64)
    if not np.all(np.isfinite(q64)) or np.any(np.abs(q64) > FLOAT32_MAX):
        raise InvalidInput(f"vector must hold finite numbers of magnitude at most {FLOAT32_MAX:g}", field="vector")
    q = q64.astype(np.float32)
    with np.errstate(over="ignore", invalid="ignore"):
        [(idx, scores)] = search_allowed(model.index, q, k, allowed)
    if not np.all(np.isfinite(scores)):
        raise InvalidInput("vector is too large: its scores overflow float32; scale it down", field="vector")
    return model.named(idx, scores)


def recommend_fold_in(
    model: LoadedModel,
    items: list[str],
    weights: list[float] | None,
    k: int,
    exclude_seen: bool,
    allowed: Allowed | None = None,
) -> tuple[Scored, list[str]]:
    """Recommendations for a user the model never saw, from that user's interactions."""
    u, idx, unknown = fold_in_vector(model, items, weights)
    exclude = (np.array([0, len(idx)]), idx.astype(np.int32)) if exclude_seen else (None, None)
    [(top, scores)] = search_allowed(model.index, u, k, allowed, *exclude)
    return model.named(top, scores), unknown


def fold_in_vector(
    model: LoadedModel, items: list[str], weights: list[float] | None
) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """(the user vector folded in from these interactions, the model items they name, the ids it does not know)."""
    if weights is not None and len(weights) != len(items):
        raise InvalidInput(f"weights has {len(weights)} values for {len(items)} items", field="weights")
    w = np.ones(len(items)) if weights is None else np.asarray(weights, dtype=np.float64)
    if np.any(~np.isfinite(w)) or np.any(w < 0) or np.any(w > FLOAT32_MAX):
        raise InvalidInput(f"weights must be finite, non-negative and at most {FLOAT32_MAX:g}", field="weights")
    known = [(model.item_index[it], wt) for it, wt in zip(items, w, strict=True) if it in model.item_index]
    unknown = [it for it in items if it not in model.item_index]
    if not known:
        raise InvalidInput("none of the items is in the model, so there is nothing to fold in", field="items")
    idx = np.array([i for i, _ in known], dtype=np.int64)
    # Repeated items are merged by summing their weights, as at ingestion.
    idx, inverse = np.unique(idx, return_inverse=True)
    r = np.bincount(inverse, weights=np.array([wt for _, wt in known]))
    if np.any(r > FLOAT32_MAX):
        raise InvalidInput(f"the weights of a repeated item add up to more than {FLOAT32_MAX:g}", field="weights")
    params = model.artifact.meta["fold_in"]
    conf = params["confidence"]
    c = confidence(r, conf["scheme"], conf["alpha"], conf["eps"])
    try:
        u = fold_in(
            model.artifact.item_factors,
            model.YtY,
            idx,
            c,
            params["unobserved_weight"],
            params["l2"],
            params.get("l2_scaling", "none"),  # models saved before scaling existed have neither key
            params.get("l2_exponent", 1.0),
        )
    except np.linalg.LinAlgError:
        raise InvalidInput("these items do not determine a user vector (singular system)", field="items") from None
    return u, idx, unknown
