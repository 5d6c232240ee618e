"""Tests for app.recsys.index: exact and HNSW item indexes, exclusions, cosine, save/load."""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from app.recsys.index import (
    EF_LADDER,
    INDEX_FILE,
    INDEX_META,
    ExactIndex,
    HNSWIndex,
    IndexConfig,
    build_index,
    load_index,
)

ROOT = Path(__file__).resolve().parents[2]
# Small graphs build in well under a second; one thread avoids OpenMP stalls on a busy machine.
HNSW = IndexConfig(exact_max_items=0, hnsw_m=16, ef_construction=100, ef_search=64, threads=1)


def clustered(n: int, dim: int, n_users: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Items in Gaussian clusters with a decaying spectrum and varied norms, and user queries mixing two."""
    rng = np.random.default_rng(seed)
    basis = (np.arange(1, dim + 1) ** -0.5)[:, None] * np.linalg.qr(rng.standard_normal((dim, dim)))[0]
    centres = rng.standard_normal((max(8, n // 100), dim)) @ basis
    items = centres[rng.integers(0, centres.shape[0], n)] + 0.6 * rng.standard_normal((n, dim)) @ basis
    items *= np.exp(0.3 * rng.standard_normal((n, 1)))
    picks = rng.integers(0, centres.shape[0], (n_users, 2))
    users = 0.5 * (centres[picks[:, 0]] + centres[picks[:, 1]]) + 0.6 * rng.standard_normal((n_users, dim)) @ basis
    return items.astype(np.float32), users.astype(np.float32)


def brute_force(
    queries: np.ndarray, items: np.ndarray, k: int, excluded: list[np.ndarray] | None = None
) -> list[np.ndarray]:
    """Top-k ids per query by a full sort (float64 scores), skipping each row's excluded items."""
    scores = queries.astype(np.float64) @ items.astype(np.float64).T
    out = []
    for r, row in enumerate(scores):
        if excluded is not None:
            row[excluded[r]] = -np.inf
        order = np.argsort(-row, kind="stable")
        out.append(order[np.isfinite(row[order])][:k])
    return out


def to_csr(rows: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Exclusion lists as (indptr, indices)."""
    indptr = np.concatenate([[0], np.cumsum([len(r) for r in rows])]).astype(np.int64)
    return indptr, np.concatenate(rows).astype(np.int32)


def recall(found: list[tuple[np.ndarray, np.ndarray]], truth: list[np.ndarray]) -> float:
    """Mean overlap of found ids with the true top-k."""
    return float(np.mean([np.intersect1d(f[0], t).shape[0] / len(t) for f, t in zip(found, truth, strict=True)]))


@pytest.fixture(scope="module")
def data() -> tuple[np.ndarray, np.ndarray]:
    """4,000 items x 32 dims and 200 user queries."""
    return clustered(4000, 32, 200)


@pytest.fixture(scope="module")
def hnsw(data: tuple[np.ndarray, np.ndarray]) -> HNSWIndex:
    """An HNSW index over the module's items (forced by exact_max_items=0), recall checked on its users."""
    items, users = data
    index = build_index(items, HNSW, sample_queries=users)
    assert isinstance(index, HNSWIndex)
    return index


def test_small_catalog_uses_exact_and_matches_brute_force(data: tuple[np.ndarray, np.ndarray]) -> None:
    items, users = data
    index = build_index(items, IndexConfig())
    assert isinstance(index, ExactIndex) and index.kind == "exact"
    rng = np.random.default_rng(1)
    excluded = [rng.choice(len(items), 20, replace=False) for _ in users]
    found = index.search(users, 10, *to_csr(excluded))
    for (ids, scores), truth, q, ex in zip(
        found, brute_force(users, items, 10, excluded), users, excluded, strict=True
    ):
        np.testing.assert_array_equal(ids, truth)
        np.testing.assert_allclose(scores, items[ids] @ q, rtol=1e-5, atol=1e-5)
        assert not np.isin(ids, ex).any()
    # Single queries take a separate (non-BLAS) scoring path; it must agree with the batch.
    for r in (0, 5, 199):
        ids, scores = index.search(users[r], 10, *to_csr([excluded[r]]))[0]
        np.testing.assert_array_equal(ids, found[r][0])
        np.testing.assert_allclose(scores, found[r][1], rtol=1e-5, atol=1e-5)
    # Exclusions too many to over-fetch take the full numpy scan, with the same answers.
    narrow = build_index(items, IndexConfig(max_fetch=16))
    wide = narrow.search(users[:20], 10, *to_csr(excluded[:20]))
    assert narrow.fallback_count == 20
    for (ids, _), (expected, _) in zip(wide, found[:20], strict=True):
        np.testing.assert_array_equal(ids, expected)
    described = index.describe()
    assert described["kind"] == "exact" and described["recall@10"] == 1.0
    json.dumps(described)


def test_hnsw_recall_reported_and_real(hnsw: HNSWIndex, data: tuple[np.ndarray, np.ndarray]) -> None:
    items, users = data
    described = hnsw.describe()
    json.dumps(described)
    assert described["kind"] == "hnsw" and described["n_items"] == 4000 and described["dim"] == 32
    assert described["recall_queries"] == 200 and described["recall_query_source"] == "sample"
    assert described["recall@10"] >= 0.95
    found = hnsw.search(users, 10)
    assert recall(found, brute_force(users, items, 10)) >= 0.95
    for (ids, scores), q in zip(found, users, strict=True):
        assert ids.shape == (10,) and np.unique(ids).shape == (10,)
        # Scores are the true inner products, best first.
        np.testing.assert_allclose(scores, items[ids] @ q, rtol=1e-5, atol=1e-5)
        assert np.all(np.diff(scores) <= 0)


@pytest.mark.parametrize("target", [0.9, 0.99])
def test_automatic_ef_search_is_the_smallest_beam_reaching_the_target(
    data: tuple[np.ndarray, np.ndarray], target: float
) -> None:
    items, users = data
    index = build_index(items, replace(HNSW, ef_search=None, target_recall=target), sample_queries=users)
    stats = index.describe()
    curve = {int(ef): r for ef, r in stats["recall_by_ef_search"].items()}
    chosen = stats["ef_search"]
    assert stats["ef_search_auto"] and stats["recall@10"] == curve[chosen]
    # Every smaller beam tried fell short; the chosen one reaches the target (or is the widest tried).
    assert list(curve) == sorted(curve) and chosen == max(curve)
    assert all(r < target for ef, r in curve.items() if ef < chosen)
    assert curve[chosen] >= target or chosen == EF_LADDER[-1]
    # The reported figure is what searching at that beam really gives against brute force.
    assert recall(index.search(users, 10), brute_force(users, items, 10)) >= curve[chosen] - 0.01
    # The chosen beam is fixed in the config that save() writes.
    assert isinstance(index, HNSWIndex) and index.config.ef_search == chosen


def test_default_recall_queries_are_perturbed_items(data: tuple[np.ndarray, np.ndarray]) -> None:
    items, _ = data
    index = build_index(items[:2000], replace(HNSW, recall_queries=100))
    described = index.describe()
    assert described["recall_queries"] == 100 and described["recall_query_source"] == "perturbed_items"
    assert described["recall@10"] >= 0.95


def test_hnsw_exclusions_keep_k_results(hnsw: HNSWIndex, data: tuple[np.ndarray, np.ndarray]) -> None:
    items, users = data
    rng = np.random.default_rng(2)
    # Exclude 40 of each query's true top 50 (most of what HNSW finds first) plus random items.
    top50 = brute_force(users, items, 50)
    excluded = [np.concatenate([rng.choice(t, 40, replace=False), rng.choice(4000, 20)]) for t in top50]
    found = hnsw.search(users, 10, *to_csr(excluded))
    for (ids, _), ex in zip(found, excluded, strict=True):
        assert ids.shape == (10,) and not np.isin(ids, ex).any()
    # The answers now sit at ranks ~40-60 of the unfiltered list, where the small test graph is weaker.
    assert recall(found, brute_force(users, items, 10, excluded)) >= 0.9
    # One call per query gives the same answers as the batch.
    for r in (0, 7, 199):
        ids, scores = hnsw.search(users[r], 10, *to_csr([excluded[r]]))[0]
        np.testing.assert_array_equal(ids, found[r][0])
        np.testing.assert_array_equal(scores, found[r][1])


def test_exclusions_as_slice_of_a_larger_csr(hnsw: HNSWIndex, data: tuple[np.ndarray, np.ndarray]) -> None:
    items, users = data
    rng = np.random.default_rng(5)
    excluded = [rng.choice(4000, 30, replace=False) for _ in range(30)]
    indptr, indices = to_csr(excluded)
    for index in (build_index(items, IndexConfig()), hnsw):
        # Rows 10..19 of a model-wide CSR: as in search.search, indptr keeps absolute offsets into indices.
        sliced = index.search(users[10:20], 10, indptr[10:21], indices)
        direct = index.search(users[10:20], 10, *to_csr(excluded[10:20]))
        for (a_ids, _), (b_ids, _) in zip(sliced, direct, strict=True):
            np.testing.assert_array_equal(a_ids, b_ids)
        single = index.search(users[12], 10, indptr[12:14], indices)[0][0]
        np.testing.assert_array_equal(single, direct[2][0])


def test_fallback_when_exclusions_exceed_max_fetch(data: tuple[np.ndarray, np.ndarray]) -> None:
    items, users = data
    index = build_index(items[:2000], replace(HNSW, max_fetch=64))
    assert isinstance(index, HNSWIndex)
    items = items[:2000]
    # Row 0 excludes its whole top 100 (needs > max_fetch candidates: exact); row 1 excludes nothing.
    excluded = [brute_force(users[:1], items, 100)[0], np.zeros(0, np.int64)]
    found = index.search(users[:2], 10, *to_csr(excluded))
    assert index.fallback_count == 1
    np.testing.assert_array_equal(found[0][0], brute_force(users[:1], items, 10, excluded[:1])[0])
    assert found[1][0].shape == (10,)


def test_fallback_when_graph_comes_up_short(
    hnsw: HNSWIndex, data: tuple[np.ndarray, np.ndarray], monkeypatch: pytest.MonkeyPatch
) -> None:
    items, users = data
    real = hnsw.candidates

    def sparse(q: np.ndarray, fetch: int) -> np.ndarray:
        # Odd rows lose all but 3 candidates (faiss pads with -1), as when a graph region is cut off.
        ids = real(q, fetch)
        ids[1::2, 3:] = -1
        return ids

    monkeypatch.setattr(hnsw, "candidates", sparse)
    before = hnsw.fallback_count
    rng = np.random.default_rng(3)
    excluded = [rng.choice(4000, 30, replace=False) for _ in range(20)]
    found = hnsw.search(users[:20], 10, *to_csr(excluded))
    assert hnsw.fallback_count - before == 10
    truth = brute_force(users[:20], items, 10, excluded)
    for r, ((ids, scores), ex) in enumerate(zip(found, excluded, strict=True)):
        assert ids.shape == (10,) and not np.isin(ids, ex).any()
        if r % 2:
            np.testing.assert_array_equal(ids, truth[r])
            np.testing.assert_allclose(scores, items[ids] @ users[r], rtol=1e-5, atol=1e-5)


def test_fewer_than_k_left_returns_all_remaining(data: tuple[np.ndarray, np.ndarray]) -> None:
    items, users = data
    for config in (IndexConfig(), HNSW):
        index = build_index(items[:30], config)
        found = index.search(users[:1], 10, *to_csr([np.arange(25)]))
        assert sorted(found[0][0].tolist()) == [25, 26, 27, 28, 29]


def test_cosine(data: tuple[np.ndarray, np.ndarray]) -> None:
    items, users = data
    unit = items / np.linalg.norm(items, axis=1, keepdims=True)
    truth = brute_force(users, unit, 10)
    for config in (IndexConfig(metric="cosine"), replace(HNSW, metric="cosine")):
        index = build_index(items, config, sample_queries=users)
        found = index.search(users * 3.0, 10)  # query scale must not matter
        assert recall(found, truth) >= (1.0 if index.kind == "exact" else 0.95)
        for (ids, scores), q in zip(found, users, strict=True):
            np.testing.assert_allclose(scores, unit[ids] @ (q / np.linalg.norm(q)), rtol=1e-5, atol=1e-5)
            assert scores.max() <= 1.0 + 1e-5
        assert index.describe()["metric"] == "cosine"


@pytest.mark.parametrize("metric", ["dot", "cosine"])
def test_save_load_round_trip_without_pickle(
    hnsw: HNSWIndex, data: tuple[np.ndarray, np.ndarray], tmp_path: Path, metric: str
) -> None:
    items, users = data
    rng = np.random.default_rng(4)
    excluded = [rng.choice(4000, 50, replace=False) for _ in users]
    built = [
        build_index(items, IndexConfig(metric=metric)),
        hnsw if metric == "dot" else build_index(items, replace(HNSW, metric=metric)),
    ]
    for index in built:
        directory = tmp_path / index.kind
        index.save(directory)
        files = {p.name for p in directory.iterdir()}
        assert files == ({INDEX_META, INDEX_FILE} if index.kind == "hnsw" else {INDEX_META})
        for path in directory.iterdir():
            # Pickle streams start with the PROTO opcode 0x80; faiss and json files never do.
            assert not path.read_bytes().startswith(b"\x80")
        json.loads((directory / INDEX_META).read_text())
        loaded = load_index(directory, items)
        assert loaded.kind == index.kind and loaded.describe() == index.describe()
        for (a_ids, a_scores), (b_ids, b_scores) in zip(
            index.search(users, 10, *to_csr(excluded)),
            loaded.search(users, 10, *to_csr(excluded)),
            strict=True,
        ):
            np.testing.assert_array_equal(a_ids, b_ids)
            np.testing.assert_array_equal(a_scores, b_scores)
        with pytest.raises(ValueError, match="do not match"):
            load_index(directory, items + 1.0)


def test_bad_arguments(hnsw: HNSWIndex, data: tuple[np.ndarray, np.ndarray]) -> None:
    _, users = data
    with pytest.raises(ValueError, match="metric"):
        IndexConfig(metric="l2")
    with pytest.raises(ValueError, match="k must be"):
        hnsw.search(users, 0)
    with pytest.raises(ValueError, match="shape"):
        hnsw.search(users[:, :5], 10)
    with pytest.raises(ValueError, match="exclude_indices"):
        hnsw.search(users[:1], 10, np.array([0, 1]), np.array([-1]))
    with pytest.raises(ValueError, match="exclude_indptr"):
        hnsw.search(users[:2], 10, np.array([0, 1]), np.array([3]))


def test_import_does_not_load_faiss_or_torch() -> None:
    code = (
        "import sys, numpy as np\n"
        "from app.recsys.index import IndexConfig, build_index\n"
        "assert 'faiss' not in sys.modules and 'torch' not in sys.modules, 'import'\n"
        "build_index(np.eye(8, dtype=np.float32), IndexConfig())\n"
        "assert 'faiss' not in sys.modules, 'building an exact index'\n"
    )
    subprocess.run([sys.executable, "-c", code], cwd=ROOT, check=True, timeout=60)
