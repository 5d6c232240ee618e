"""Device and thread selection."""

from __future__ import annotations

import os

import pytest
import torch

from app.recsys.device import pick_device, set_threads


def test_pick_device() -> None:
    assert pick_device("cpu") == torch.device("cpu")
    assert pick_device().type == ("cuda" if torch.cuda.is_available() else "cpu")
    with pytest.raises(ValueError, match="device must be one of"):
        pick_device("gpu")


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the error raised without CUDA")
def test_cuda_requested_without_cuda() -> None:
    with pytest.raises(ValueError, match="no CUDA device"):
        pick_device("cuda")


def test_set_threads() -> None:
    previous = torch.get_num_threads()
    try:
        set_threads(1)
        assert torch.get_num_threads() == 1
        set_threads(None)
        assert torch.get_num_threads() == (os.cpu_count() or 1)
        with pytest.raises(ValueError, match="thread count"):
            set_threads(0)
    finally:
        torch.set_num_threads(previous)
