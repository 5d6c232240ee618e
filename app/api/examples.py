"""Example bodies for the OpenAPI document (/docs): one realistic request or answer per schema.

The numbers come from WALS runs on MovieLens 100K uploaded with min_weight=4 (ratings of 4 and 5 as
positives). The schemas in app.api.schemas list these; tests/api/test_openapi_manual.py checks that every
example validates against its model and the document's schema, so they cannot drift from the API.
"""

from __future__ import annotations

import math
from typing import Any

from app.services.job_events import format_event
from app.spec import EXAMPLE_DATASET_ID, TrainingSpec
from app.tuning_spec import SearchSpec

DATASET_ID = EXAMPLE_DATASET_ID
JOB_ID = "job_018f3dba993c5a08f1c3e7"
MODEL_ID = "mdl_018f3dba993c5a08f1c3e7"  # a job's model id is derived from the job id
TUNING_ID = "tun_018f3de7c7252b9d04a6f1"
TRIAL_JOB_IDS = ("job_018f3de7c7376e1f3a90c2", "job_018f3de7c74914d7b85e3a")
FINAL_JOB_ID = "job_018f3de800089c2e51d7a4"
FINAL_MODEL_ID = "mdl_018f3de800089c2e51d7a4"
WORKER = "celery@worker-1"


def _spec(value: dict[str, Any]) -> dict[str, Any]:
    """A spec as a job stores it: validated, with every default written out."""
    return TrainingSpec.model_validate(value).model_dump(mode="json")


DATASET: dict[str, Any] = {
    "id": DATASET_ID,
    "name": "ml-100k",
    "status": "ready",
    "format": "tsv",
    "n_users": 942,
    "n_items": 1447,
    "n_interactions": 55375,
    "density": 0.0406,
    "checksum": "06416e597f82b7342361e41163890c81036900f418ad91315590814211dca490",
    "size_bytes": 1979173,
    "created_at": "2024-05-03T09:12:04.512000Z",
    "stats": {
        "format": "tsv",
        "has_header": False,
        "columns": {"user": 0, "item": 1, "weight": 2, "timestamp": 3},
        "rows_read": 100000,
        "rows_dropped_min_weight": 44625,
        "delimiter": "\t",
        "duplicates_merged": 0,
        "n_users": 942,
        "n_items": 1447,
        "n_interactions": 55375,
        "density": 0.0406,
        "weight": {"min": 4.0, "max": 5.0, "mean": 4.3829},
        "user_degree": {"min": 3, "median": 39.5, "max": 378},
        "item_degree": {"min": 1, "median": 13.0, "max": 501},
        "timestamp": {
            "min": 874724710,
            "max": 893286638,
            "min_iso": "1997-09-20T03:05:10Z",
            "max_iso": "1998-04-22T23:10:38Z",
        },
    },
}

UPLOAD_FORM: dict[str, Any] = {
    "file": "u.data (the file's bytes)",
    "name": "ml-100k",
    "format": "auto",
    "min_weight": 4,
}

JOB_SPEC = {"dataset_id": DATASET_ID, "algorithm": "wals", "wals": {"iterations": 4}}
_RANKING = [
    {"recall@10": 0.1201, "ndcg@10": 0.1451, "recall@20": 0.1908, "ndcg@20": 0.1614},
    {"recall@10": 0.2025, "ndcg@10": 0.2397, "recall@20": 0.3147, "ndcg@20": 0.2663},
    {"recall@10": 0.2187, "ndcg@10": 0.2577, "recall@20": 0.3286, "ndcg@20": 0.2817},
    {"recall@10": 0.2242, "ndcg@10": 0.2636, "recall@20": 0.3290, "ndcg@20": 0.2845},
]
_FIT = [
    {"step": step, "phase": "fit", "loss": loss, "seconds": seconds, "metrics": metrics}
    for step, loss, seconds, metrics in zip(
        (1, 2, 3, 4), (6.1465, 4.9194, 4.6823, 4.5797), (1.1649, 0.1731, 0.1828, 0.1537), _RANKING, strict=True
    )
]
_REFIT = [
    {"step": step, "phase": "refit", "loss": loss, "seconds": seconds, "metrics": {}}
    for step, loss, seconds in zip(
        (1, 2, 3, 4), (5.4674, 4.35, 4.1327, 4.0369), (0.0385, 0.0635, 0.0575, 0.0614), strict=True
    )
]

_JOB_BASE: dict[str, Any] = {
    "id": JOB_ID,
    "dataset_id": DATASET_ID,
    "algorithm": "wals",
    "spec": _spec(JOB_SPEC),
    "error": None,
    "cancel_requested": False,
    "created_at": "2024-05-03T09:13:10.204000Z",
    "kind": "train",
    "tuning_id": None,
}

JOB_QUEUED: dict[str, Any] = {
    **_JOB_BASE,
    "status": "queued",
    "model_id": None,
    "progress": None,
    "history": [],
    "attempts": 0,
    "started_at": None,
    "finished_at": None,
}

_RUNNING_PROGRESS = {
    "step": 2,
    "total_steps": 4,
    "fraction": 0.5,
    "unit": "iteration",
    "phase": "fit",
    "eta_seconds": 1.338,
    "loss": 4.9194,
    "metrics": _RANKING[1],
}

JOB_RUNNING: dict[str, Any] = {
    **_JOB_BASE,
    "status": "running",
    "model_id": None,
    "progress": _RUNNING_PROGRESS,
    "history": _FIT[:2],
    "attempts": 1,
    "started_at": "2024-05-03T09:13:10.391000Z",
    "finished_at": None,
}

JOB_SUCCEEDED: dict[str, Any] = {
    **_JOB_BASE,
    "status": "succeeded",
    "model_id": MODEL_ID,
    "progress": {
        "step": 4,
        "total_steps": 4,
        "fraction": 1.0,
        "unit": "iteration",
        "phase": "refit",
        "eta_seconds": 0.0,
        "loss": 4.0369,
        "metrics": {},
    },
    "history": _FIT + _REFIT,
    "attempts": 1,
    "started_at": "2024-05-03T09:13:10.391000Z",
    "finished_at": "2024-05-03T09:13:13.082000Z",
}

# GET /v1/jobs/{id}/events: what a client reads while the job above runs to its end.
JOB_EVENTS = "".join(
    [
        format_event("progress", {"id": JOB_ID, "status": "queued", "progress": None}, 1),
        format_event("progress", {"id": JOB_ID, "status": "running", "progress": _RUNNING_PROGRESS}, 2),
        ": keep-alive\n\n",
        format_event("progress", {"id": JOB_ID, "status": "succeeded", "progress": JOB_SUCCEEDED["progress"]}, 3),
        format_event("end", JOB_SUCCEEDED, 4),
    ]
)

# The spec a model records: its algorithm's block with every value Unfold chose, the other block dropped.
_MODEL_SPEC = {
    **{key: value for key, value in _spec(JOB_SPEC).items() if key not in ("wals", "sgd")},
    "wals": {
        "iterations": 4,
        "l2": 0.01,
        "unobserved_weight": 2.0,
        "l2_scaling": "frequency",
        "l2_exponent": 1.0,
        "solver": "cg",
        "cg_steps": 3,
        "confidence": {"scheme": "log", "alpha": 10.0, "eps": 1.0},
    },
}

MODEL: dict[str, Any] = {
    "id": MODEL_ID,
    "job_id": JOB_ID,
    "dataset_id": DATASET_ID,
    "algorithm": "wals",
    "dim": 64,
    "spec": _MODEL_SPEC,
    "metrics": {
        **_RANKING[3],
        "baseline": {"popularity": {"recall@10": 0.1124, "ndcg@10": 0.1547, "recall@20": 0.1814, "ndcg@20": 0.1678}},
        "evaluated_users": 916,
        "folding": {"unreachable@10": 0.0, "positive_auc": 0.8874, "score_gap": 2.6807, "users": 942.0},
    },
    "index": {
        "kind": "exact",
        "metric": "dot",
        "n_items": 1447,
        "dim": 64,
        "exact_max_items": 20000,
        "max_fetch": 1024,
        "recall@10": 1.0,
        "recall_k": 10,
        "build_seconds": 0.0,
        "recall_queries": 0,
        "index_bytes": 0,
    },
    "created_at": "2024-05-03T09:13:13.097000Z",
}

ALIAS_IN: dict[str, Any] = {"model_id": MODEL_ID}
ALIAS: dict[str, Any] = {"name": "prod", "model_id": MODEL_ID, "updated_at": "2024-05-03T09:20:00.018000Z"}

USER_RECOMMENDATIONS: dict[str, Any] = {
    "model_id": MODEL_ID,
    "items": [{"item": "116", "score": 1.1522}, {"item": "83", "score": 1.1015}, {"item": "483", "score": 1.0701}],
}
SIMILAR_ITEMS: dict[str, Any] = {
    "model_id": MODEL_ID,
    "items": [{"item": "181", "score": 0.9216}, {"item": "1", "score": 0.721}, {"item": "127", "score": 0.683}],
}

FOLD_IN_REQUEST: dict[str, Any] = {"items": ["50", "172", "181", "99999"], "k": 3, "exclude_seen": True}
FOLD_IN: dict[str, Any] = {
    "model_id": MODEL_ID,
    "items": [{"item": "1", "score": 0.2406}, {"item": "127", "score": 0.2396}, {"item": "174", "score": 0.239}],
    "unknown_items": ["99999"],
}

BATCH_REQUEST: dict[str, Any] = {"users": ["1", "2", "99999"], "k": 2, "exclude_seen": True, "exclude": ["50"]}
BATCH: dict[str, Any] = {
    "model_id": MODEL_ID,
    "results": {
        "1": [{"item": "116", "score": 1.1522}, {"item": "83", "score": 1.1015}],
        "2": [{"item": "258", "score": 0.8318}, {"item": "315", "score": 0.7979}],
    },
    "unknown_users": ["99999"],
}

# A query vector of the example model's dimension (64).
NEIGHBORS_REQUEST: dict[str, Any] = {"vector": [round(0.2 * math.sin(i + 1), 3) for i in range(64)], "k": 3}
NEIGHBORS: dict[str, Any] = {
    "model_id": MODEL_ID,
    "items": [{"item": "313", "score": 0.8123}, {"item": "300", "score": 0.7791}, {"item": "258", "score": 0.7402}],
}

# A small planted dataset (two communities of 4 items) shows what a map of separated groups looks like.
EMBEDDING_MAP: dict[str, Any] = {
    "model_id": "mdl_018f3e02b1c45d7e90a3f6",
    "format_version": 1,
    "method": "pca",
    "n_items": 8,
    "n_points": 8,
    "explained_variance_ratio": [0.8512, 0.0671],
    "colour_by": "group",
    "group_separation": 0.8311,
    "legend": [{"code": 0, "label": "g0", "count": 4}, {"code": 1, "label": "g1", "count": 4}],
    "points": {
        "item": ["i0", "i1", "i2", "i3", "i4", "i5", "i6", "i7"],
        "x": [-0.9132, -0.8705, -1.0021, -0.8477, 0.9418, 0.8863, 0.9712, 0.8342],
        "y": [0.1204, -0.0931, 0.0317, -0.0586, 0.0722, -0.1108, 0.0459, -0.0077],
        "colour": [0, 0, 0, 0, 1, 1, 1, 1],
    },
}

TUNING_SPEC = {"dataset_id": DATASET_ID, "algorithm": "wals", "dim": 16, "wals": {"iterations": 3}}
TUNING_SEARCH = {"method": "grid", "params": {"wals.l2": [0.01, 0.1]}}
TUNING_IN: list[dict[str, Any]] = [
    {"spec": TUNING_SPEC, "search": TUNING_SEARCH},
    {
        "spec": {"dataset_id": DATASET_ID, "algorithm": "sgd", "sgd": {"epochs": 10}},
        "search": {
            "method": "random",
            "trials": 8,
            "seed": 1,
            "params": {
                "dim": [32, 64],
                "sgd.learning_rate": {"low": 0.001, "high": 0.05, "log": True},
                "sgd.negatives.strategy": ["uniform", "in_batch"],
            },
        },
    },
]

_TRIALS = [
    {
        "number": 0,
        "job_id": TRIAL_JOB_IDS[0],
        "params": {"wals.l2": 0.01},
        "status": "succeeded",
        "value": 0.2227,
        "metrics": {"recall@10": 0.1864, "ndcg@10": 0.1889, "recall@20": 0.2994, "ndcg@20": 0.2227},
        "worker": WORKER,
        "seconds": 0.595,
        "error": None,
    },
    {
        "number": 1,
        "job_id": TRIAL_JOB_IDS[1],
        "params": {"wals.l2": 0.1},
        "status": "succeeded",
        "value": 0.1962,
        "metrics": {"recall@10": 0.1646, "ndcg@10": 0.1773, "recall@20": 0.2406, "ndcg@20": 0.1962},
        "worker": "celery@worker-2",
        "seconds": 0.567,
        "error": None,
    },
]

TUNING: dict[str, Any] = {
    "id": TUNING_ID,
    "status": "succeeded",
    "dataset_id": DATASET_ID,
    "metric": "ndcg@20",
    "spec": _spec(TUNING_SPEC),
    "search": SearchSpec.model_validate(TUNING_SEARCH).model_dump(mode="json"),
    "progress": {"trials_done": 2, "trials_total": 2, "trials_failed": 0, "fraction": 1.0, "phase": "final"},
    "best": _TRIALS[0],
    "leaderboard": _TRIALS,
    "final_job_id": FINAL_JOB_ID,
    "model_id": FINAL_MODEL_ID,
    "error": None,
    "created_at": "2024-05-03T10:02:31.077000Z",
    "started_at": "2024-05-03T10:02:31.176000Z",
    "finished_at": "2024-05-03T10:02:45.913000Z",
}

# Reusable named examples (the document's components/examples): a route shows one with `ref(name)`.
# They are added to the document after FastAPI encodes it, so their nulls stay (app.api.docs).
NAMED: dict[str, dict[str, Any]] = {
    "job_queued": {"summary": "Just submitted: queued, no progress yet", "value": JOB_QUEUED},
    "job_running": {"summary": "Running: step 2 of 4, with an ETA and metrics", "value": JOB_RUNNING},
    "job_succeeded": {"summary": "Succeeded: its model, full history (fit, then refit)", "value": JOB_SUCCEEDED},
    "job_cancelling": {
        "summary": "A running job asked to stop: it ends cancelled after its current step",
        "value": {**JOB_RUNNING, "cancel_requested": True},
    },
    "job_cancelled": {
        "summary": "A queued job, cancelled at once",
        "value": {
            **JOB_QUEUED,
            "status": "cancelled",
            "cancel_requested": True,
            "finished_at": "2024-05-03T09:13:10.297000Z",
        },
    },
}


def ref(name: str) -> dict[str, str]:
    """A media type's reference to one of NAMED."""
    assert name in NAMED, name
    return {"$ref": f"#/components/examples/{name}"}


HEALTH: dict[str, Any] = {"status": "ok"}
READY: dict[str, Any] = {"status": "ok", "checks": {"database": "ok", "broker": "ok"}}
NOT_READY: dict[str, Any] = {
    "status": "unavailable",
    "checks": {"database": "ok", "broker": "error: OperationalError: Error 111 connecting to 127.0.0.1:6379."},
}
