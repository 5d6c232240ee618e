"""Confidence c_ui from a raw interaction weight r_ui.

linear: c = 1 + alpha * r        log: c = 1 + alpha * log(1 + r / eps)
(Hu, Koren & Volinsky, "Collaborative Filtering for Implicit Feedback Datasets", ICDM 2008.)
"""

from __future__ import annotations

import numpy as np

KINDS = ("linear", "log")


def validate_confidence(kind: str, alpha: float, eps: float) -> None:
    """Raise ValueError unless (kind, alpha, eps) describe a valid confidence function."""
    if kind not in KINDS:
        raise ValueError(f"confidence must be one of {', '.join(KINDS)}, got {kind!r}")
    if not alpha >= 0.0:
        raise ValueError(f"alpha must be >= 0, got {alpha}")
    if kind == "log" and not eps > 0.0:
        raise ValueError(f"eps must be > 0 for log confidence, got {eps}")


def confidence(weights: np.ndarray, kind: str = "linear", alpha: float = 10.0, eps: float = 1.0) -> np.ndarray:
    """Return float32 confidences c_ui for raw weights r_ui (which must be >= 0)."""
    validate_confidence(kind, alpha, eps)
    r = np.asarray(weights, dtype=np.float64)
    if r.size and r.min() < 0.0:
        raise ValueError("confidence needs non-negative weights r_ui; shift or clip negative feedback first")
    c = 1.0 + alpha * r if kind == "linear" else 1.0 + alpha * np.log1p(r / eps)
    return c.astype(np.float32)
