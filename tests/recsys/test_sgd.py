"""SGD matrix factorisation: every allowed combination trains, impossible ones explain themselves,
the pure-SGD engine equals one-by-one updates, runs are seeded, and negatives unfold the communities."""

from __future__ import annotations

import itertools
from dataclasses import asdict, replace
from typing import Any

import numpy as np
import pytest
import torch

from app.recsys.base import EmbeddingModel
from app.recsys.interactions import Interactions
from app.recsys.metrics import topk_from_scores
from app.recsys.sampling import Negatives, NegativeSampler
from app.recsys.sgd import (
    _loss_and_grads,
    _numpy_group,
    _numpy_run,
    _NumpyOptimizer,
    _schedule,
    _torch_update,
    _TorchOptimizer,
    fit_sgd,
)
from app.recsys.sgd_config import (
    LOSSES,
    OPTIMIZERS,
    STRATEGIES,
    VARIANTS,
    NegativeConfig,
    SGDConfig,
    check_combination,
)


def _tiny(seed: int = 0, n_users: int = 12, n_items: int = 10, nnz: int = 50) -> Interactions:
    rng = np.random.default_rng(seed)
    users, items = rng.integers(0, n_users, nnz), rng.integers(0, n_items, nnz)
    data = Interactions.from_coo(users, items, n_users=n_users, n_items=n_items)
    assert data.user_counts().max() < n_items  # every user has a free item to draw as a negative
    return data


def _config(**kwargs: Any) -> SGDConfig:
    negatives = kwargs.pop("negatives", {})
    base: dict[str, Any] = {"dim": 4, "epochs": 2, "batch_size": 8, "device": "cpu"}
    negative_config = NegativeConfig(**({"per_positive": 2, "hard_candidates": 4} | negatives))
    return SGDConfig(**(base | kwargs), negatives=negative_config)


def _allowed() -> list[tuple[str, str, str, str]]:
    combos = []
    for variant, optimizer, loss, strategy in itertools.product(VARIANTS, OPTIMIZERS, LOSSES, STRATEGIES):
        try:
            _config(variant=variant, optimizer=optimizer, loss=loss, negatives={"strategy": strategy})
        except ValueError:
            continue
        combos.append((variant, optimizer, loss, strategy))
    return combos


ALLOWED = _allowed()


def test_the_allowed_set_is_what_the_rules_say() -> None:
    # 3 optimizers × (2 mini-batch variants × (4 losses × 5 strategies + 2 losses × none)
    #                 + sgd × (4 losses × 3 strategies + 2 losses × none))
    assert len(ALLOWED) == 3 * (2 * (4 * 5 + 2) + (4 * 3 + 2))


@pytest.mark.parametrize(("variant", "optimizer", "loss", "strategy"), ALLOWED)
def test_every_allowed_combination_trains(variant: str, optimizer: str, loss: str, strategy: str) -> None:
    data = _tiny()
    config = _config(variant=variant, optimizer=optimizer, loss=loss, negatives={"strategy": strategy})
    model = fit_sgd(data, config)
    assert isinstance(model, EmbeddingModel) and model.algorithm == "sgd"
    assert model.user_factors.shape == (12, 4) and model.item_factors.shape == (10, 4)
    assert [h["step"] for h in model.history] == [1, 2]
    assert all(np.isfinite(h["loss"]) and h["loss"] > 0 for h in model.history)
    assert np.isfinite(model.user_factors).all() and np.isfinite(model.item_factors).all()


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"variant": "sgd", "negatives": {"strategy": "in_batch"}}, "updates one example at a time"),
        ({"variant": "sgd", "negatives": {"strategy": "mixed"}}, "updates one example at a time"),
        ({"batch_size": 1, "negatives": {"strategy": "in_batch"}}, "batch_size=1 leaves none"),
        (
            {"variant": "minibatch", "batch_size": 1, "negatives": {"strategy": "mixed"}},
            "batch_size=1 leaves",
        ),
        ({"loss": "bpr", "negatives": {"strategy": "none"}}, "compares each positive with negatives"),
        ({"loss": "softmax", "negatives": {"strategy": "none"}}, "compares each positive with negatives"),
        ({"variant": "sgd", "device": "cuda"}, "runs in numpy on the CPU"),
    ],
)
def test_impossible_combinations_say_why(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        _config(**kwargs)


def test_check_combination_is_callable_on_its_own() -> None:
    config = _config(loss="bce", negatives={"strategy": "none"})
    check_combination(config)  # positives-only bce is allowed: the folding demonstration
    bad = replace(config, loss="bpr", negatives=NegativeConfig(strategy="uniform"))
    object.__setattr__(bad, "negatives", NegativeConfig(strategy="none"))  # bypass __post_init__
    with pytest.raises(ValueError, match="choose a negative strategy"):
        check_combination(bad)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"dim": 0}, "dim must be >= 1"),
        ({"variant": "batch"}, "variant must be one of"),
        ({"batch_size": 0}, "batch_size must be >= 1"),
        ({"epochs": 0}, "epochs must be >= 1"),
        ({"learning_rate": 0.0}, "learning_rate"),
        ({"learning_rate": float("inf")}, "learning_rate"),
        ({"optimizer": "rmsprop"}, "optimizer must be one of"),
        ({"loss": "hinge"}, "loss must be one of"),
        ({"l2": -1.0}, "l2 must be"),
        ({"init_scale": 0.0}, "init_scale must be > 0"),
        ({"device": "tpu"}, "device must be"),
    ],
)
def test_config_rejects_bad_values(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        _config(**kwargs)


def test_config_round_trips_through_asdict() -> None:
    config = _config(negatives={"strategy": "mixed", "per_positive": 3})
    assert SGDConfig(**asdict(config)) == config
    one_epoch = replace(config, epochs=1)
    assert fit_sgd(_tiny(), one_epoch).config == asdict(one_epoch)


@pytest.mark.parametrize("variant", ["sgd", "minibatch_sgd"])
def test_divergence_is_reported(variant: str) -> None:
    config = _config(variant=variant, optimizer="sgd", loss="mse", learning_rate=1e6, negatives={"strategy": "none"})
    with pytest.raises(ValueError, match="training diverged.*lower learning_rate"):
        fit_sgd(_tiny(), config)


def test_data_problems_are_reported() -> None:
    with pytest.raises(ValueError, match="no interactions"):
        fit_sgd(Interactions.from_coo([], [], n_users=3, n_items=3), _config())
    full = Interactions.from_coo([0, 0, 1], [0, 1, 0], n_users=2, n_items=2)
    with pytest.raises(ValueError, match="user 0 has interacted with all 2 items"):
        fit_sgd(full, _config())
    fit_sgd(full, _config(negatives={"strategy": "in_batch"}))


@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("strategy", ["hard", "popularity"])
def test_seeded_runs_are_identical(variant: str, strategy: str) -> None:
    data = _tiny()
    config = _config(variant=variant, loss="softmax", optimizer="adam", negatives={"strategy": strategy})
    first, second = fit_sgd(data, config), fit_sgd(data, config)
    assert np.array_equal(first.user_factors, second.user_factors)
    assert np.array_equal(first.item_factors, second.item_factors)
    assert [h["loss"] for h in first.history] == [h["loss"] for h in second.history]
    other = fit_sgd(data, replace(config, seed=1))
    assert not np.array_equal(first.item_factors, other.item_factors)


def test_in_batch_runs_are_identical() -> None:
    data = _tiny()
    config = _config(loss="softmax", negatives={"strategy": "mixed"})
    assert np.array_equal(fit_sgd(data, config).item_factors, fit_sgd(data, config).item_factors)


@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("loss", LOSSES)
def test_loss_decreases_when_learnable(variant: str, loss: str) -> None:
    data = _tiny(n_users=30, n_items=20, nnz=150)
    config = _config(
        variant=variant,
        loss=loss,
        optimizer="adam",
        learning_rate=0.02,
        epochs=12,
        dim=8,
        l2=0.0,
        negatives={"strategy": "uniform"},
    )
    losses = [h["loss"] for h in fit_sgd(data, config).history]
    assert losses[-1] < 0.7 * losses[0]
    assert losses[-1] < losses[len(losses) // 2] < losses[0]


# ----------------------------------------------------------------------------------------------- engines


@pytest.mark.parametrize("masked", [True, False])
@pytest.mark.parametrize("loss", LOSSES)
def test_hand_written_gradients_match_autograd(loss: str, masked: bool) -> None:
    generator = torch.Generator().manual_seed(0)
    s_pos = torch.randn(6, generator=generator, dtype=torch.float64, requires_grad=True)
    s_neg = torch.randn(6, 5, generator=generator, dtype=torch.float64, requires_grad=True)
    valid = torch.rand(6, 5, generator=generator) > 0.3
    valid[0] = False  # a row with no valid negative
    lq_pos = torch.randn(6, generator=generator, dtype=torch.float64)
    lq_neg = torch.randn(6, 5, generator=generator, dtype=torch.float64)
    losses, g_pos, g_neg = _loss_and_grads(loss, s_pos, s_neg, valid if masked else None, lq_pos, lq_neg)
    d_pos, d_neg = torch.autograd.grad(losses.sum(), [s_pos, s_neg])
    torch.testing.assert_close(g_pos, d_pos)
    torch.testing.assert_close(g_neg, d_neg)
    if masked:
        assert torch.all(g_neg[~valid] == 0)
        # Masked entries are absent: the loss equals the one over the valid negatives of each row alone.
        for b in range(1, 6):
            keep = valid[b]
            alone, _, _ = _loss_and_grads(
                loss,
                s_pos[b : b + 1],
                s_neg[b : b + 1, keep],
                None,
                lq_pos[b : b + 1],
                lq_neg[b : b + 1, keep],
            )
            torch.testing.assert_close(alone[0], losses[b])


def _examples(data: Interactions, k: int, seed: int = 0) -> np.ndarray:
    """Rows [user row, positive, k negatives] for every interaction in a random order (items first)."""
    sampler = NegativeSampler(NegativeConfig(strategy="uniform", per_positive=k), data)
    generator = torch.Generator().manual_seed(seed)
    order = torch.randperm(data.nnz, generator=generator).numpy()
    users = data.row_users()[order]
    items = data.indices[order].astype(np.int64)
    negatives = sampler.sample(torch.from_numpy(users), torch.from_numpy(items), generator).items.numpy()
    return np.concatenate([(users + data.n_items)[:, None], items[:, None], negatives], axis=1)


def _table(data: Interactions, dim: int = 6) -> np.ndarray:
    rng = np.random.default_rng(1)
    return (rng.standard_normal((data.n_items + data.n_users, dim)) * 0.3).astype(np.float32)


def test_schedule_groups_are_row_disjoint_and_keep_each_rows_order() -> None:
    rows = _examples(_tiny(n_users=20, n_items=15, nnz=120), k=3)
    order, bounds = _schedule(rows)
    assert sorted(order.tolist()) == list(range(rows.shape[0]))
    position = np.empty_like(order)
    position[order] = np.arange(order.shape[0])
    for a, b in zip(bounds[:-1], bounds[1:], strict=True):
        group = [set(rows[e].tolist()) for e in order[a:b]]
        assert sum(len(g) for g in group) == len(set().union(*group))
    for r in np.unique(rows):
        touching = np.flatnonzero((rows == r).any(1))
        assert np.all(np.diff(position[touching]) > 0)


@pytest.mark.parametrize("optimizer", OPTIMIZERS)
@pytest.mark.parametrize("loss", LOSSES)
def test_pure_sgd_engine_equals_one_example_at_a_time(optimizer: str, loss: str) -> None:
    data = _tiny(n_users=20, n_items=15, nnz=120)
    rows = _examples(data, k=3)  # with 15 items some examples draw a negative twice
    config = _config(variant="sgd", loss=loss, optimizer=optimizer, l2=0.01)
    log_q = np.log(np.linspace(0.5, 1.5, data.n_items) / 15).astype(np.float32) if loss == "softmax" else None
    one, grouped = _table(data), _table(data)
    opt_one, opt_grouped = _NumpyOptimizer(optimizer, 0.1, one), _NumpyOptimizer(optimizer, 0.1, grouped)
    total_one = 0.0
    for e in range(len(rows)):
        total_one += _numpy_group(one, opt_one, rows[e : e + 1], None, config, log_q, True)
    total_grouped = _numpy_run(grouped, opt_grouped, rows, None, config, log_q)
    np.testing.assert_allclose(grouped, one, rtol=1e-5, atol=1e-6)
    assert total_grouped == pytest.approx(total_one, rel=1e-5)


def test_pure_sgd_engine_equals_one_example_at_a_time_for_hard_negatives() -> None:
    data = _tiny(n_users=20, n_items=15, nnz=120)
    rows = _examples(data, k=6)
    pairs, candidates = rows[:, :2], rows[:, 2:]
    negatives = {"strategy": "hard", "per_positive": 2}
    config = _config(variant="sgd", loss="bpr", optimizer="adagrad", negatives=negatives)
    one, grouped = _table(data), _table(data)
    opt_one, opt_grouped = _NumpyOptimizer("adagrad", 0.1, one), _NumpyOptimizer("adagrad", 0.1, grouped)
    for e in range(len(rows)):
        _numpy_group(one, opt_one, pairs[e : e + 1], candidates[e : e + 1], config, None, True)
    _numpy_run(grouped, opt_grouped, pairs, candidates, config, None)
    np.testing.assert_allclose(grouped, one, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("optimizer", OPTIMIZERS)
@pytest.mark.parametrize("loss", LOSSES)
def test_numpy_and_torch_engines_take_the_same_steps(optimizer: str, loss: str) -> None:
    data = _tiny(n_users=20, n_items=15, nnz=60)
    rows = _examples(data, k=3)
    config = _config(loss=loss, optimizer=optimizer, l2=0.01)
    table_np = _table(data)
    table_t = torch.from_numpy(table_np.copy())
    opt_np, opt_t = _NumpyOptimizer(optimizer, 0.1, table_np), _TorchOptimizer(optimizer, 0.1, table_t)
    total_np = _numpy_run(table_np, opt_np, rows, None, config, None)
    total_t = 0.0
    no_shared = torch.zeros(0, dtype=torch.int64), torch.zeros(1, 0, dtype=torch.bool)
    for e in range(len(rows)):
        example = torch.from_numpy(rows[e : e + 1])
        negatives = Negatives(example[:, 2:], *no_shared)
        user, item = example[:, 0] - data.n_items, example[:, 1]
        total_t += float(_torch_update(table_t, opt_t, data.n_items, user, item, negatives, config, None))
    np.testing.assert_allclose(table_t.numpy(), table_np, rtol=1e-4, atol=1e-5)
    assert total_t == pytest.approx(total_np, rel=1e-4)


def test_minibatch_step_is_the_sum_of_example_gradients() -> None:
    # With plain sgd one batch update equals the sum of the per-example steps taken at the same parameters.
    data = _tiny(n_users=20, n_items=15, nnz=60)
    rows = torch.from_numpy(_examples(data, k=2))[:8]
    config = _config(loss="bce", optimizer="sgd", l2=0.01)
    start = torch.from_numpy(_table(data))
    empty = torch.zeros(0, dtype=torch.int64)

    def step(table: torch.Tensor, batch: torch.Tensor) -> None:
        negatives = Negatives(batch[:, 2:], empty, torch.zeros(batch.shape[0], 0, dtype=torch.bool))
        _torch_update(
            table,
            _TorchOptimizer("sgd", 0.1, table),
            data.n_items,
            batch[:, 0] - data.n_items,
            batch[:, 1],
            negatives,
            config,
            None,
        )

    together = start.clone()
    step(together, rows)
    summed = start.clone()
    for e in range(rows.shape[0]):
        alone = start.clone()
        step(alone, rows[e : e + 1])
        summed += alone - start
    torch.testing.assert_close(together, summed)


# ----------------------------------------------------------------------------------------------- learning


def _communities(seed: int = 0) -> tuple[Interactions, np.ndarray, np.ndarray]:
    """200 users and 100 items in two planted communities; each user has 10 items of its own community."""
    rng = np.random.default_rng(seed)
    n_users, n_items, per_user = 200, 100, 10
    user_group = np.arange(n_users) % 2
    item_group = np.arange(n_items) % 2
    users, items = [], []
    for u in range(n_users):
        own = np.flatnonzero(item_group == user_group[u])
        users.extend([u] * per_user)
        items.extend(rng.choice(own, per_user, replace=False).tolist())
    return Interactions.from_coo(users, items, n_users=n_users, n_items=n_items), user_group, item_group


def _cross_share(model: EmbeddingModel, data: Interactions, user_group: np.ndarray, item_group: np.ndarray) -> float:
    """Share of the users' top-10 unseen recommendations that come from the other community."""
    scores = model.user_factors @ model.item_factors.T
    scores[data.row_users(), data.indices] = -np.inf
    top = topk_from_scores(scores, 10)
    return float((item_group[top] != user_group[:, None]).mean())


@pytest.mark.parametrize("variant", ["sgd", "minibatch_sgd"])
def test_negatives_unfold_the_communities_and_positives_only_training_folds_them(variant: str) -> None:
    # The two communities share no user or item, so without negatives nothing in the loss sees how one
    # community lies relative to the other: their placement is left to the random start, and some seeds
    # fold them together. Uniform negatives push every cross-community score down, on every seed.
    data, user_group, item_group = _communities()
    base = _config(
        variant=variant,
        dim=6,
        epochs=20,
        batch_size=32,
        optimizer="sgd",
        learning_rate=0.05,
        loss="bce",
        l2=1e-4,
    )
    unfolded, folded = [], []
    for seed in range(8):
        config = replace(base, seed=seed)
        model = fit_sgd(data, replace(config, negatives=NegativeConfig(strategy="uniform", per_positive=4)))
        unfolded.append(_cross_share(model, data, user_group, item_group))
        model = fit_sgd(data, replace(config, negatives=NegativeConfig(strategy="none")))
        folded.append(_cross_share(model, data, user_group, item_group))
    assert max(unfolded) <= 0.05
    assert np.mean(folded) >= 5 * max(float(np.mean(unfolded)), 0.005)
    assert max(folded) >= 0.15


def test_fit_runs_torch_single_threaded_and_restores_the_thread_count(monkeypatch):
    import app.recsys.sgd as sgd_module

    seen = []
    real = torch.Tensor.sum

    def spy(self, *args, **kwargs):  # any tensor reduction inside the fit reports the thread count
        seen.append(torch.get_num_threads())
        return real(self, *args, **kwargs)

    previous = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        monkeypatch.setattr(sgd_module, "engine_for", lambda config: "torch")
        monkeypatch.setattr(torch.Tensor, "sum", spy)
        fit_sgd(_tiny(), SGDConfig(dim=4, epochs=1, batch_size=8))
        monkeypatch.undo()
        assert seen and set(seen) == {1}
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(previous)


def test_the_compiled_path_gets_the_threads_torch_had(monkeypatch):
    import app.recsys.sgd as sgd_module

    given = []
    real = sgd_module._Compiled.__init__

    def spy(self, *args, **kwargs):
        given.append(args[-1])
        real(self, *args, **kwargs)

    previous = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        monkeypatch.setattr(sgd_module._Compiled, "__init__", spy)
        fit_sgd(_tiny(), SGDConfig(dim=4, epochs=1, batch_size=8))
        assert given == [2] and torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(previous)
