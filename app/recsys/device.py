"""Torch device and thread selection for training."""

from __future__ import annotations

import os

import torch

_PREFERENCES = ("auto", "cpu", "cuda")


def pick_device(preference: str = "auto") -> torch.device:
    """Return the torch device for a preference of "auto", "cpu" or "cuda"."""
    if preference not in _PREFERENCES:
        raise ValueError(f"device must be one of {', '.join(_PREFERENCES)}, got {preference!r}")
    if preference == "cpu":
        return torch.device("cpu")
    if preference == "cuda":
        if not torch.cuda.is_available():
            raise ValueError('device "cuda" was requested but no CUDA device is available; use "auto" or "cpu"')
        return torch.device("cuda")
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def set_threads(n: int | None) -> None:
    """Set the number of CPU threads torch uses (None means os.cpu_count())."""
    # On cores shared with other busy processes, fewer threads are faster: OpenMP regions wait for a
    # descheduled thread (WALS on ML-100K went from 0.3 s to 5 s with 2 threads on 2 contended cores).
    if n is None:
        n = os.cpu_count() or 1
    if n < 1:
        raise ValueError(f"thread count must be >= 1 or None, got {n}")
    torch.set_num_threads(n)
