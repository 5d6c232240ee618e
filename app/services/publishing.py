"""A job's model, published whole: the artifact (factors, ids, seen items, metadata), its serving index and
its embedding map; and the row recorded from the metadata, for a fresh model or one an earlier attempt
published (its worker died before the job's success was committed)."""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import Any

from app.models import Job, Model
from app.recsys.artifact import META, ModelArtifact, save_model
from app.recsys.base import EmbeddingModel
from app.recsys.embedding_map import EmbeddingMapConfig, embedding_map
from app.recsys.index import IndexConfig, ItemIndex, build_index
from app.recsys.interactions import Interactions
from app.services import job_state
from app.services.datasets import StoredDataset
from app.services.embedding_maps import EMBEDDING_MAP_FILE
from app.services.models import model_key
from app.services.pipeline import Trained
from app.services.progress import progress_snapshot
from app.spec import TrainingSpec
from app.storage import ArtifactStore, publishing

log = logging.getLogger(__name__)


def publish_model(
    store: ArtifactStore,
    model_id: str,
    job: Job,
    trained: Trained,
    stored: StoredDataset,
    reporter: job_state.JobReporter,
) -> dict[str, Any]:
    """Write the model's artifact, index and embedding map and publish them all at once; its metadata."""
    model, spec, full = trained.model, trained.spec, stored.interactions
    resolved = trained.plan.resolved_spec(spec)
    with publishing(store, model_key(model_id)) as staged:
        index = _build_index(model, spec)
        index.save(staged)
        meta: dict[str, Any] = {
            "id": model_id,
            "job_id": job.id,
            "algorithm": spec.algorithm,
            "dim": spec.dim,
            "spec": resolved,
            "fold_in": _fold_in_parameters(resolved),
            "metrics": trained.metrics,
            "history": reporter.history,
            "dataset_id": job.dataset_id,
            "index": index.describe(),
            "resumed_from": reporter.resumed_from,
        }
        _save_embedding_map(staged, model, full, stored, spec.seed)
        save_model(
            staged,
            ModelArtifact(
                user_factors=model.user_factors,
                item_factors=model.item_factors,
                user_ids=stored.user_ids,
                item_ids=stored.item_ids,
                seen_indptr=full.indptr,
                seen_indices=full.indices,
                meta=meta,
                seen_weights=full.weights,  # live user vectors fold a user's new events in with these
            ),
        )
    return meta


def published_meta(store: ArtifactStore, model_id: str, job_id: str) -> dict[str, Any] | None:
    """The metadata of this job's model when an earlier attempt published it whole, else None."""
    key = model_key(model_id)
    if not store.exists(key):
        return None
    try:
        meta: dict[str, Any] = json.loads((store.local_dir(key) / META).read_text())
    except (FileNotFoundError, ValueError):
        return None
    # Without what its row needs (or from another job), the model is trained and published again.
    if meta.get("job_id") != job_id or not {"index", "dim", "spec", "metrics", "dataset_id"} <= set(meta):
        return None
    return meta


def restore_finished(reporter: job_state.JobReporter, meta: dict[str, Any]) -> None:
    """The job's history and final progress from its published model: it resumes after its last step."""
    reporter.history = list(meta.get("history") or [])
    last = reporter.history[-1] if reporter.history else {"step": 0, "phase": "fit", "loss": None, "metrics": {}}
    reporter.resumed_from = {"phase": last["phase"], "step": last["step"], "attempt": reporter.lease.attempt}
    unit = "iteration" if meta.get("algorithm") == "wals" else "epoch"
    progress = progress_snapshot(
        last["step"], last["step"], 1.0, last["phase"], 1.0, unit, 0.0, last.get("loss"), last.get("metrics")
    )
    reporter.report(progress, None)


def model_row(job: Job, meta: dict[str, Any]) -> Model:
    """The model's row, from the metadata its artifact carries (the same for a fresh and a recovered model)."""
    return Model(
        id=meta["id"],
        tenant=job.tenant,  # the model belongs to whoever submitted the job
        job_id=job.id,
        dataset_id=meta["dataset_id"],
        algorithm=meta["algorithm"],
        dim=int(meta["dim"]),
        spec=meta["spec"],
        metrics=meta["metrics"],
        index=meta["index"],
        artifact_key=model_key(meta["id"]),
    )


def _save_embedding_map(
    staged: Path, model: EmbeddingModel, full: Interactions, stored: StoredDataset, seed: int
) -> None:
    """The 2-D PCA map of the served item factors, coloured by planted group when the data know it
    (GET /v1/models/{id}/embedding-map serves this file)."""
    config = EmbeddingMapConfig(seed=seed)
    picture = embedding_map(model.item_factors, full.item_counts(), stored.item_groups, stored.item_group_names, config)
    (staged / EMBEDDING_MAP_FILE).write_text(json.dumps(picture.to_json(stored.item_ids)))


def _build_index(model: EmbeddingModel, spec: TrainingSpec) -> ItemIndex:
    """The serving index over the refit item factors; HNSW recall is measured against exact search
    with the model's own users as queries, so model.index reports what serving will deliver."""
    started = time.monotonic()
    config = IndexConfig(**spec.index.model_dump(), seed=spec.seed)
    index = build_index(model.item_factors, config, sample_queries=model.user_factors)
    log.info("index %s over %d items built in %.1f s", index.kind, index.n_items, time.monotonic() - started)
    return index


def _fold_in_parameters(resolved: dict[str, Any]) -> dict[str, Any]:
    """How serving folds a new user in: WALS's own objective, or for SGD a ridge fit to 1 on the
    user's items with a small pull of every other item towards 0 (the same least-squares solve)."""
    if "wals" in resolved:
        w = resolved["wals"]
        return {
            "unobserved_weight": w["unobserved_weight"],
            "l2": w["l2"],
            "l2_scaling": w.get("l2_scaling", "none"),
            "l2_exponent": w.get("l2_exponent", 1.0),
            "confidence": w["confidence"],
        }
    return {"unobserved_weight": 0.1, "l2": 1.0, "confidence": {"scheme": "linear", "alpha": 0.0, "eps": 1.0}}
