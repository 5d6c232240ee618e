"""`unfold recommend` and `unfold similar` pass --filter through; a bad filter is one line naming the column."""

from __future__ import annotations

import json
import re

import httpx

from tests.cli.conftest import Unfold


def test_recommend_and_similar_take_a_filter(unfold: Unfold, dataset: str, server):
    trained = unfold("train", "-d", dataset, "--set", "dim=8", "--set", "wals.iterations=2", "--watch")
    assert trained.exit_code == 0, trained.output
    model_id = re.search(r"mdl_[0-9a-z]+", trained.stdout).group(0)  # type: ignore[union-attr]
    table = b"item,shelf\n" + b"".join(f"i{i},{'top' if i % 3 == 0 else 'low'}\n".encode() for i in range(60))
    r = httpx.post(f"{server.url}/v1/datasets/{dataset}/items", files={"file": ("items.csv", table)})
    assert r.status_code == 200, r.text

    recs = unfold("recommend", model_id, "u0", "-k", "4", "--filter", 'shelf = "top"', "--json")
    assert recs.exit_code == 0, recs.output
    items = [int(entry["item"][1:]) for entry in json.loads(recs.stdout)["items"]]
    assert len(items) == 4 and all(i % 3 == 0 for i in items)
    similar = unfold("similar", model_id, "i1", "-k", "3", "--filter", 'shelf = "low"', "--json")
    assert similar.exit_code == 0, similar.output
    assert all(int(entry["item"][1:]) % 3 != 0 for entry in json.loads(similar.stdout)["items"])

    bad = unfold("recommend", model_id, "u0", "--filter", 'shelf = "top" and colour = "red"')
    assert bad.exit_code == 3 and "unknown attribute 'colour'" in bad.stderr and "column 19" in bad.stderr
