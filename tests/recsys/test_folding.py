"""Folding diagnostics: exact values on hand-built factors, then the phenomenon on planted data with WALS."""

from __future__ import annotations

import numpy as np
import pytest

import app.recsys.folding_diagnostics as folding
from app.recsys.folding_diagnostics import cross_group_leakage, folding_diagnostics
from app.recsys.interactions import Interactions
from app.recsys.split import split
from app.recsys.synth import PlantedConfig, planted_communities
from app.recsys.wals import WALSConfig, fit_wals

# Two groups of 4 items; in each group every user shares the group's first item (0 or 4), so each user
# reaches exactly its own group's items in two hops. TOP lists each user's two best unseen items.
ITEM_GROUPS = np.array([0, 0, 0, 0, 1, 1, 1, 1])
TRAIN = {0: [0, 1], 1: [0, 2], 2: [4, 5], 3: [4, 6], 4: [0, 3], 5: [4, 7]}
TOP = {0: [5, 2], 1: [1, 3], 2: [0, 1], 3: [7, 5], 4: [1, 6], 5: [6, 5]}
# Leaked (other-group) shares of those top-2 lists: 1/2, 0, 1, 0, 1/2, 0.
LEAKAGE_AT_2 = (0.5 + 0 + 1 + 0 + 0.5 + 0) / 6


def _hand_built(train: dict[int, list[int]], top: dict[int, list[int]]) -> tuple[np.ndarray, np.ndarray, Interactions]:
    """Return factors whose scores are: train items 20, top[u] 10 then 9, every other item 0."""
    n_users = len(train)
    scores = np.zeros((n_users, ITEM_GROUPS.shape[0]), dtype=np.float32)
    for user, items in train.items():
        scores[user, items] = 20.0
        scores[user, top[user]] = [10.0, 9.0]
    users = [user for user, items in train.items() for _ in items]
    items = [item for user_items in train.values() for item in user_items]
    interactions = Interactions.from_coo(users, items, n_users=n_users, n_items=ITEM_GROUPS.shape[0])
    # With identity item factors, user factors are the score rows themselves.
    return scores, np.eye(ITEM_GROUPS.shape[0], dtype=np.float32), interactions


def test_exact_leakage_and_unreachable() -> None:
    U, V, train = _hand_built(TRAIN, TOP)
    assert cross_group_leakage(U, V, train, None, ITEM_GROUPS, k=2) == pytest.approx(LEAKAGE_AT_2)
    diagnostics = folding_diagnostics(U, V, train, item_groups=ITEM_GROUPS, k=2)
    assert set(diagnostics) == {"leakage@2", "unreachable@2", "positive_auc", "score_gap", "users"}
    assert all(type(value) is float for value in diagnostics.values())
    assert diagnostics["leakage@2"] == pytest.approx(LEAKAGE_AT_2)
    # Separated communities: unreachable is exactly the leakage, without labels.
    assert diagnostics["unreachable@2"] == pytest.approx(LEAKAGE_AT_2)
    assert diagnostics["users"] == 6.0
    # Train positives (20) outscore every unobserved item (≤ 10).
    assert diagnostics["positive_auc"] == 1.0
    assert diagnostics["score_gap"] > 0.0


def test_bridge_user_is_reachable_but_not_leaked() -> None:
    # User 6 touched both groups (items 3 and 4): nothing it gets leaks, but item 1 is outside its reach
    # (no user with item 1 shares an item with it) while item 5 is reached through item 4.
    U, V, train = _hand_built({**TRAIN, 6: [3, 4]}, {**TOP, 6: [5, 1]})
    diagnostics = folding_diagnostics(U, V, train, item_groups=ITEM_GROUPS, k=2)
    assert diagnostics["leakage@2"] == pytest.approx(2 / 7)
    assert diagnostics["unreachable@2"] == pytest.approx(2.5 / 7)
    # Labelled as group 0, user 6's group-1 recommendation counts as leaked; its train noise is no excuse.
    user_groups = np.array([0, 0, 1, 1, 0, 1, 0])
    assert cross_group_leakage(U, V, train, user_groups, ITEM_GROUPS, k=2) == pytest.approx(2.5 / 7)


def test_unknown_item_group_is_never_leaked() -> None:
    U, V, train = _hand_built(TRAIN, TOP)
    groups = ITEM_GROUPS.copy()
    groups[5] = -1  # user 0's leaked recommendation; users 3 and 5 keep their other (own-group) item
    assert cross_group_leakage(U, V, train, None, groups, k=2) == pytest.approx((0 + 0 + 1 + 0 + 0.5 + 0) / 6)
    # A user group of -1 falls back to the groups the user touched.
    user_groups = np.array([-1, 0, 1, 1, 0, 1])
    assert cross_group_leakage(U, V, train, user_groups, ITEM_GROUPS, k=2) == pytest.approx(LEAKAGE_AT_2)
    # User 0 touched only unknown-group items, so it has no group to leak from and is skipped; of the other
    # five only user 4 leaks (item 6, one of two).
    groups = np.array([-1, -1, 0, 0, 1, 1, 1, 1])
    assert cross_group_leakage(U, V, train, None, groups, k=2) == pytest.approx(0.5 / 5)


def test_k_beyond_unseen_items() -> None:
    # Each user has 6 unseen items, 4 of them in the other group: R_u holds those 6, not k = 10 slots.
    U, V, train = _hand_built(TRAIN, TOP)
    diagnostics = folding_diagnostics(U, V, train, item_groups=ITEM_GROUPS, k=10)
    assert diagnostics["leakage@10"] == pytest.approx(4 / 6)
    assert diagnostics["unreachable@10"] == pytest.approx(4 / 6)


def test_positive_auc_and_score_gap() -> None:
    U, V, train = _hand_built(TRAIN, TOP)
    reversed_ = folding_diagnostics(-U, V, train)
    assert reversed_["positive_auc"] == 0.0 and reversed_["score_gap"] < 0.0
    flat = folding_diagnostics(np.zeros_like(U), V, train)
    # All scores tie: chance AUC, and no spread among negatives to measure a gap against.
    assert flat["positive_auc"] == 0.5 and flat["score_gap"] == 0.0
    assert "leakage@10" not in flat
    # Held-out positive item 2 of user 0 scores 9: it beats the 0-score negatives 3, 4, 6, 7 but loses to
    # item 5 (10), so P(win) = 4/5; the other users have no test items and are left out of the AUC.
    test = Interactions.from_coo([0], [2], n_users=6, n_items=8)
    held_out = folding_diagnostics(U, V, train, test=test)
    assert held_out["positive_auc"] == pytest.approx(0.8, abs=0.12)
    assert held_out["users"] == 6.0


def test_sampling_and_chunking(monkeypatch: pytest.MonkeyPatch) -> None:
    U, V, train = _hand_built(TRAIN, TOP)
    sampled = folding_diagnostics(U, V, train, item_groups=ITEM_GROUPS, k=2, max_users=3, seed=1)
    assert sampled["users"] == 3.0
    assert sampled == folding_diagnostics(U, V, train, item_groups=ITEM_GROUPS, k=2, max_users=3, seed=1)
    whole = folding_diagnostics(U, V, train, item_groups=ITEM_GROUPS, k=2)
    monkeypatch.setattr(folding, "_CHUNK_BYTES", 1)  # one user per chunk
    chunked = folding_diagnostics(U, V, train, item_groups=ITEM_GROUPS, k=2)
    for key in ("leakage@2", "unreachable@2", "positive_auc", "users"):
        assert chunked[key] == pytest.approx(whole[key])


def test_validation() -> None:
    U, V, train = _hand_built(TRAIN, TOP)
    with pytest.raises(ValueError, match="user rows"):
        folding_diagnostics(U[:3], V, train)
    with pytest.raises(ValueError, match="k must"):
        folding_diagnostics(U, V, train, k=0)
    with pytest.raises(ValueError, match="item_groups"):
        cross_group_leakage(U, V, train, None, ITEM_GROUPS[:5])
    with pytest.raises(ValueError, match="item_groups"):
        cross_group_leakage(U, V, train, None, ITEM_GROUPS - 2)
    with pytest.raises(ValueError, match="user_groups"):
        cross_group_leakage(U, V, train, np.zeros(6, dtype=float), ITEM_GROUPS)
    with pytest.raises(ValueError, match="same shape"):
        folding_diagnostics(U, V, train, test=Interactions.from_coo([0], [0], n_users=6, n_items=9))
    with pytest.raises(ValueError, match="max_users"):
        folding_diagnostics(U, V, train, max_users=0)


def _fit(train: Interactions, w0: float, dim: int = 16) -> tuple[np.ndarray, np.ndarray]:
    # Pinned (not the library defaults, which may move): the setting the thresholds were measured with.
    config = WALSConfig(
        dim=dim,
        iterations=10,
        l2=100.0,
        l2_scaling="none",
        unobserved_weight=w0,
        confidence="linear",
        alpha=10.0,
        device="cpu",
    )
    model = fit_wals(train, config)
    return model.user_factors, model.item_factors


def test_negatives_prevent_folding() -> None:
    # Two communities joined only by 5% noise interactions: trained on positives alone (w0 = 0) the weak links
    # pull the groups' embeddings together and each is served the other's items; w0 > 0 keeps them apart.
    data = planted_communities(PlantedConfig(noise=0.05))
    train, test = split(data.interactions, "random", 0.2, seed=0)
    folded = folding_diagnostics(*_fit(train, 0.0), train, test, data.item_groups)
    separated = folding_diagnostics(*_fit(train, 0.1), train, test, data.item_groups)
    assert folded["leakage@10"] > 0.2
    assert separated["leakage@10"] <= 0.05
    assert separated["leakage@10"] * 5 <= folded["leakage@10"]
    assert separated["positive_auc"] > folded["positive_auc"]
    assert separated["score_gap"] > folded["score_gap"]


@pytest.mark.parametrize(
    ("config", "dim", "min_leakage"),
    [
        (PlantedConfig(), 16, 0.0),
        # 8 communities in 4 dimensions cannot all be kept apart, so some leakage is there to be matched.
        (
            PlantedConfig(n_groups=8, users_per_group=125, items_per_group=50, interactions_per_user=15),
            4,
            0.1,
        ),
    ],
)
def test_unreachable_matches_leakage_without_noise(config: PlantedConfig, dim: int, min_leakage: float) -> None:
    data = planted_communities(config)
    train, test = split(data.interactions, "random", 0.2, seed=0)
    diagnostics = folding_diagnostics(*_fit(train, 0.0, dim), train, test, data.item_groups)
    assert diagnostics["leakage@10"] >= min_leakage
    assert diagnostics["unreachable@10"] == pytest.approx(diagnostics["leakage@10"], abs=0.02)
