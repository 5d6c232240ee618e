"""Vectors for items without interactions, from their attributes: the mean of the vectors of items that share them.

For a cold item with attribute values a_1..a_m (each categorical value, each tag), its vector is

    v = (1/m') · Σ_j mean{ V_i : item i of the model has value a_j }

over the m' values that at least one model item has; an item none of whose values a model item has gets
no vector (it cannot be placed). Numeric and boolean attributes do not take part.

Pure: numpy and scipy only.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from app.recsys.attributes import AlignedColumns
from app.recsys.filter_expr import CATEGORICAL, TAGS


def _pairs(columns: AlignedColumns, name: str) -> tuple[np.ndarray, np.ndarray]:
    """(row, code) of every value of a categorical or tags column."""
    column = columns.columns[name]
    assert column.codes is not None
    if column.kind == TAGS:
        assert column.rows is not None
        return column.rows.astype(np.int64), column.codes.astype(np.int64)
    rows = np.flatnonzero(column.codes >= 0)
    return rows, column.codes[rows].astype(np.int64)


def attribute_vectors(
    item_factors: np.ndarray, model_columns: AlignedColumns, cold_columns: AlignedColumns
) -> tuple[np.ndarray, np.ndarray]:
    """(vectors, placed) for the rows of cold_columns: each row's vector (float32) and whether it has one.

    Both column sets must come from one attribute table (the same vocabularies), aligned to the model's items
    and to the cold items respectively.
    """
    n, dim = item_factors.shape
    m = cold_columns.n
    acc = np.zeros((m, dim), dtype=np.float64)
    terms = np.zeros(m, dtype=np.int64)
    for name, column in model_columns.columns.items():
        if column.kind not in (CATEGORICAL, TAGS) or column.vocab is None or name not in cold_columns.columns:
            continue
        n_codes = int(column.vocab.shape[0])
        if n_codes == 0:
            continue
        rows, codes = _pairs(model_columns, name)
        # One row per value: the sum of the vectors of the model items that have it, then the mean.
        members = sp.csr_matrix((np.ones(rows.shape[0]), (codes, rows)), shape=(n_codes, n))
        counts = np.asarray(members.sum(axis=1)).ravel()
        means = np.asarray(members @ item_factors.astype(np.float64)) / np.maximum(counts, 1)[:, None]
        cold_rows, cold_codes = _pairs(cold_columns, name)
        known = counts[cold_codes] > 0
        np.add.at(acc, cold_rows[known], means[cold_codes[known]])
        terms += np.bincount(cold_rows[known], minlength=m)
    placed = terms > 0
    vectors = (acc / np.maximum(terms, 1)[:, None]).astype(np.float32)
    return vectors, placed
