"""Confidence functions c = 1 + alpha·r and c = 1 + alpha·log(1 + r/eps)."""

from __future__ import annotations

import numpy as np
import pytest

from app.recsys.confidence import confidence


def test_linear_and_log() -> None:
    r = np.array([0.0, 1.0, 4.0])
    np.testing.assert_allclose(confidence(r, "linear", alpha=2.0), [1.0, 3.0, 9.0])
    np.testing.assert_allclose(confidence(r, "log", alpha=2.0, eps=2.0), 1.0 + 2.0 * np.log1p(r / 2.0), rtol=1e-6)
    assert confidence(r).dtype == np.float32


def test_rejects_bad_input() -> None:
    with pytest.raises(ValueError, match="non-negative"):
        confidence(np.array([-1.0]))
    with pytest.raises(ValueError, match="confidence must be one of"):
        confidence(np.array([1.0]), "exp")
    with pytest.raises(ValueError, match="eps"):
        confidence(np.array([1.0]), "log", eps=0.0)
