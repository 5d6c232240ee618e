"""The six datasets of ../shared/data with the splits every generalisation figure uses.

Each loader returns (train, test) with one shape; `validation(train)` carves the split that choosing
settings may look at (the service's own per-user holdout, app/recsys/split.py), so test is never seen.

  ml100k    MovieLens 100K, every rating an interaction (binary), random 80/20 (seed 0)
  mlsmall   MovieLens latest-small, the same
  lastfm    HetRec Last.fm play counts as weights, random 80/20 (seed 0) (bench/train.py's split)
  ml1m      ml-1m-implicit: train+valid → test (the protocol of ../shared/data/README.md)
  yelp      yelp2018-sample: train.txt → test.txt
  amazon    amazon-book-sample: train.txt → test.txt
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
from common import _adjacency_pairs, ml1m_implicit, require_data

from app.recsys.interactions import Interactions
from app.recsys.split import split

Parts = tuple[Interactions, Interactions]


def _ratings(path: Path, delimiter: str | None, skip: int) -> Parts:
    raw = np.loadtxt(path, delimiter=delimiter, skiprows=skip, usecols=(0, 1))
    users, u = np.unique(raw[:, 0], return_inverse=True)
    items, i = np.unique(raw[:, 1], return_inverse=True)
    full = Interactions.from_coo(u, i, n_users=len(users), n_items=len(items))
    return split(full, "random", 0.2, seed=0)


def _lastfm() -> Parts:
    raw = np.loadtxt(require_data("hetrec-lastfm") / "user_artists.dat", skiprows=1, dtype=np.int64)
    users, u = np.unique(raw[:, 0], return_inverse=True)
    items, i = np.unique(raw[:, 1], return_inverse=True)
    full = Interactions.from_coo(u, i, raw[:, 2].astype(np.float32), n_users=len(users), n_items=len(items))
    return split(full, "random", 0.2, seed=0)


def _lightgcn(name: str) -> Parts:
    folder = require_data(name)
    train_u, train_i = _adjacency_pairs(folder / "train.txt")
    test_u, test_i = _adjacency_pairs(folder / "test.txt")
    # Ids are not contiguous in the samples: index the ones that occur.
    users, u = np.unique(np.concatenate([train_u, test_u]), return_inverse=True)
    items, i = np.unique(np.concatenate([train_i, test_i]), return_inverse=True)
    n = len(train_u)
    shape = {"n_users": len(users), "n_items": len(items)}
    return Interactions.from_coo(u[:n], i[:n], **shape), Interactions.from_coo(u[n:], i[n:], **shape)


DATASETS: dict[str, Callable[[], Parts]] = {
    "ml100k": lambda: _ratings(require_data("ml-100k") / "u.data", None, 0),
    "mlsmall": lambda: _ratings(require_data("ml-latest-small") / "ratings.csv", ",", 1),
    "lastfm": _lastfm,
    "ml1m": ml1m_implicit,
    "yelp": lambda: _lightgcn("yelp2018-sample"),
    "amazon": lambda: _lightgcn("amazon-book-sample"),
}
