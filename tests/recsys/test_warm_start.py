"""warm_factors: the rows an earlier model knows come from it, by id; the others stay as drawn."""

from __future__ import annotations

import numpy as np
import pytest

from app.recsys.warm_start import warm_factors


def test_known_ids_take_the_earlier_models_rows_and_new_ones_keep_the_draw():
    init = np.arange(12, dtype=np.float32).reshape(4, 3)
    known = np.array([[10, 11, 12], [20, 21, 22]], dtype=np.float32)
    out, n = warm_factors(init, np.array(["a", "new", "c", "b"]), np.array(["b", "a"]), known)
    assert n == 2
    np.testing.assert_array_equal(out, [[20, 21, 22], [3, 4, 5], [6, 7, 8], [10, 11, 12]])
    assert out.dtype == np.float32 and not np.shares_memory(out, init)
    np.testing.assert_array_equal(init[0], [0, 1, 2])  # the draw itself is left alone


def test_shapes_that_do_not_line_up_are_refused():
    with pytest.raises(ValueError, match="rows for"):
        warm_factors(np.zeros((2, 3), np.float32), np.array(["a"]), np.array(["a"]), np.zeros((1, 3), np.float32))
    with pytest.raises(ValueError, match="known_factors"):
        warm_factors(np.zeros((1, 3), np.float32), np.array(["a"]), np.array(["a"]), np.zeros((1, 4), np.float32))
