"""Planted-community generator: shapes, group structure, noise rate, popularity skew, determinism, csv."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest

from app.recsys.synth import PlantedConfig, PlantedData, planted_communities, write_planted_csv


def _cross_group(data: PlantedData) -> np.ndarray:
    """Return, per interaction, whether the item's group differs from the user's."""
    inter = data.interactions
    return data.user_groups[inter.row_users()] != data.item_groups[inter.indices]


def test_shapes_and_counts() -> None:
    config = PlantedConfig(n_groups=3, users_per_group=400, items_per_group=150, interactions_per_user=12)
    data = planted_communities(config)
    inter = data.interactions
    assert (inter.n_users, inter.n_items) == (1200, 450)
    assert data.user_groups.shape == (1200,) and data.item_groups.shape == (450,)
    assert np.array_equal(np.bincount(data.user_groups), [400] * 3)
    assert np.array_equal(np.bincount(data.item_groups), [150] * 3)
    counts = inter.user_counts()
    assert counts.min() >= 2
    assert counts.std() > 1.0  # per-user counts vary
    assert inter.user_counts().mean() == pytest.approx(12, rel=0.05)
    # Items are distinct per user, so no duplicate was merged into a larger weight.
    assert np.all(inter.weights == 1.0)


def test_groups_are_disjoint_without_noise() -> None:
    data = planted_communities(PlantedConfig(n_groups=4, users_per_group=200, items_per_group=80))
    assert not _cross_group(data).any()


@pytest.mark.parametrize(("n_groups", "noise"), [(2, 0.05), (3, 0.1), (5, 0.3)])
def test_noise_fraction(n_groups: int, noise: float) -> None:
    config = PlantedConfig(n_groups=n_groups, users_per_group=1000, items_per_group=200, noise=noise, seed=3)
    data = planted_communities(config)
    cross = _cross_group(data)
    # About 20k interactions per group: the binomial standard error is well under 0.005.
    assert cross.mean() == pytest.approx(noise, abs=0.015)
    # Noise is spread evenly over the other groups.
    inter = data.interactions
    offsets = (data.item_groups[inter.indices] - data.user_groups[inter.row_users()])[cross] % n_groups
    shares = np.bincount(offsets, minlength=n_groups)[1:] / cross.sum()
    assert np.allclose(shares, 1.0 / (n_groups - 1), atol=0.05)


def test_power_law_popularity() -> None:
    data = planted_communities(PlantedConfig(n_groups=2, users_per_group=500, items_per_group=200))
    counts = data.interactions.item_counts()
    for group in range(2):
        in_group = counts[data.item_groups == group]
        assert in_group.max() >= 10 * np.median(in_group)
    flat = planted_communities(PlantedConfig(popularity_exponent=0.0)).interactions.item_counts()
    assert flat.max() < 2 * np.median(flat)


def test_steep_popularity_still_fills_every_user() -> None:
    # Rare items are needed to reach 150 distinct of 200, which the generator's fallback path draws.
    config = PlantedConfig(
        n_groups=2,
        users_per_group=100,
        items_per_group=200,
        interactions_per_user=150,
        popularity_exponent=3.0,
    )
    inter = planted_communities(config).interactions
    assert inter.user_counts().mean() == pytest.approx(150, rel=0.03)
    assert np.all(inter.weights == 1.0)


def test_seeded_determinism() -> None:
    config = PlantedConfig(noise=0.1, seed=7)
    first, second = planted_communities(config), planted_communities(config)
    assert np.array_equal(first.interactions.indptr, second.interactions.indptr)
    assert np.array_equal(first.interactions.indices, second.interactions.indices)
    other = planted_communities(PlantedConfig(noise=0.1, seed=8)).interactions
    assert not (
        np.array_equal(other.indptr, first.interactions.indptr)
        and np.array_equal(other.indices, first.interactions.indices)
    )


def test_csv_round_trip(tmp_path: Path) -> None:
    data = planted_communities(PlantedConfig(n_groups=3, users_per_group=50, items_per_group=40, noise=0.1))
    path = tmp_path / "planted.csv"
    write_planted_csv(data, path)
    with open(path, newline="") as handle:
        reader = csv.DictReader(handle)
        assert reader.fieldnames == ["user", "item", "weight", "user_group", "item_group"]
        rows = list(reader)
    inter = data.interactions
    assert len(rows) == inter.nnz
    users = np.array([int(row["user"].removeprefix("u")) for row in rows])
    items = np.array([int(row["item"].removeprefix("i")) for row in rows])
    assert all(row["user"].startswith("u") and row["item"].startswith("i") for row in rows)
    assert np.array_equal(users, inter.row_users()) and np.array_equal(items, inter.indices)
    assert np.array_equal([float(row["weight"]) for row in rows], inter.weights)
    assert np.array_equal([int(row["user_group"]) for row in rows], data.user_groups[users])
    assert np.array_equal([int(row["item_group"]) for row in rows], data.item_groups[items])


def test_csv_is_an_uploadable_file(tmp_path: Path) -> None:
    from app.ingestion.parse import parse_file

    data = planted_communities(PlantedConfig(users_per_group=30, items_per_group=20, interactions_per_user=5))
    path = tmp_path / "planted.csv"
    write_planted_csv(data, path)
    parsed = parse_file(path)
    assert len(parsed.users) == data.interactions.nnz
    assert len(parsed.user_ids) == data.interactions.n_users


@pytest.mark.parametrize(
    "overrides",
    [
        {"n_groups": 0},
        {"users_per_group": 0},
        {"items_per_group": 1},
        {"interactions_per_user": 1},
        {"interactions_per_user": 300, "items_per_group": 200},
        {"popularity_exponent": -0.5},
        {"noise": -0.1},
        {"noise": 1.0},
        {"noise": 0.1, "n_groups": 1},
    ],
)
def test_config_validation(overrides: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        PlantedConfig(**overrides)  # type: ignore[arg-type]
