"""The training loop every fit shares: the order of a step's step, evaluation, history, callback and state.

An algorithm supplies what differs (its step, its factors, the arrays its state carries); run_steps owns
what a caller relies on being the same for all of them. Step k (1-based) of a run does, in this order:

    loss = step(k)                                   the algorithm's iteration or epoch (interrupt() inside)
    metrics = evaluator(copy of U, copy of V)        {} without an evaluator
    history += {"step": k, "loss", "seconds", "metrics"}
    callback(k, elapsed, loss, metrics) → True        stops here: no state is captured for step k
    on_state(k, capture)                             capture() → TrainingState(algorithm, k, arrays, meta)

A run resumed from a state starts at state.step + 1 with the state's history and elapsed seconds, so its
history and timings continue those of the run it carries on.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import numpy as np

from app.recsys.base import Callback, Evaluator, StateCallback, TrainingState, history_entry


def run_steps(
    algorithm: str,
    n_steps: int,
    step: Callable[[int], float],
    factors: Callable[[], tuple[np.ndarray, np.ndarray]],
    state_arrays: Callable[[], dict[str, np.ndarray]],
    callback: Callback | None,
    evaluator: Evaluator | None,
    on_state: StateCallback | None,
    resume: TrainingState | None,
) -> list[dict[str, Any]]:
    """Run steps 1 … n_steps (after resume.step when resuming) and return the history.

    `step(k)` trains step k and returns its loss; `factors()` gives the current (user, item) factors as numpy
    (views are fine: the evaluator gets copies); `state_arrays()` copies out what a TrainingState carries.
    """
    first, offset = 1, 0.0
    history: list[dict[str, Any]] = []
    if resume is not None:
        first, offset = resume.step + 1, float(resume.meta.get("elapsed", 0.0))
        history = [dict(h) for h in resume.meta.get("history", [])]
    start = time.perf_counter()
    for k in range(first, n_steps + 1):
        loss = step(k)
        metrics: dict[str, float] = {}
        if evaluator is not None:
            user, item = factors()
            # Copies, so an evaluator that keeps the arrays never sees later in-place updates.
            metrics = evaluator(user.copy(), item.copy())
        elapsed = offset + time.perf_counter() - start
        history.append(history_entry(k, loss, elapsed, metrics))
        if callback is not None and callback(k, elapsed, loss, metrics):
            break
        if on_state is not None:
            on_state(k, _capture(algorithm, k, state_arrays, history, elapsed))
    return history


def _capture(
    algorithm: str,
    step: int,
    state_arrays: Callable[[], dict[str, np.ndarray]],
    history: list[dict[str, Any]],
    elapsed: float,
) -> Callable[[], TrainingState]:
    """The state after `step`, copied out only when the caller asks for it."""
    done = len(history)

    def capture() -> TrainingState:
        meta = {"elapsed": elapsed, "history": [dict(h) for h in history[:done]]}
        return TrainingState(algorithm, step, state_arrays(), meta)

    return capture
