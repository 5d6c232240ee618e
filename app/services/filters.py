"""Filters at query time: named filters (stored per tenant) and the compile cache that turns an expression
into a bitmap over a model's catalogue.

A query's `filter` is parsed once (the text is the cache key), its @names replaced by the stored
expressions, checked against the attribute schema of the model's dataset, and evaluated over the
model's items into an Allowed bitmap, kept until the attributes or a named filter it uses change. The
current attribute version and stored filters are looked up again after NAME_TTL seconds, as the model
cache does with aliases, so an upload or a PUT in another process is seen within that time; this
process forgets its own at once.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from dataclasses import dataclass
from functools import cached_property, lru_cache
from typing import Any

import numpy as np
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from app.errors import InvalidInput, NotFound
from app.models import Catalogue, Model, NamedFilter, utcnow
from app.recsys import filter_expr
from app.recsys.attributes import AlignedColumns, AttributeTable
from app.recsys.cold_items import attribute_vectors
from app.recsys.filter_expr import NUMERIC, TAGS, Expr, FilterError
from app.recsys.filtered_search import Allowed, segment_popularity
from app.services.catalogue import Kind, load_version
from app.services.serving import LoadedModel
from app.storage import ArtifactStore

# How deep named filters may refer to one another (@a uses @b uses @c ...).
MAX_NESTING = 8
KINDS: tuple[Kind, ...] = ("items", "users")


def filter_problem(exc: FilterError, field: str = "filter") -> InvalidInput:
    """The 422 for a filter that does not parse or fit the schema: names the position (0-based) and column."""
    detail = f"{field}: {exc.reason} at column {exc.position + 1}"
    errors = [{"field": field, "message": f"{exc.reason} at column {exc.position + 1}", "type": "filter"}]
    return InvalidInput(detail, field=field, position=exc.position, errors=errors)


@lru_cache(maxsize=4096)
def parse(text: str) -> Expr:
    """filter_expr.parse, remembered per text (a FilterError is raised again each time, not cached)."""
    return filter_expr.parse(text)


# --- Named filters ------------------------------------------------------------------------------------------------


def put_filter(session: Session, name: str, expression: str, description: str | None, *, tenant: str) -> NamedFilter:
    """Create or replace a named filter; its syntax and the filters it names are checked now, its
    attributes when a query uses it (they depend on the model's dataset)."""
    try:
        tree = parse(expression)
    except FilterError as exc:
        raise filter_problem(exc, "expression") from None
    _check_refs(session, tree, tenant, seen=(name,), field="expression")
    row = session.get(NamedFilter, (tenant, name))
    if row is None:
        row = NamedFilter(tenant=tenant, name=name, expression=expression, description=description)
        session.add(row)
    else:
        row.expression, row.description, row.updated_at = expression, description, utcnow()
    session.commit()
    session.refresh(row)
    return row


def _check_refs(session: Session, tree: Expr, tenant: str, seen: tuple[str, ...], field: str) -> None:
    for ref in filter_expr.refs(tree):
        if ref.name in seen:
            cycle = " -> ".join(f"@{n}" for n in (*seen, ref.name))
            raise filter_problem(FilterError(f"named filters refer to each other in a cycle: {cycle}", ref.pos), field)
        if len(seen) > MAX_NESTING:
            raise filter_problem(FilterError(f"named filters nest more than {MAX_NESTING} deep", ref.pos), field)
        row = session.get(NamedFilter, (tenant, ref.name))
        if row is None:
            raise filter_problem(FilterError(f"no named filter @{ref.name}", ref.pos), field)
        try:
            inner = parse(row.expression)
        except FilterError:  # stored before a grammar change: the stored text is at fault, not this one
            raise filter_problem(FilterError(f"named filter @{ref.name} no longer parses", ref.pos), field) from None
        _check_refs(session, inner, tenant, (*seen, ref.name), field)


def get_filter(session: Session, name: str, *, tenant: str) -> NamedFilter:
    row = session.get(NamedFilter, (tenant, name))
    if row is None:
        raise NotFound(f"no named filter {name!r}")
    return row


def list_filters(session: Session, *, tenant: str) -> list[NamedFilter]:
    """Every named filter of the tenant, by name."""
    return list(session.scalars(select(NamedFilter).where(NamedFilter.tenant == tenant).order_by(NamedFilter.name)))


def delete_filter(session: Session, name: str, *, tenant: str) -> None:
    session.delete(get_filter(session, name, tenant=tenant))
    session.commit()


# --- Compiling filters for a model -------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Version:
    """Which attributes a dataset had when last looked up: `token` names them in the caches (its version and
    when it was written, since a version number starts again at 1 after the attributes are deleted)."""

    token: str  # "" when none are uploaded
    artifact_key: str | None
    verified_until: float


@dataclass(eq=False)
class ColdItems:
    """Items with attributes but without interactions in a model, placed by their attributes
    (app.recsys.cold_items); those that share no categorical value or tag with a model item are left out."""

    ids: np.ndarray
    vectors: np.ndarray  # float32, one row per id
    columns: AlignedColumns  # their attributes, for filters and diversify

    @cached_property
    def unit_vectors(self) -> np.ndarray:
        """The vectors scaled to unit length (for cosine scores)."""
        norms = np.linalg.norm(self.vectors, axis=1, keepdims=True)
        out: np.ndarray = (self.vectors / np.where(norms > 0, norms, 1)).astype(np.float32)
        return out

    @property
    def nbytes(self) -> int:
        return int(self.ids.nbytes + 2 * self.vectors.nbytes) + self.columns.nbytes


@dataclass(eq=False)
class ModelCatalogue:
    """A model's items with the attributes of one version: the schema, the aligned columns, compiled filters."""

    token: str
    schema: dict[str, str]
    columns: AlignedColumns
    table: AttributeTable
    _cold: ColdItems | None = None

    @property
    def nbytes(self) -> int:
        return self.columns.nbytes + (self._cold.nbytes if self._cold is not None else 0)

    def cold(self, model: LoadedModel) -> ColdItems:
        """The attribute table's rows that are not items of the model, placed by their attributes (built once)."""
        if self._cold is None:
            ids = self.table.ids[~np.isin(self.table.ids, model.artifact.item_ids)]
            columns = self.table.aligned(ids)
            vectors, placed = attribute_vectors(model.artifact.item_factors, self.columns, columns)
            ids = ids[placed]
            columns = self.table.aligned(ids, {str(v): j for j, v in enumerate(ids.tolist())})
            self._cold = ColdItems(ids, vectors[placed], columns)
        return self._cold


@dataclass(eq=False)
class SegmentCounts:
    """Item counts among a model's training users who share one value of a user attribute (`popular`'s
    counts and order: ties, and items nobody in the segment touched, in global popularity order)."""

    value: Any
    n_users: int
    counts: np.ndarray
    order: np.ndarray

    @property
    def nbytes(self) -> int:
        return int(self.counts.nbytes + self.order.nbytes)


@dataclass(frozen=True)
class UserSegment:
    """A query's `segment`: a user attribute, checked against the user attributes of the model's dataset."""

    cache: FilterCache
    users: ModelCatalogue  # the model's training users with the current user attributes
    attribute: str

    def counts(self, model: LoadedModel, user: str) -> SegmentCounts | None:
        """The popularity among the training users sharing `user`'s value; None when the user has none."""
        return self.cache.segment_counts(model, self.users, self.attribute, user)


class FilterCache:
    """Thread-safe memory of attribute versions, aligned columns and compiled filters, bounded in bytes."""

    NAME_TTL = 2.0

    def __init__(self, store: ArtifactStore, max_bytes: int) -> None:
        self.store = store
        self.max_bytes = max_bytes
        self._lock = threading.Lock()
        self._datasets: dict[str, str] = {}  # model id -> dataset id (fixed for a model's life)
        self._versions: dict[tuple[str, str], _Version] = {}  # (dataset id, kind) -> version
        self._named: dict[tuple[str, str], tuple[str | None, float]] = {}  # (tenant, name) -> (expression, until)
        self._tables: OrderedDict[tuple[str, str], AttributeTable] = OrderedDict()
        # (model id, kind, token): the model's items (or training users) with the attributes of one version
        self._catalogues: OrderedDict[tuple[str, str, str], ModelCatalogue] = OrderedDict()
        self._segments: OrderedDict[tuple[str, str, str, str], SegmentCounts] = OrderedDict()
        self._allowed: OrderedDict[tuple[str, str, str], Allowed] = OrderedDict()
        self.compiled = 0  # bitmaps computed (the rest were answered from memory)

    # What changed in this process is forgotten at once; other processes see it within NAME_TTL.
    def forget_dataset(self, dataset_id: str) -> None:
        with self._lock:
            for kind in KINDS:
                self._versions.pop((dataset_id, kind), None)

    def forget_named(self, tenant: str, name: str) -> None:
        with self._lock:
            self._named.pop((tenant, name), None)

    def _dataset_of(self, sessions: sessionmaker[Session], model: LoadedModel) -> str:
        dataset_id = self._datasets.get(model.id) or model.artifact.meta.get("dataset_id")
        if not dataset_id:
            with sessions() as session:
                row = session.get(Model, model.id)
                dataset_id = row.dataset_id if row is not None else ""
        self._datasets[model.id] = str(dataset_id)
        return str(dataset_id)

    def _version(self, sessions: sessionmaker[Session], dataset_id: str, kind: Kind) -> _Version:
        now = time.monotonic()
        known = self._versions.get((dataset_id, kind))
        if known is None or known.verified_until < now:
            with sessions() as session:
                row = session.get(Catalogue, (dataset_id, kind))
                token = f"{row.version}@{row.updated_at.isoformat()}" if row else ""
                known = _Version(token, row.artifact_key if row else None, time.monotonic() + self.NAME_TTL)
            self._versions[(dataset_id, kind)] = known
        return known

    def catalogue(self, sessions: sessionmaker[Session], model: LoadedModel, kind: Kind = "items") -> ModelCatalogue:
        """The model's items (or, for kind users, its training users) with the current attributes of its dataset."""
        dataset_id = self._dataset_of(sessions, model)
        version = self._version(sessions, dataset_id, kind)
        key = (model.id, kind, version.token)
        with self._lock:
            found = self._catalogues.get(key)
            if found is not None:
                self._catalogues.move_to_end(key)
                return found
        try:
            table = self._table(dataset_id, version)
        except FileNotFoundError:
            # Replaced (its files deleted) since it was looked up: look up the current one, once.
            self.forget_dataset(dataset_id)
            version = self._version(sessions, dataset_id, kind)
            key = (model.id, kind, version.token)
            table = self._table(dataset_id, version)
        if kind == "items":
            columns = table.aligned(model.artifact.item_ids, model.item_index)
        else:
            columns = table.aligned(model.artifact.user_ids)
        built = ModelCatalogue(version.token, table.schema, columns, table)
        with self._lock:
            self._catalogues[key] = built
            self._evict()
        return built

    def _table(self, dataset_id: str, version: _Version) -> AttributeTable:
        key = (version.artifact_key or "", version.token)
        with self._lock:
            table = self._tables.get(key)
        if table is None:
            table = load_version(self.store, version.artifact_key)
            with self._lock:
                self._tables[key] = table
                self._evict()
        return table

    def _expression(self, sessions: sessionmaker[Session], tenant: str, name: str) -> str | None:
        now = time.monotonic()
        cached = self._named.get((tenant, name))
        if cached is None or cached[1] < now:
            with sessions() as session:
                row = session.get(NamedFilter, (tenant, name))
                cached = (row.expression if row else None, now + self.NAME_TTL)
            self._named[(tenant, name)] = cached
        return cached[0]

    def _compiled(
        self, sessions: sessionmaker[Session], model: LoadedModel, text: str, tenant: str
    ) -> tuple[ModelCatalogue, Expr]:
        """The model's catalogue and the filter checked against it, @names expanded (422 when it cannot be)."""
        try:
            tree = parse(text)
        except FilterError as exc:
            raise filter_problem(exc) from None
        catalogue = self.catalogue(sessions, model)
        try:
            return catalogue, self._expand(sessions, tree, tenant, catalogue.schema, ())
        except FilterError as exc:
            raise filter_problem(exc) from None

    def cold(
        self, sessions: sessionmaker[Session], model: LoadedModel, text: str | None, tenant: str
    ) -> tuple[ColdItems, np.ndarray]:
        """The model's cold items and which of them the filter keeps (all of them without one)."""
        catalogue, tree = (
            (self.catalogue(sessions, model), None) if text is None else self._compiled(sessions, model, text, tenant)
        )
        cold = catalogue.cold(model)
        with self._lock:
            self._evict()  # the catalogue may have grown by its cold items
        if tree is None:
            return cold, np.ones(cold.ids.shape[0], dtype=bool)
        return cold, filter_expr.evaluate(tree, cold.columns)

    def allowed(self, sessions: sessionmaker[Session], model: LoadedModel, text: str, tenant: str) -> Allowed:
        """The bitmap of the model's items the filter keeps (422 naming the position when it cannot)."""
        catalogue, tree = self._compiled(sessions, model, text, tenant)
        key = (model.id, catalogue.token, filter_expr.canonical(tree))
        with self._lock:
            found = self._allowed.get(key)
            if found is not None:
                self._allowed.move_to_end(key)
                return found
        built = Allowed(filter_expr.evaluate(tree, catalogue.columns))
        with self._lock:
            self.compiled += 1
            self._allowed[key] = built
            self._evict()
        return built

    def _expand(
        self, sessions: sessionmaker[Session], tree: Expr, tenant: str, schema: dict[str, str], seen: tuple[str, ...]
    ) -> Expr:
        """The tree checked against the schema, each @name replaced by its stored (checked, expanded) expression."""
        filter_expr.validate(tree, schema)
        named: dict[str, Expr] = {}
        for ref in filter_expr.refs(tree):
            if ref.name in named:
                continue
            if ref.name in seen or len(seen) >= MAX_NESTING:
                raise FilterError(f"named filter @{ref.name} refers to itself or nests too deep", ref.pos)
            expression = self._expression(sessions, tenant, ref.name)
            if expression is None:
                raise FilterError(f"no named filter @{ref.name} (PUT /v1/filters/{ref.name} creates it)", ref.pos)
            try:
                named[ref.name] = self._expand(sessions, parse(expression), tenant, schema, (*seen, ref.name))
            except FilterError as exc:
                # A position inside the stored text means nothing in this one: the reference is blamed.
                raise FilterError(f"in named filter @{ref.name}: {exc}", ref.pos) from None
        return filter_expr.substitute(tree, named) if named else tree

    def segment(self, sessions: sessionmaker[Session], model: LoadedModel, attribute: str) -> UserSegment:
        """A `segment` checked against the user attributes of the model's dataset: a 422 naming it when no
        such attribute exists or it is numeric (a segment is the users sharing a value)."""
        users = self.catalogue(sessions, model, "users")
        kind = users.schema.get(attribute)
        if kind is None or kind == NUMERIC:
            known = [name for name, k in users.schema.items() if k != NUMERIC]
            what = "unknown user attribute" if kind is None else "numeric user attribute (not a segment)"
            raise InvalidInput(
                f"segment: {what} {attribute!r} (categorical, tags or boolean user attributes: "
                f"{', '.join(known) or 'none; upload them with POST /v1/datasets/{id}/users'})",
                field="segment",
                errors=[{"field": "segment", "message": f"{what} {attribute!r}", "type": "segment"}],
            )
        return UserSegment(self, users, attribute)

    def segment_counts(
        self, model: LoadedModel, users: ModelCatalogue, attribute: str, user: str
    ) -> SegmentCounts | None:
        """Popularity among the training users who share `user`'s value of `attribute` (any of its tags), kept
        per model, attribute version and value; None when the user has no such value in the user table."""
        value = (users.table.row(user) or {}).get(attribute)
        if value is None:
            return None
        key = (model.id, users.token, attribute, repr(value))
        with self._lock:
            found = self._segments.get(key)
            if found is not None:
                self._segments.move_to_end(key)
                return found
        values = tuple(value) if isinstance(value, list) else (value,)
        if users.schema[attribute] == TAGS:
            members = users.columns.has(attribute, values, "any")
        else:
            members = users.columns.equals(attribute, values)
        art = model.artifact
        counts, order = segment_popularity(art.seen_indptr, art.seen_indices, members, model.popularity_order)
        built = SegmentCounts(value, int(members.sum()), counts, order)
        with self._lock:
            self._segments[key] = built
            self._evict()
        return built

    def _evict(self) -> None:
        """Drop the least recently used entries past max_bytes (caller holds the lock); the newest stays."""
        caches: list[OrderedDict[Any, Any]] = [self._segments, self._allowed, self._catalogues, self._tables]

        def size() -> int:
            return sum(
                v.columns.nbytes if isinstance(v, ModelCatalogue) else v.nbytes for c in caches for v in c.values()
            )

        for cache in caches:
            while len(cache) > 1 and size() > self.max_bytes:
                cache.popitem(last=False)
