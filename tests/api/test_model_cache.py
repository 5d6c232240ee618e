"""The API's model cache: LRU bounded by bytes, one load per model, names remembered briefly."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import numpy as np
import pytest

from app.recsys.artifact import ModelArtifact, save_model
from app.services import serving
from app.services.models import model_key
from app.storage import LocalArtifactStore, publishing

N_USERS, N_ITEMS, DIM = 30, 200, 16


def _publish(store: LocalArtifactStore, model_id: str, seed: int) -> str:
    rng = np.random.default_rng(seed)
    key = model_key(model_id)
    with publishing(store, key) as staged:
        save_model(
            staged,
            ModelArtifact(
                user_factors=rng.normal(size=(N_USERS, DIM)).astype(np.float32),
                item_factors=rng.normal(size=(N_ITEMS, DIM)).astype(np.float32),
                user_ids=np.array([f"u{i}" for i in range(N_USERS)]),
                item_ids=np.array([f"i{i}" for i in range(N_ITEMS)]),
                seen_indptr=np.arange(N_USERS + 1, dtype=np.int64),
                seen_indices=np.arange(N_USERS, dtype=np.int32),
                meta={"algorithm": "test", "spec": {}},
            ),
        )
    return key


@pytest.fixture
def store(tmp_path: Path) -> LocalArtifactStore:
    return LocalArtifactStore(tmp_path / "artifacts")


@pytest.fixture
def one_model_bytes(store: LocalArtifactStore) -> int:
    return serving.LoadedModel.load("probe", store.local_dir(_publish(store, "probe", 0))).nbytes


def test_least_recently_used_model_goes_first_when_memory_runs_out(store, one_model_bytes):
    keys = {m: _publish(store, m, seed) for seed, m in enumerate(["a", "b", "c"])}
    cache = serving.ModelCache(store, max_bytes=2 * one_model_bytes)
    cache.get("a", keys["a"])
    cache.get("b", keys["b"])
    cache.get("a", keys["a"])  # a is now the most recently used
    cache.get("c", keys["c"])  # over budget: b, the least recently used, is dropped
    assert cache.loaded_ids() == ["a", "c"]
    assert (cache.hits, cache.misses) == (1, 3)
    # b is loaded again on demand and answers as before.
    answer = serving.recommend_for_users(cache.get("b", keys["b"]), ["u1"], 5, True)
    assert len(answer[0]) == 5
    assert cache.loaded_ids() == ["c", "b"]


def test_a_model_bigger_than_the_budget_is_still_served_alone(store, one_model_bytes):
    keys = {m: _publish(store, m, seed) for seed, m in enumerate(["a", "b"])}
    cache = serving.ModelCache(store, max_bytes=one_model_bytes // 2)
    cache.get("a", keys["a"])
    cache.get("b", keys["b"])
    assert cache.loaded_ids() == ["b"]


def test_concurrent_requests_load_a_model_once(store, monkeypatch):
    key = _publish(store, "a", 0)
    loads = []
    real_load = serving.LoadedModel.load

    def slow_load(model_id: str, directory: Path) -> serving.LoadedModel:
        loads.append(model_id)
        time.sleep(0.2)
        return real_load(model_id, directory)

    monkeypatch.setattr(serving.LoadedModel, "load", staticmethod(slow_load))
    cache = serving.ModelCache(store, max_bytes=1 << 30)
    got: list[serving.LoadedModel] = []
    threads = [threading.Thread(target=lambda: got.append(cache.get("a", key))) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert loads == ["a"]
    assert len(got) == 8 and all(m is got[0] for m in got)


def test_a_failed_load_is_retried_by_the_next_request(store):
    cache = serving.ModelCache(store, max_bytes=1 << 30)
    with pytest.raises(FileNotFoundError):
        cache.get("a", "models/a")
    key = _publish(store, "a", 0)
    assert cache.get("a", key).id == "a"


def test_expired_name_sends_one_request_to_the_database_while_others_keep_answering(store, monkeypatch):
    key = _publish(store, "a", 0)
    monkeypatch.setattr(serving.ModelCache, "NAME_TTL", 0.05)
    cache = serving.ModelCache(store, max_bytes=1 << 30)
    lookups = []

    def lookup() -> tuple[str, str]:
        lookups.append(1)
        return "a", key

    assert cache.peek("t", "live") is None  # never looked up
    cache.resolve("t", "live", lookup)
    assert cache.peek("t", "live") is not None and len(lookups) == 1
    time.sleep(0.1)
    assert cache.peek("t", "live") is None  # expired: this caller goes to resolve...
    assert cache.peek("t", "live") is not None  # ...while the next ones are answered from the old entry
    cache.resolve("t", "live", lookup)
    assert len(lookups) == 2  # the expired entry was really looked up again
    cache.resolve("t", "live", lookup)
    assert len(lookups) == 2  # and is fresh now


def test_evict_forgets_the_model_and_every_name_for_it(store):
    key = _publish(store, "a", 0)
    cache = serving.ModelCache(store, max_bytes=1 << 30)
    cache.resolve("t", "a", lambda: ("a", key))
    cache.resolve("u", "live", lambda: ("a", key))
    cache.evict("a")
    assert cache.loaded_ids() == []
    assert cache.peek("t", "a") is None and cache.peek("u", "live") is None


def test_names_are_remembered_per_tenant(store):
    """One tenant's lookup of a name never answers another tenant's query for the same name."""
    key_a, key_b = _publish(store, "a", 0), _publish(store, "b", 1)
    cache = serving.ModelCache(store, max_bytes=1 << 30)
    assert cache.resolve("t1", "prod", lambda: ("a", key_a)).id == "a"
    assert cache.peek("t2", "prod") is None  # t2 has not looked "prod" up: it must go to the database
    assert cache.resolve("t2", "prod", lambda: ("b", key_b)).id == "b"
    assert cache.peek("t1", "prod").id == "a" and cache.peek("t2", "prod").id == "b"
    cache.forget_name("t1", "prod")
    assert cache.peek("t1", "prod") is None and cache.peek("t2", "prod").id == "b"
