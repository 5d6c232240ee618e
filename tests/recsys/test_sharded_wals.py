"""Sharded WALS: 1, 2 and 4 ranks (processes over loopback gloo) give fit_wals's factors; ranks that do not
all join, or a rank that dies, fail the others within the timeout."""

from __future__ import annotations

import dataclasses
import json
import multiprocessing
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from app.recsys.interactions import Interactions
from app.recsys.sharded_wals import balanced_bounds, fit_sharded_wals, load_shard, make_shards, save_shard
from app.recsys.wals import WALSConfig, fit_wals
from tests.recsys.sharded_ranks import rank_main

CONFIG = WALSConfig(dim=8, iterations=6, l2=0.05, l2_scaling="frequency", unobserved_weight=0.5, device="cpu")


def _data(seed: int = 0) -> Interactions:
    """400 users × 150 items with skewed popularity and counts as weights; a few users and items stay empty."""
    rng = np.random.default_rng(seed)
    n = 6000
    users = rng.integers(0, 390, n)
    items = np.minimum(rng.zipf(1.6, n) - 1, 139)
    return Interactions.from_coo(users, items, rng.integers(1, 5, n), n_users=400, n_items=150)


def _run_ranks(tmp_path: Path, data: Interactions, world: int, config: WALSConfig, **options: Any) -> list[dict]:
    """Start `world` rank processes on their shard files; return what each wrote (rank 0's factors too)."""
    context = multiprocessing.get_context("spawn")
    tmp_path.mkdir(parents=True, exist_ok=True)
    processes = []
    for shard in make_shards(data, world):
        path = tmp_path / f"shard-{shard.rank}.npz"
        save_shard(shard, path)
        if shard.rank in options.get("absent", ()):
            continue
        args = (str(path), str(tmp_path / "address"), str(tmp_path / f"out-{shard.rank}"), dataclasses.asdict(config),
                options)  # fmt: skip
        processes.append(context.Process(target=rank_main, args=args))
    for process in processes:
        process.start()
    for process in processes:
        process.join(120)
        assert process.exitcode is not None, "a rank hung"
    results = []
    for rank in range(world):
        out = tmp_path / f"out-{rank}"
        result = json.loads(out.read_text()) if out.exists() else {"exitcode": "no output"}
        if (tmp_path / f"out-{rank}.npz").exists():
            with np.load(tmp_path / f"out-{rank}.npz") as z:
                result.update(U=z["U"], V=z["V"], loss=z["loss"])
        results.append(result)
    return results


def test_bounds_balance_nonzeros_not_rows() -> None:
    lengths = np.array([100, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 100])
    bounds = balanced_bounds(lengths, 2)
    assert bounds.tolist() == [0, 6, 12]
    assert balanced_bounds(np.array([5]), 3).tolist()[-1] == 1
    assert balanced_bounds(np.zeros(0, dtype=np.int64), 2).tolist() == [0, 0, 0]


def test_shards_cover_the_matrix_and_survive_a_file(tmp_path: Path) -> None:
    data = _data()
    shards = make_shards(data, 3)
    assert sum(s.users.nnz for s in shards) == sum(s.items.nnz for s in shards) == data.nnz
    save_shard(shards[1], tmp_path / "s.npz")
    loaded = load_shard(tmp_path / "s.npz")
    assert (loaded.rank, loaded.world, loaded.nnz) == (1, 3, data.nnz)
    assert np.array_equal(loaded.items.indices, shards[1].items.indices)
    a, b = shards[1].user_bounds[1:3]
    assert np.array_equal(loaded.users.weights, data.weights[data.indptr[a] : data.indptr[b]])


@pytest.mark.parametrize("solver", ["cg", "cholesky"])
def test_one_rank_is_fit_wals(solver: str) -> None:
    data, config = _data(), dataclasses.replace(CONFIG, solver=solver)
    expected = fit_wals(data, config)
    fit = fit_sharded_wals(make_shards(data, 1)[0], config)
    assert fit.model is not None
    np.testing.assert_allclose(fit.model.user_factors, expected.user_factors, atol=1e-5)
    np.testing.assert_allclose(fit.model.item_factors, expected.item_factors, atol=1e-5)
    losses = [h["loss"] for h in fit.model.history]
    np.testing.assert_allclose(losses, [h["loss"] for h in expected.history], rtol=1e-5)


@pytest.mark.parametrize("world", [2, 4])
def test_ranks_give_the_single_process_model(tmp_path: Path, world: int) -> None:
    data = _data()
    expected = fit_wals(data, CONFIG)
    # With 4 ranks each loads its shard file itself (the way a rank task does), with 2 they are handed a Shard.
    results = _run_ranks(tmp_path, data, world, CONFIG, by_path=world == 4)
    assert all(r.get("iterations") == CONFIG.iterations for r in results), results
    np.testing.assert_allclose(results[0]["U"], expected.user_factors, atol=1e-4)
    np.testing.assert_allclose(results[0]["V"], expected.item_factors, atol=1e-4)
    np.testing.assert_allclose(results[0]["loss"], [h["loss"] for h in expected.history], rtol=1e-5)
    # Each rank sends about its share of both factor matrices to the world − 1 others per iteration.
    factors = (data.n_users + data.n_items) * CONFIG.dim * 4 * (world - 1)
    sent = sum(r["bytes_sent"] for r in results)
    assert factors * CONFIG.iterations < sent < 1.2 * factors * (CONFIG.iterations + 1)


def test_a_rank_that_never_joins_fails_the_others_in_time(tmp_path: Path) -> None:
    started = time.monotonic()
    results = _run_ranks(tmp_path, _data(), 2, CONFIG, absent=(1,), timeout=3.0)
    assert "only 1 of 2 ranks joined within 3 s" in results[0]["error"]
    assert time.monotonic() - started < 60


def test_a_killed_rank_fails_its_peers_in_time(tmp_path: Path) -> None:
    config = dataclasses.replace(CONFIG, iterations=50)
    # Rank 1 kills itself (SIGKILL) at its 5th interrupt check: mid-fit, between two half-steps.
    results = _run_ranks(tmp_path, _data(), 2, config, die_at=(1, 5), timeout=10.0)
    assert results[1] == {"exitcode": "no output"}
    assert results[0]["failed"] in ("RuntimeError", "DistBackendError"), results[0]
    assert results[0]["after"] < 10.0 + 15.0


def test_fresh_ranks_resume_rank_0s_checkpoint_and_end_with_the_same_model(tmp_path: Path) -> None:
    data = _data()
    expected = fit_wals(data, CONFIG)
    state = tmp_path / "state.npz"
    # Rank 1 dies at the start of iteration 4 (its 7th check); rank 0 checkpointed every step before that.
    first = _run_ranks(tmp_path / "a", data, 2, CONFIG, die_at=(1, 7), state_file=str(state))
    assert "failed" in first[0]
    with np.load(state) as z:
        assert int(z["step"]) == 3
    # A fresh set of ranks: only rank 0 reads the checkpoint.
    second = _run_ranks(tmp_path / "b", data, 2, CONFIG, state_file=str(state), resume=True)
    assert [r.get("iterations") for r in second] == [CONFIG.iterations - 3] * 2, second
    np.testing.assert_allclose(second[0]["U"], expected.user_factors, atol=1e-4)
    np.testing.assert_allclose(second[0]["V"], expected.item_factors, atol=1e-4)
