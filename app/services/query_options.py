"""What a query may add to a plain top-k: a filter, a fallback for unknown users, and diversity.

filter      an expression (app.recsys.filter_expr) compiled by the FilterCache into an Allowed bitmap
fallback    popular | none: an unknown user with fallback popular gets the most interacted-with items
            (within the filter, minus `exclude`), with source "popular"; none keeps the 404
segment     a user attribute: the popular items of an unknown user are counted among the training users
            sharing the user's value (from the uploaded user attributes), global when the user has none
diversify   mmr | mmr:W (0..1, weight of relevance; default 0.7) | ATTRIBUTE:N (at most N items
            per value of a categorical attribute): re-ranks a pool of candidates larger than k
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Literal

import numpy as np
from sqlalchemy.orm import Session, sessionmaker

from app.errors import InvalidInput
from app.recsys.attributes import AlignedColumns
from app.recsys.filter_expr import CATEGORICAL
from app.recsys.filtered_search import Allowed, cap_per_value, mmr, popular
from app.services import serving
from app.services.filters import ColdItems, FilterCache, SegmentCounts, UserSegment
from app.services.serving import LoadedModel, Scored

Fallback = Literal["popular", "none"]
Source = Literal["model", "fold_in", "popular"]
DEFAULT_MMR_WEIGHT = 0.7
# Candidates a diversified answer is picked from: this many times k, at least k + POOL_EXTRA.
POOL_FACTOR = 4
POOL_EXTRA = 30


@dataclass(frozen=True)
class Diversify:
    """A parsed `diversify` option: MMR with a weight, or a cap per value of a categorical attribute."""

    method: Literal["mmr", "cap"]
    weight: float = DEFAULT_MMR_WEIGHT
    attribute: str = ""
    per_value: int = 0


def parse_diversify(text: str) -> Diversify:
    """`mmr`, `mmr:0.5` or `category:2`; InvalidInput (422) naming the field otherwise."""
    name, _, arg = text.strip().partition(":")
    try:
        if name == "mmr":
            weight = float(arg) if arg else DEFAULT_MMR_WEIGHT
            if not 0 <= weight <= 1:
                raise ValueError
            return Diversify("mmr", weight=weight)
        per_value = int(arg)
        if name and per_value >= 1:
            return Diversify("cap", attribute=name, per_value=per_value)
    except ValueError:
        pass
    raise InvalidInput(
        f"diversify: {text!r} is not mmr, mmr:W with W in [0, 1], or ATTRIBUTE:N with N >= 1 (e.g. category:2)",
        field="diversify",
    )


@dataclass(frozen=True)
class Cold:
    """A query's cold items (docs/catalogue.md, "Cold items"): the model's, and which of them its filter keeps."""

    items: ColdItems
    mask: np.ndarray

    def join(self, scored: Scored, query: np.ndarray, k: int, cosine: bool, exclude: list[str] | None) -> Scored:
        """The best k of the model's answer and the cold items, by score (q·v, or cosine)."""
        if self.items.ids.shape[0] == 0:
            return scored
        vectors = self.items.unit_vectors if cosine else self.items.vectors
        q = np.asarray(query, dtype=np.float32).ravel()
        if cosine:
            q = q / max(float(np.linalg.norm(q)), 1e-30)
        scores = (vectors @ q).astype(np.float32)
        keep = self.mask.copy()
        if exclude:
            keep &= ~np.isin(self.items.ids, np.array(exclude, dtype=str))
        scores[~keep] = -np.inf
        top = np.argsort(-scores, kind="stable")[:k]
        top = top[np.isfinite(scores[top])]
        joined = scored + [(str(self.items.ids[j]), float(scores[j])) for j in top]
        return sorted(joined, key=lambda pair: -pair[1])[:k]


@dataclass(frozen=True)
class Refinement:
    """A query's filter, diversity and cold items, compiled for one model."""

    allowed: Allowed | None = None
    diversify: Diversify | None = None
    codes: np.ndarray | None = None  # the capped attribute's codes per model item (diversify ATTRIBUTE:N)
    cold: Cold | None = None
    segment: UserSegment | None = None  # ranks the popularity fallback (GET user recommendations)

    def pool(self, k: int) -> int:
        """How many candidates to search for: k, or a larger pool to diversify from."""
        return k if self.diversify is None else max(POOL_FACTOR * k, k + POOL_EXTRA)

    def join(self, model: LoadedModel, scored: Scored, query: np.ndarray, k: int, exclude: list[str] | None) -> Scored:
        """The pool with the cold items joined in (when asked for), on the model's serving metric."""
        if self.cold is None:
            return scored
        return self.cold.join(scored, query, k, model.index.config.metric == "cosine", exclude)

    def finish(self, model: LoadedModel, scored: Scored, k: int) -> Scored:
        """The answer's k items: the pool re-ranked for diversity, or as searched."""
        if self.diversify is None or not scored:
            return scored[:k]
        names = [i for i, _ in scored]
        scores = np.array([s for _, s in scored], dtype=np.float64)
        local = np.arange(len(names))
        if self.diversify.method == "mmr":
            vectors = np.stack([self._vector(model, i) for i in names])
            top, top_scores = mmr(vectors, local, scores, k, self.diversify.weight)
        else:
            codes = np.array([self._code(model, i) for i in names], dtype=np.int64)
            top, top_scores = cap_per_value(codes, local, scores, k, self.diversify.per_value)
        return [(names[j], float(s)) for j, s in zip(top.tolist(), top_scores.tolist(), strict=True)]

    def _vector(self, model: LoadedModel, item: str) -> np.ndarray:
        row = model.item_index.get(item)
        if row is not None or self.cold is None:
            known: np.ndarray = model.artifact.item_factors[model.item_index[item]]
            return known
        index = self.cold.items.columns.item_index
        assert index is not None
        vector: np.ndarray = self.cold.items.vectors[index[item]]
        return vector

    def _code(self, model: LoadedModel, item: str) -> int:
        assert self.codes is not None and self.diversify is not None
        row = model.item_index.get(item)
        if row is not None or self.cold is None:
            return int(self.codes[model.item_index[item]])
        cold_codes = self.cold.items.columns.columns[self.diversify.attribute].codes
        assert cold_codes is not None and self.cold.items.columns.item_index is not None
        return int(cold_codes[self.cold.items.columns.item_index[item]])


def refine(
    sessions: sessionmaker[Session],
    filters: FilterCache,
    model: LoadedModel,
    tenant: str,
    filter: str | None,
    diversify: str | None,
    cold_items: bool = False,
    segment: str | None = None,
) -> Refinement:
    """Compile a query's filter, diversify, cold-items and segment options against the model (422 for mistakes)."""
    allowed = filters.allowed(sessions, model, filter, tenant) if filter is not None else None
    cold = Cold(*filters.cold(sessions, model, filter, tenant)) if cold_items else None
    users = filters.segment(sessions, model, segment) if segment is not None else None
    if diversify is None:
        return Refinement(allowed, cold=cold, segment=users)
    spec = parse_diversify(diversify)
    if spec.method == "mmr":
        return Refinement(allowed, spec, cold=cold, segment=users)
    columns = filters.catalogue(sessions, model).columns
    return Refinement(allowed, spec, _codes(columns, spec.attribute), cold, users)


def _codes(columns: AlignedColumns, attribute: str) -> np.ndarray:
    column = columns.columns.get(attribute)
    if column is None or column.kind != CATEGORICAL or column.codes is None:
        kinds = [name for name, c in columns.columns.items() if c.kind == CATEGORICAL]
        raise InvalidInput(
            f"diversify: {attribute!r} is not a categorical attribute of this model's items "
            f"(categorical ones: {', '.join(kinds) or 'none'})",
            field="diversify",
        )
    return column.codes


def popular_items(
    model: LoadedModel,
    k: int,
    allowed: Allowed | None,
    exclude: list[str] | None = None,
    segment: SegmentCounts | None = None,
) -> Scored:
    """The most interacted-with items within the filter, minus `exclude`; scores are the counts (among the
    segment's users, when given)."""
    blocked = [model.item_index[i] for i in exclude or () if i in model.item_index]
    if blocked:
        mask = np.ones(model.artifact.item_ids.shape[0], dtype=bool) if allowed is None else allowed.mask.copy()
        mask[blocked] = False
        allowed = Allowed(mask)
    if segment is None:
        top, counts = popular(model.item_counts, model.popularity_order, k, allowed)
    else:
        top, counts = popular(segment.counts, segment.order, k, allowed)
    return model.named(top, counts)


def user_recommendations(
    model: LoadedModel,
    user: str,
    k: int,
    exclude_seen: bool,
    exclude: list[str],
    refinement: Refinement,
    fallback: Fallback,
) -> tuple[Scored, Source, SegmentCounts | None]:
    """One user's answer, who gave it and the segment that ranked it: the model for a known user, popularity
    for an unknown one (fallback popular; among the user's segment when asked for and the user has a value),
    else the 404 that names fold-in."""
    pool = refinement.pool(k)
    if user in model.user_index:
        [scored] = serving.recommend_for_users(model, [user], pool, exclude_seen, exclude, refinement.allowed)
        scored = refinement.join(model, scored, _user_vector(model, user), pool, exclude)
        return refinement.finish(model, scored, k), "model", None
    if fallback == "none":
        model.user(user)  # raises the documented NotFound
    segment = refinement.segment.counts(model, user) if refinement.segment is not None else None
    scored = popular_items(model, pool, refinement.allowed, exclude, segment)
    return refinement.finish(model, scored, k), "popular", segment


def _user_vector(model: LoadedModel, user: str) -> np.ndarray:
    vector: np.ndarray = model.artifact.user_factors[model.user_index[user]]
    return vector


def similar(model: LoadedModel, item: str, k: int, refinement: Refinement) -> Scored:
    """Items like an item (cosine), cold items joined in when asked for."""
    pool = refinement.pool(k)
    scored = serving.similar_items(model, item, pool, refinement.allowed)
    if refinement.cold is not None:
        query = model.artifact.item_factors[model.item(item)]
        scored = refinement.cold.join(scored, query, pool, True, [item])
    return refinement.finish(model, scored, k)


def fold_in(
    model: LoadedModel,
    items: list[str],
    weights: list[float] | None,
    k: int,
    exclude_seen: bool,
    refinement: Refinement,
) -> tuple[Scored, list[str]]:
    """A fold-in answer (and the items the model does not know), cold items joined in when asked for."""
    pool = refinement.pool(k)
    scored, unknown = serving.recommend_fold_in(model, items, weights, pool, exclude_seen, refinement.allowed)
    if refinement.cold is not None:
        vector = serving.fold_in_vector(model, items, weights)[0]
        scored = refinement.join(model, scored, vector, pool, items if exclude_seen else None)
    return refinement.finish(model, scored, k), unknown


def neighbors(model: LoadedModel, vector: list[float], k: int, refinement: Refinement) -> Scored:
    """Items nearest a raw vector, cold items joined in when asked for."""
    pool = refinement.pool(k)
    scored = serving.neighbors(model, vector, pool, refinement.allowed)
    scored = refinement.join(model, scored, np.asarray(vector, dtype=np.float32), pool, None)
    return refinement.finish(model, scored, k)


def batch_cost(model: LoadedModel, users: list[str], k: int, fallback: Fallback) -> tuple[int, int, int]:
    """serving.batch_cost, counting the unknown users a popularity fallback answers as well."""
    n_known, per_user, response_bytes = serving.batch_cost(model, users, k)
    if fallback == "popular":
        n_popular = len(serving.batch_known_users(model, users)[1])
        n_known += n_popular
        response_bytes += n_popular * per_user * (serving.RESULT_JSON_BYTES + model.longest_item_json)
    return n_known, per_user, response_bytes


def batch(
    model: LoadedModel,
    users: list[str],
    k: int,
    exclude_seen: bool,
    exclude: list[str],
    refinement: Refinement,
    fallback: Fallback,
) -> tuple[dict[str, Scored], list[str], list[str]]:
    """(results, unknown users, those of them answered by popularity) of a batch call."""
    pool = refinement.pool(k)
    found, unknown = serving.recommend_batch(model, users, pool, exclude_seen, exclude, refinement.allowed)
    results = {
        user: refinement.finish(model, refinement.join(model, scored, _user_vector(model, user), pool, exclude), k)
        for user, scored in found.items()
    }
    popular_users = unknown if fallback == "popular" else []
    if popular_users:
        top = refinement.finish(model, popular_items(model, pool, refinement.allowed, exclude), k)
        results.update(dict.fromkeys(popular_users, top))
    return results, unknown, popular_users


def iter_batch(
    model: LoadedModel,
    users: list[str],
    k: int,
    exclude_seen: bool,
    exclude: list[str],
    refinement: Refinement,
    fallback: Fallback,
) -> Iterator[tuple[str, Scored, Source]]:
    """(user, answer, source) for each known user, a chunk at a time, then each unknown one under fallback popular."""
    pool = refinement.pool(k)
    for user, scored in serving.iter_batch(model, users, pool, exclude_seen, exclude, refinement.allowed):
        joined = refinement.join(model, scored, _user_vector(model, user), pool, exclude)
        yield user, refinement.finish(model, joined, k), "model"
    unknown = serving.batch_known_users(model, users)[1] if fallback == "popular" else []
    if unknown:
        top = refinement.finish(model, popular_items(model, pool, refinement.allowed, exclude), k)
        for user in unknown:
            yield user, top, "popular"
