"""λ chosen from the data: the shrinkage it is built on, the cap, and the collapse it prevents."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

from app.recsys import wals_defaults, wals_kernel
from app.recsys.interactions import Interactions
from app.recsys.metrics import popularity_metrics, ranking_metrics
from app.recsys.split import split
from app.recsys.synth import PlantedConfig, planted_communities
from app.recsys.wals import WALSConfig, fit_wals
from app.recsys.wals_defaults import TARGET_SHRINKAGE, capped_l2, interaction_shrinkage


def test_transpose_kernel_matches_scipy() -> None:
    rng = np.random.default_rng(0)
    matrix = sp.random(300, 120, density=0.05, format="csr", random_state=rng, dtype=np.float32)
    matrix.sort_indices()
    t_indptr, t_indices, t_values = wals_kernel.transpose(
        matrix.indptr.astype(np.int64), matrix.indices.astype(np.int32), matrix.data, 120
    )
    expected = matrix.T.tocsr()
    expected.sort_indices()
    np.testing.assert_array_equal(t_indptr, expected.indptr)
    np.testing.assert_array_equal(t_indices, expected.indices)
    np.testing.assert_array_equal(t_values, expected.data)


def test_shrinkage_is_what_wals_takes_from_a_dense_block() -> None:
    """The module's rank-1 argument: on a block of U × I ones, WALS predicts 1 − s."""
    n_users, n_items, l2 = 40, 25, 30.0
    users, items = np.meshgrid(np.arange(n_users), np.arange(n_items), indexing="ij")
    data = Interactions.from_coo(users.ravel(), items.ravel(), n_users=n_users, n_items=n_items)
    config = WALSConfig(
        dim=1,
        iterations=60,
        l2=l2,
        l2_scaling="none",
        unobserved_weight=0.0,
        confidence="linear",
        alpha=1.0,
        solver="cholesky",
    )
    s = interaction_shrinkage(data, l2, 0.0, "none", 1.0, "linear", 1.0, 1.0)
    # c = 1 + α·r = 2 per entry, so s = λ / (2·√(U·I)).
    assert s == pytest.approx(l2 / (2 * np.sqrt(n_users * n_items)))
    model = fit_wals(data, config)
    scores = model.user_factors @ model.item_factors.T
    np.testing.assert_allclose(scores, 1.0 - s, rtol=1e-3)


def test_shrinkage_grows_linearly_with_l2_and_the_cap_meets_the_target() -> None:
    data = planted_communities(PlantedConfig(n_groups=4, users_per_group=50, items_per_group=60, seed=1)).interactions
    args = ("frequency", 1.0, "log", 10.0, 1.0)
    low = interaction_shrinkage(data, 0.01, 2.0, *args)
    high = interaction_shrinkage(data, 0.04, 2.0, *args)
    assert high == pytest.approx(4 * low)
    capped = capped_l2(0.04, high, target=low)
    assert interaction_shrinkage(data, capped, 2.0, *args) == pytest.approx(low)
    assert capped_l2(0.01, TARGET_SHRINKAGE / 2) == 0.01  # under the target: λ stays


def test_the_cap_saves_a_large_sparse_catalogue_from_collapse() -> None:
    """λ 0.01, w0 2 with frequency scaling over-shrinks when w0·n_items ≫ a row's mass (s ≈ 1.9 here;
    at 200k × 50k it was 2.6 and recall@20 fell to 0.010); the λ chosen from the counts keeps the signal."""
    planted = planted_communities(
        PlantedConfig(n_groups=50, users_per_group=100, items_per_group=200, interactions_per_user=10, noise=0.1)
    )
    train, test = split(planted.interactions, "random", 0.2, seed=0)
    args = ("frequency", 1.0, "log", 10.0, 1.0)
    shrinkage = interaction_shrinkage(train, 0.01, 2.0, *args)
    assert shrinkage > 1.0  # the fixed λ would take more than all of the signal
    recall = {}
    for name, l2 in (("fixed", 0.01), ("from data", capped_l2(0.01, shrinkage))):
        config = WALSConfig(dim=16, iterations=8, l2=l2, l2_scaling="frequency", unobserved_weight=2.0)
        model = fit_wals(train, config)
        recall[name] = ranking_metrics(model.user_factors, model.item_factors, train, test, (20,))["recall@20"]
    baseline = popularity_metrics(train, test, (20,))["recall@20"]
    # Measured: fixed 0.11, from the data 0.35, popularity 0.035.
    assert recall["from data"] > 2 * recall["fixed"]
    assert recall["from data"] > baseline + 0.2


def test_the_default_spec_takes_its_l2_from_the_data_and_a_given_l2_wins() -> None:
    from app.services.algorithms import wals_config
    from app.spec import TrainingSpec

    sparse = planted_communities(
        PlantedConfig(n_groups=50, users_per_group=100, items_per_group=200, interactions_per_user=10)
    ).interactions
    dense = planted_communities(PlantedConfig(n_groups=2, users_per_group=100, items_per_group=50)).interactions
    default = TrainingSpec(dataset_id="d")
    chosen = wals_config(default, sparse)
    assert chosen.l2_scaling == "frequency" and chosen.unobserved_weight == 2.0
    args = (chosen.unobserved_weight, "frequency", 1.0, "log", chosen.alpha, chosen.eps)
    assert chosen.l2 < 0.01
    assert interaction_shrinkage(sparse, chosen.l2, *args) == pytest.approx(TARGET_SHRINKAGE)
    assert wals_config(default, dense).l2 == 0.01  # under the target already
    assert wals_config(TrainingSpec(dataset_id="d", wals={"l2": 0.05}), sparse).l2 == 0.05


def test_the_core_and_the_service_default_to_the_recommended_settings() -> None:
    from app.services.algorithms import default_steps, wals_config
    from app.spec import TrainingSpec, WALSSpec

    dense = planted_communities(PlantedConfig(n_groups=2, users_per_group=100, items_per_group=50)).interactions
    core = WALSConfig()
    assert (core.l2_scaling, core.l2, core.unobserved_weight) == (
        wals_defaults.L2_SCALING,
        wals_defaults.L2[wals_defaults.L2_SCALING],
        wals_defaults.UNOBSERVED_WEIGHT[wals_defaults.L2_SCALING],
    )
    assert (core.iterations, core.confidence, core.alpha, core.eps) == (
        wals_defaults.ITERATIONS,
        wals_defaults.CONFIDENCE,
        wals_defaults.ALPHA,
        wals_defaults.EPS,
    )
    assert (core.solver, core.cg_steps, core.l2_exponent) == (
        wals_defaults.SOLVER,
        wals_defaults.CG_STEPS,
        wals_defaults.L2_EXPONENT,
    )
    # A spec that names nothing trains the core's default config where the data leave λ as it is.
    assert wals_config(TrainingSpec(dataset_id="d"), dense) == core
    assert wals_config(TrainingSpec(dataset_id="d")) == core
    assert default_steps("wals") == core.iterations
    # One λ for every row: the recommended pair for that scaling, not the frequency-scaled λ.
    unscaled = wals_config(TrainingSpec(dataset_id="d", wals={"l2_scaling": "none"}))
    assert (unscaled.l2, unscaled.unobserved_weight) == (
        wals_defaults.L2["none"],
        wals_defaults.UNOBSERVED_WEIGHT["none"],
    )
    assert unscaled.l2 > 1000 * core.l2
    # The spec's own defaults are the core's.
    spec = WALSSpec()
    assert (spec.solver, spec.cg_steps, spec.l2_exponent, spec.confidence.eps) == (
        core.solver,
        core.cg_steps,
        core.l2_exponent,
        core.eps,
    )
