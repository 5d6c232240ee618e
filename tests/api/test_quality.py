"""Quality measured from outside, as a user would: ML-100K, random 80/20, default spec, batch endpoint."""

from __future__ import annotations

from collections import Counter, defaultdict
from pathlib import Path

import numpy as np

from tests.helpers import upload

K = 20


def test_default_wals_beats_popularity_by_half_through_the_batch_endpoint(client, shared_data: Path, tmp_path):
    rows = [line.split("\t") for line in (shared_data / "ml-100k" / "u.data").read_text().splitlines()]
    rng = np.random.default_rng(7)
    is_test = rng.random(len(rows)) < 0.2
    train_path = tmp_path / "train.tsv"
    train_path.write_text("".join("\t".join(r) + "\n" for r, t in zip(rows, is_test, strict=True) if not t))
    seen: dict[str, set[str]] = defaultdict(set)
    held_out: dict[str, set[str]] = defaultdict(set)
    for (user, item, *_), t in zip(rows, is_test, strict=True):
        (held_out if t else seen)[user].add(item)
    held_out = {u: items - seen[u] for u, items in held_out.items() if u in seen and items - seen[u]}

    ds = upload(client, train_path).json()
    job = client.post("/v1/jobs", json={"dataset_id": ds["id"], "algorithm": "wals"}).json()
    job = client.get(f"/v1/jobs/{job['id']}").json()
    assert job["status"] == "succeeded", job
    users = sorted(held_out)
    r = client.post(
        f"/v1/models/{job['model_id']}/recommendations/batch", json={"users": users, "k": K, "exclude_seen": True}
    )
    assert r.status_code == 200
    results = r.json()["results"]
    assert set(results) == set(users)

    popular = [item for item, _ in Counter(i for items in seen.values() for i in items).most_common()]
    recall, pop_recall = [], []
    for user in users:
        got = [x["item"] for x in results[user]]
        assert len(got) == K and not set(got) & seen[user], user
        recall.append(len(set(got) & held_out[user]) / len(held_out[user]))
        top_pop = [i for i in popular if i not in seen[user]][:K]
        pop_recall.append(len(set(top_pop) & held_out[user]) / len(held_out[user]))
    model_recall, baseline = float(np.mean(recall)), float(np.mean(pop_recall))
    print(
        f"recall@{K}: default WALS {model_recall:.4f}, popularity {baseline:.4f}, ratio {model_recall / baseline:.2f}"
    )
    assert model_recall >= 1.5 * baseline, (model_recall, baseline)
