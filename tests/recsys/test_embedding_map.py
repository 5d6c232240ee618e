"""The 2-D embedding map: PCA with known answers, seeded sampling, colours, and folding made visible."""

from __future__ import annotations

import numpy as np
import pytest

from app.recsys.embedding_map import (
    EmbeddingMapConfig,
    embedding_map,
    group_separation,
    pca_2d,
    popularity_buckets,
)
from app.recsys.synth import PlantedConfig, planted_communities
from app.recsys.wals import WALSConfig, fit_wals


def test_pca_of_points_on_a_line_puts_all_variance_on_the_first_axis():
    t = np.linspace(-1.0, 1.0, 11)
    direction = np.array([2.0, -6.0, 3.0]) / 7.0
    points = np.array([5.0, -1.0, 0.5]) + t[:, None] * direction  # offset: PCA must centre
    xy, ratio = pca_2d(points)
    assert ratio[0] == pytest.approx(1.0) and ratio[1] == pytest.approx(0.0, abs=1e-12)
    # Coordinates are the signed distances along the line (sign fixed: largest loading positive).
    np.testing.assert_allclose(xy[:, 0], -t, atol=1e-12)  # the -6/7 loading is made positive
    np.testing.assert_allclose(xy[:, 1], 0.0, atol=1e-12)


def test_pca_matches_the_eigenvectors_of_the_covariance():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(500, 6)) * np.array([5.0, 3.0, 1.0, 0.5, 0.2, 0.1])
    xy, ratio = pca_2d(X)
    values, vectors = np.linalg.eigh(np.cov(X.T))
    order = np.argsort(values)[::-1]
    np.testing.assert_allclose(ratio, values[order][:2] / values.sum(), rtol=1e-9)
    expected = (X - X.mean(axis=0)) @ vectors[:, order[:2]]
    np.testing.assert_allclose(np.abs(xy), np.abs(expected), rtol=1e-6, atol=1e-9)


def test_one_dimensional_factors_give_a_flat_second_axis():
    xy, ratio = pca_2d(np.arange(5.0)[:, None])
    assert ratio == (pytest.approx(1.0), 0.0)
    np.testing.assert_allclose(xy[:, 1], 0.0)


def test_sample_is_bounded_sorted_and_seeded():
    rng = np.random.default_rng(1)
    V = rng.normal(size=(5000, 8)).astype(np.float32)
    counts = rng.integers(0, 50, size=5000)
    a = embedding_map(V, counts, config=EmbeddingMapConfig(max_points=300, seed=3))
    b = embedding_map(V, counts, config=EmbeddingMapConfig(max_points=300, seed=3))
    c = embedding_map(V, counts, config=EmbeddingMapConfig(max_points=300, seed=4))
    assert a.items.shape == (300,) and np.all(np.diff(a.items) > 0) and a.n_items == 5000
    np.testing.assert_array_equal(a.items, b.items)
    np.testing.assert_array_equal(a.xy, b.xy)
    assert not np.array_equal(a.items, c.items)
    small = embedding_map(V[:50], counts[:50], config=EmbeddingMapConfig(max_points=300))
    np.testing.assert_array_equal(small.items, np.arange(50))


def test_popularity_buckets_follow_the_rank_by_interactions():
    counts = np.arange(200)[::-1].copy()  # item 0 most popular
    buckets = popularity_buckets(counts)
    assert np.bincount(buckets).tolist() == [2, 18, 80, 100]
    assert buckets[0] == 0 and buckets[199] == 3
    # Ties go to the lower index: all-equal counts still fill the buckets in index order.
    np.testing.assert_array_equal(popularity_buckets(np.ones(200))[:3], [0, 0, 1])


def test_group_separation_is_one_for_point_groups_and_near_zero_for_mixed_ones():
    xy = np.array([[0.0, 0.0]] * 5 + [[3.0, 4.0]] * 5)
    groups = np.array([0] * 5 + [1] * 5)
    assert group_separation(xy, groups) == pytest.approx(1.0)
    rng = np.random.default_rng(0)
    cloud = rng.normal(size=(4000, 2))
    assert group_separation(cloud, rng.integers(0, 4, size=4000)) < 0.01
    # Unknown points (-1) are left out.
    assert group_separation(np.vstack([xy, [[100.0, 100.0]]]), np.append(groups, -1)) == pytest.approx(1.0)


def test_colours_legend_and_json_with_groups_and_unknowns():
    rng = np.random.default_rng(2)
    V = rng.normal(size=(6, 3))
    groups = np.array([0, 0, 1, 1, -1, 1])
    picture = embedding_map(V, np.ones(6), groups, np.array(["red", "blue"]))
    assert picture.colour_by == "group" and picture.labels == ("red", "blue")
    body = picture.to_json(np.array([f"i{i}" for i in range(6)]))
    assert body["points"]["item"] == ["i0", "i1", "i2", "i3", "i4", "i5"]
    assert body["points"]["colour"] == [0, 0, 1, 1, -1, 1]
    assert body["legend"] == [
        {"code": 0, "label": "red", "count": 2},
        {"code": 1, "label": "blue", "count": 3},
        {"code": -1, "label": "unknown", "count": 1},
    ]
    unnamed = embedding_map(V, np.ones(6), groups)
    assert unnamed.labels == ("group 0", "group 1")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ((np.zeros((0, 3)), np.zeros(0)), "item_factors"),
        ((np.ones((4, 2)), np.ones(3)), "item_counts"),
        ((np.ones((4, 2)), np.ones(4), np.zeros(5, dtype=np.int64)), "item_groups"),
        ((np.full((4, 2), np.nan), np.ones(4)), "NaN"),
    ],
)
def test_bad_inputs_name_the_argument(args, message):
    with pytest.raises(ValueError, match=message):
        embedding_map(*args)
    with pytest.raises(ValueError, match="max_points"):
        EmbeddingMapConfig(max_points=0)


@pytest.mark.parametrize("n_groups", [2, 8])
def test_the_map_shows_folding_groups_apart_with_negatives_on_top_of_each_other_without(n_groups: int):
    """WALS with its unobserved weight w0 (the negatives) against w0 ≈ 0 (positives only) on planted
    communities with 5% noise: measured separation 0.39 vs 0.04-0.05 (2 groups) and 0.93-0.94 vs
    0.39-0.46 (8 groups) over seeds 0-3."""
    per_group = {2: (500, 200), 8: (125, 50)}[n_groups]
    data = planted_communities(
        PlantedConfig(n_groups=n_groups, users_per_group=per_group[0], items_per_group=per_group[1], noise=0.05)
    )
    separation = {}
    for w0 in (1e-4, 0.1):
        model = fit_wals(
            data.interactions,
            WALSConfig(dim=16, iterations=10, l2=100.0, l2_scaling="none", unobserved_weight=w0, device="cpu"),
        )
        picture = embedding_map(model.item_factors, data.interactions.item_counts(), data.item_groups)
        separation[w0] = picture.group_separation
    assert separation[0.1] >= 2 * separation[1e-4], separation
    assert separation[0.1] - separation[1e-4] >= 0.3, separation
