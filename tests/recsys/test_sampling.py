"""Negative samplers: distributions (chi-square), positives never returned, hard and in-batch behaviour."""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.stats
import torch

from app.recsys import sampling, sgd_config
from app.recsys.interactions import Interactions
from app.recsys.sampling import NegativeSampler, PositiveSet
from app.recsys.sgd_config import NegativeConfig

P_MIN = 1e-3


def _skewed(n_users: int = 40, n_items: int = 30, seed: int = 0) -> Interactions:
    """Random interactions with a popularity skew (item j drawn ∝ 1/(j+1)), every user with a free item."""
    rng = np.random.default_rng(seed)
    p = 1.0 / np.arange(1, n_items + 1)
    users = rng.integers(0, n_users, 400)
    items = rng.choice(n_items, size=400, p=p / p.sum())
    data = Interactions.from_coo(users, items, n_users=n_users, n_items=n_items)
    assert data.user_counts().max() < n_items
    return data


def _heavy_user(data: Interactions) -> int:
    """The user with the most positives, so that rejection changes its distribution the most."""
    return int(np.argmax(data.user_counts()))


def _draw(sampler: NegativeSampler, user: int, n: int, seed: int = 0) -> np.ndarray:
    users = torch.full((n // sampler.config.per_positive,), user, dtype=torch.int64)
    items = torch.zeros_like(users)
    generator = torch.Generator().manual_seed(seed)
    return sampler.sample(users, items, generator).items.reshape(-1).numpy()


def _chi_square(draws: np.ndarray, expected_p: np.ndarray) -> float:
    support = expected_p > 0
    counts = np.bincount(draws, minlength=expected_p.shape[0])
    assert counts[~support].sum() == 0, "drew an item with zero probability"
    expected = expected_p[support] * draws.shape[0]
    return float(scipy.stats.chisquare(counts[support], expected).pvalue)


@pytest.mark.parametrize("strategy", ["uniform", "popularity"])
@pytest.mark.parametrize("rounds", [sampling._REJECTION_ROUNDS, 0])
def test_private_negatives_follow_q_conditioned_on_non_positives(
    strategy: str, rounds: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    # rounds=0 sends every rejected draw through the exact complement bisection instead of redrawing.
    monkeypatch.setattr(sampling, "_REJECTION_ROUNDS", rounds)
    data = _skewed()
    sampler = NegativeSampler(NegativeConfig(strategy=strategy, per_positive=4), data)
    user = _heavy_user(data)
    q_u = sampler.user_probabilities(user).numpy()
    positives = data.indices[data.indptr[user] : data.indptr[user + 1]]
    assert np.all(q_u[positives] == 0.0)
    q = sampler.probabilities().numpy()
    free = np.setdiff1d(np.arange(data.n_items), positives)
    np.testing.assert_allclose(q_u[free], q[free] / q[free].sum())
    assert _chi_square(_draw(sampler, user, 40_000), q_u) > P_MIN


def test_popularity_probabilities_follow_count_power() -> None:
    data = _skewed()
    sampler = NegativeSampler(NegativeConfig(strategy="popularity", popularity_power=0.5), data)
    counts = data.item_counts().astype(np.float64)
    np.testing.assert_allclose(sampler.probabilities().numpy(), counts**0.5 / (counts**0.5).sum())


def test_chi_square_detects_a_wrong_target() -> None:
    # Guards the test above against a vacuous pass: popularity draws are not uniform over the free items.
    data = _skewed()
    user = _heavy_user(data)
    draws = _draw(NegativeSampler(NegativeConfig(strategy="popularity"), data), user, 40_000)
    uniform = NegativeSampler(NegativeConfig(strategy="uniform"), data).user_probabilities(user).numpy()
    assert _chi_square(draws, uniform) < P_MIN


@pytest.mark.parametrize("strategy", ["uniform", "popularity", "hard", "mixed"])
@pytest.mark.parametrize("dense", [True, False])
def test_private_negatives_are_never_positives(strategy: str, dense: bool, monkeypatch: pytest.MonkeyPatch) -> None:
    if not dense:
        monkeypatch.setattr(sampling, "_DENSE_CELLS", 0)  # the sorted-key membership path
    data = _skewed()
    config = NegativeConfig(strategy=strategy, per_positive=5, hard_candidates=12)
    sampler = NegativeSampler(config, data)
    assert (sampler.positives._dense is not None) == dense
    truth = data.to_scipy().toarray() > 0
    users = torch.from_numpy(np.repeat(np.arange(data.n_users), 50))
    items = torch.zeros_like(users)
    generator = torch.Generator().manual_seed(3)
    factors = torch.randn(data.n_users + data.n_items, 4, generator=generator)
    for _ in range(5):
        negatives = sampler.sample(users, items, generator, factors[: data.n_users], factors[data.n_users :])
        assert negatives.items.shape == (users.shape[0], 5)
        assert not truth[users.numpy()[:, None], negatives.items.numpy()].any()


def test_positive_set_dense_and_sorted_paths_agree(monkeypatch: pytest.MonkeyPatch) -> None:
    data = _skewed()
    users = torch.arange(data.n_users).repeat_interleave(data.n_items)
    items = torch.arange(data.n_items).repeat(data.n_users)
    dense_set = PositiveSet(data, torch.device("cpu"))
    dense = dense_set.contains(users, items)
    monkeypatch.setattr(sampling, "_DENSE_CELLS", 0)
    keyed_set = PositiveSet(data, torch.device("cpu"))
    keyed = keyed_set.contains(users, items)
    assert torch.equal(dense, keyed)
    truth = data.to_scipy().toarray() > 0
    assert torch.equal(dense, torch.from_numpy(truth.reshape(-1)))
    rows, cols = torch.tensor([3, 0, 3, 7]), torch.tensor([1, 1, 0, 29, 5])
    expected = torch.from_numpy(truth[rows.numpy()][:, cols.numpy()])
    assert torch.equal(dense_set.contains_matrix(rows, cols), expected)
    assert torch.equal(keyed_set.contains_matrix(rows, cols), expected)


def test_hard_negatives_score_higher_than_uniform_ones() -> None:
    data = _skewed()
    generator = torch.Generator().manual_seed(0)
    user_factors = torch.randn(data.n_users, 8, generator=generator)
    item_factors = torch.randn(data.n_items, 8, generator=generator)
    users = torch.from_numpy(np.repeat(np.arange(data.n_users), 20))
    items = torch.zeros_like(users)

    def mean_score(strategy: str) -> float:
        sampler = NegativeSampler(NegativeConfig(strategy=strategy, per_positive=3, hard_candidates=16), data)
        negatives = sampler.sample(users, items, generator, user_factors, item_factors).items
        scores = (item_factors[negatives] * user_factors[users].unsqueeze(1)).sum(2)
        return float(scores.mean())

    assert mean_score("hard") > mean_score("uniform") + 1.0


def test_hard_keeps_the_best_scored_candidates() -> None:
    candidates = torch.tensor([[0, 1, 2, 3], [3, 2, 1, 0]])
    item_factors = torch.tensor([[0.0], [3.0], [1.0], [2.0]])
    user_rows = torch.tensor([[1.0], [-1.0]])
    best = sampling.hardest(candidates, user_rows, item_factors, 2)
    assert best.tolist() == [[1, 3], [0, 2]]


def test_in_batch_returns_only_batch_items_and_masks_accidental_hits() -> None:
    data = _skewed()
    sampler = NegativeSampler(NegativeConfig(strategy="in_batch"), data)
    rows = np.random.default_rng(0).choice(data.nnz, 64, replace=False)
    users = torch.from_numpy(data.row_users()[rows])
    items = torch.from_numpy(data.indices[rows].astype(np.int64))
    negatives = sampler.sample(users, items, torch.Generator().manual_seed(0))
    assert negatives.items.shape == (64, 0)
    assert torch.equal(negatives.shared, items)
    truth = data.to_scipy().toarray() > 0
    expected_valid = ~truth[users.numpy()[:, None], items.numpy()[None, :]]
    assert np.array_equal(negatives.shared_valid.numpy(), expected_valid)
    assert not negatives.shared_valid.diagonal().any()  # a row's own positive is never its negative
    frequency = data.item_counts() / data.nnz
    np.testing.assert_allclose(sampler.probabilities().numpy(), frequency)
    np.testing.assert_allclose(sampler.log_q(items).numpy(), np.log(frequency[items.numpy()]), rtol=1e-6)
    assert sampler.uses_log_q


def test_mixed_combines_in_batch_and_uniform() -> None:
    data = _skewed()
    sampler = NegativeSampler(NegativeConfig(strategy="mixed", per_positive=3), data)
    users = torch.from_numpy(data.row_users()[:10])
    items = torch.from_numpy(data.indices[:10].astype(np.int64))
    negatives = sampler.sample(users, items, torch.Generator().manual_seed(0))
    assert negatives.items.shape == (10, 3)
    assert torch.equal(negatives.shared, items)
    q = sampler.probabilities(batch_size=10).numpy()
    expected = (10 * data.item_counts() / data.nnz + 3 / data.n_items) / 13
    np.testing.assert_allclose(q, expected)
    assert math.isclose(q.sum(), 1.0)


@pytest.mark.parametrize("strategy", sgd_config.STRATEGIES)
def test_probabilities_are_distributions_and_log_q_flags(strategy: str) -> None:
    data = _skewed()
    sampler = NegativeSampler(NegativeConfig(strategy=strategy), data)
    q = sampler.probabilities(batch_size=32).numpy()
    assert q.shape == (data.n_items,) and np.all(q >= 0) and math.isclose(q.sum(), 1.0)
    assert sampler.uses_log_q == (strategy in ("popularity", "in_batch", "mixed"))
    assert not NegativeSampler(NegativeConfig(strategy=strategy, logq_correction=False), data).uses_log_q


def test_none_draws_nothing() -> None:
    data = _skewed()
    negatives = NegativeSampler(NegativeConfig(strategy="none"), data).sample(
        torch.tensor([0, 1]), torch.tensor([0, 1]), torch.Generator()
    )
    assert negatives.items.shape == (2, 0) and negatives.shared.shape == (0,)


def test_popularity_falls_back_to_uniform_when_only_unseen_items_are_left() -> None:
    # User 0 has every item that has a count; items 4 and 5 are never seen, so popularity gives them 0.
    data = Interactions.from_coo([0, 0, 0, 0, 1], [0, 1, 2, 3, 0], n_users=2, n_items=6)
    sampler = NegativeSampler(NegativeConfig(strategy="popularity", per_positive=2), data)
    np.testing.assert_allclose(sampler.user_probabilities(0).numpy(), [0, 0, 0, 0, 0.5, 0.5])
    draws = _draw(sampler, 0, 4000)
    assert set(np.unique(draws).tolist()) == {4, 5}
    assert _chi_square(draws, sampler.user_probabilities(0).numpy()) > P_MIN
    # User 1 still samples by popularity: never the unseen items.
    assert set(np.unique(_draw(sampler, 1, 4000)).tolist()) == {1, 2, 3}


def test_seeded_draws_repeat() -> None:
    data = _skewed()
    sampler = NegativeSampler(NegativeConfig(strategy="popularity"), data)
    first, second = _draw(sampler, 3, 400, seed=7), _draw(sampler, 3, 400, seed=7)
    assert np.array_equal(first, second)
    assert not np.array_equal(first, _draw(sampler, 3, 400, seed=8))


def test_user_with_every_item_has_no_negative() -> None:
    data = Interactions.from_coo([0, 0, 0, 1], [0, 1, 2, 0], n_users=2, n_items=3)
    with pytest.raises(ValueError, match="user 0 has interacted with all 3 items"):
        NegativeSampler(NegativeConfig(strategy="uniform"), data)
    NegativeSampler(NegativeConfig(strategy="in_batch"), data)  # in-batch needs no free item


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"strategy": "random"}, "strategy must be one of"),
        ({"per_positive": 0}, "per_positive must be >= 1"),
        ({"popularity_power": -1.0}, "popularity_power"),
        ({"popularity_power": float("nan")}, "popularity_power"),
        ({"hard_candidates": 0}, "hard_candidates must be >= 1"),
        ({"strategy": "hard", "per_positive": 8, "hard_candidates": 4}, "must be >= per_positive"),
    ],
)
def test_negative_config_rejects_bad_values(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        NegativeConfig(**kwargs)  # type: ignore[arg-type]
