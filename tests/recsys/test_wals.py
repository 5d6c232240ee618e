"""WALS: half-steps match a dense brute-force solve, the objective is exact and decreases, fit() contracts."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from app.recsys import wals
from app.recsys.confidence import confidence
from app.recsys.interactions import Interactions
from app.recsys.wals import WALSConfig, fit_wals, solve_rows, wals_loss

CONFIG = WALSConfig(dim=3, iterations=8, l2=0.3, l2_scaling="none", unobserved_weight=0.2, alpha=2.0, device="cpu")


def _tiny() -> Interactions:
    """7 users × 5 items with weights; user 6 has no interactions."""
    users = [0, 0, 1, 1, 1, 2, 3, 3, 4, 4, 4, 4, 5]
    items = [0, 3, 1, 2, 4, 0, 0, 4, 1, 2, 3, 4, 2]
    weights = [1.0, 3.0, 2.0, 1.0, 0.5, 4.0, 1.0, 2.0, 1.0, 1.0, 5.0, 2.0, 3.0]
    return Interactions.from_coo(users, items, weights, n_users=7, n_items=5)


def _dense_confidence(data: Interactions, config: WALSConfig) -> tuple[np.ndarray, np.ndarray]:
    """Dense C (c_ui where observed, w0 elsewhere) and P (1 where observed) in float64."""
    P = np.asarray(data.to_scipy().todense()) > 0
    C = np.full(P.shape, config.unobserved_weight)
    c = confidence(data.weights, config.confidence, config.alpha, config.eps).astype(np.float64)
    C[data.row_users(), data.indices] = c
    return C, P.astype(np.float64)


def _row_l2(P: np.ndarray, config: WALSConfig) -> np.ndarray:
    """λ per row of P: λ, or with frequency scaling λ·(|I_u| + w0·n_cols)^ν, written out independently."""
    if config.l2_scaling == "none":
        return np.full(P.shape[0], config.l2)
    return config.l2 * (P.sum(1) + config.unobserved_weight * P.shape[1]) ** config.l2_exponent


def _dense_solve(C: np.ndarray, P: np.ndarray, V: np.ndarray, l2: float | np.ndarray) -> np.ndarray:
    """Brute force: per row, (Vᵀ diag(C_u) V + λ_u I) u = Vᵀ diag(C_u) p_u."""
    l2 = np.broadcast_to(l2, (C.shape[0],))
    rows = [
        np.linalg.solve(V.T @ (C[u, :, None] * V) + l2[u] * np.eye(V.shape[1]), V.T @ (C[u] * P[u]))
        for u in range(C.shape[0])
    ]
    return np.array(rows)


def _dense_loss(
    C: np.ndarray, P: np.ndarray, U: np.ndarray, V: np.ndarray, l2_users: float | np.ndarray, l2_items=None
) -> float:
    l2_items = l2_users if l2_items is None else l2_items
    penalty = (np.broadcast_to(l2_users, (U.shape[0],)) * (U**2).sum(1)).sum() + (
        np.broadcast_to(l2_items, (V.shape[0],)) * (V**2).sum(1)
    ).sum()
    return float((C * (P - U @ V.T) ** 2).sum() + penalty)


SCALED = {"l2_scaling": "frequency", "l2": 0.05, "l2_exponent": 1.0}


@pytest.mark.parametrize(("solver", "cg_steps", "tolerance"), [("cholesky", 3, 1e-5), ("cg", 30, 1e-4)])
@pytest.mark.parametrize("kind", ["linear", "log"])
@pytest.mark.parametrize("scaling", [{}, SCALED, {**SCALED, "l2_exponent": 0.5}])
def test_half_step_matches_dense_solve(solver: str, cg_steps: int, tolerance: float, kind: str, scaling) -> None:
    config = dataclasses.replace(CONFIG, solver=solver, cg_steps=cg_steps, confidence=kind, **scaling)
    data = _tiny()
    V = np.random.default_rng(0).normal(size=(5, 3))
    C, P = _dense_confidence(data, config)
    expected = _dense_solve(C, P, V, _row_l2(P, config))
    got = solve_rows(data, torch.from_numpy(V).float(), config).numpy()
    np.testing.assert_allclose(got, expected, atol=tolerance, rtol=tolerance)
    # The item half-step is the same solve on the transpose.
    U = np.random.default_rng(1).normal(size=(7, 3))
    expected_items = _dense_solve(C.T, P.T, U, _row_l2(P.T, config))
    got_items = solve_rows(data.transpose(), torch.from_numpy(U).float(), config).numpy()
    np.testing.assert_allclose(got_items, expected_items, atol=tolerance, rtol=tolerance)


def test_cholesky_handles_negative_corrections() -> None:
    # w0 above every confidence makes c − w0 < 0, which needs the general (non square-root) path.
    config = dataclasses.replace(CONFIG, solver="cholesky", unobserved_weight=20.0, alpha=1.0)
    data = _tiny()
    V = np.random.default_rng(2).normal(size=(5, 3))
    C, P = _dense_confidence(data, config)
    got = solve_rows(data, torch.from_numpy(V).float(), config).numpy()
    np.testing.assert_allclose(got, _dense_solve(C, P, V, config.l2), atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("scaling", [{}, SCALED])
def test_wals_loss_equals_dense_objective(scaling) -> None:
    config = dataclasses.replace(CONFIG, **scaling)
    data = _tiny()
    rng = np.random.default_rng(4)
    U, V = rng.normal(size=(7, 3)).astype(np.float32), rng.normal(size=(5, 3)).astype(np.float32)
    C, P = _dense_confidence(data, config)
    expected = _dense_loss(C, P, U.astype(np.float64), V.astype(np.float64), _row_l2(P, config), _row_l2(P.T, config))
    assert wals_loss(data, U, V, config) == pytest.approx(expected, rel=1e-5)


@pytest.mark.parametrize("solver", ["cg", "cholesky"])
@pytest.mark.parametrize("scaling", [{}, SCALED])
def test_loss_decreases_and_matches_history(solver: str, scaling) -> None:
    data = _tiny()
    config = dataclasses.replace(CONFIG, solver=solver, iterations=10, **scaling)
    model = fit_wals(data, config)
    losses = [entry["loss"] for entry in model.history]
    assert len(losses) == 10
    assert all(later <= earlier * (1 + 1e-6) for earlier, later in zip(losses, losses[1:], strict=False))
    assert losses[-1] < losses[0]
    # History holds the objective divided by nnz.
    final = wals_loss(data, model.user_factors, model.item_factors, config) / data.nnz
    assert losses[-1] == pytest.approx(final, rel=1e-6)
    # A user without interactions gets the exact solution 0.
    np.testing.assert_array_equal(model.user_factors[6], 0.0)


@pytest.mark.parametrize("solver", ["cg", "cholesky"])
@pytest.mark.parametrize("scaling", [{}, SCALED])
def test_row_blocks_on_threads_give_the_single_thread_answer(solver: str, scaling) -> None:
    # Rows are solved in blocks on several threads; each row's arithmetic must not depend on that.
    rng = np.random.default_rng(0)
    n_users, n_items = 300, 80
    users = rng.integers(0, n_users, 4000)
    items = np.minimum(rng.zipf(1.5, 4000) - 1, n_items - 1)
    weights = rng.integers(1, 5, 4000).astype(np.float32)
    data = Interactions.from_coo(users, items, weights, n_users=n_users, n_items=n_items)
    config = dataclasses.replace(CONFIG, dim=8, iterations=4, solver=solver, **scaling)
    previous = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        serial = fit_wals(data, config)
        torch.set_num_threads(3)
        blocked = fit_wals(data, config)
        assert torch.get_num_threads() == 3  # restored after the fit
    finally:
        torch.set_num_threads(previous)
    np.testing.assert_allclose(blocked.user_factors, serial.user_factors, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(blocked.item_factors, serial.item_factors, rtol=1e-4, atol=1e-5)
    assert [h["loss"] for h in blocked.history] == pytest.approx([h["loss"] for h in serial.history], rel=1e-5)


@pytest.mark.parametrize("scaling", [{}, SCALED])
def test_compiled_cpu_loop_matches_the_torch_solver(monkeypatch, scaling) -> None:
    # The CPU runs wals_kernel's row loop; CUDA runs the torch version. Both must train the same model.
    rng = np.random.default_rng(5)
    users, items = rng.integers(0, 200, 3000), np.minimum(rng.zipf(1.4, 3000) - 1, 59)
    data = Interactions.from_coo(users, items, rng.integers(1, 9, 3000).astype(np.float32), n_users=200, n_items=60)
    config = dataclasses.replace(CONFIG, dim=6, iterations=5, **scaling)
    compiled = fit_wals(data, config)
    monkeypatch.setattr(wals, "USE_KERNEL", False)
    reference = fit_wals(data, config)
    np.testing.assert_allclose(compiled.user_factors, reference.user_factors, rtol=2e-3, atol=2e-4)
    np.testing.assert_allclose(compiled.item_factors, reference.item_factors, rtol=2e-3, atol=2e-4)
    assert [h["loss"] for h in compiled.history] == pytest.approx([h["loss"] for h in reference.history], rel=1e-4)


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("dim", 0, "dim"),
        ("iterations", 0, "iterations"),
        ("l2", -1.0, "l2"),
        ("unobserved_weight", -0.1, "unobserved_weight"),
        ("alpha", -1.0, "alpha"),
        ("confidence", "sqrt", "confidence"),
        ("eps", 0.0, "eps"),
        ("solver", "lu", "solver"),
        ("l2_scaling", "count", "l2_scaling"),
        ("l2_exponent", 3.0, "l2_exponent"),
        ("cg_steps", 0, "cg_steps"),
        ("init_scale", 0.0, "init_scale"),
        ("device", "tpu", "device"),
    ],
)
def test_config_validation(field: str, value: object, message: str) -> None:
    kwargs: dict[str, object] = {field: value}
    if field == "eps":
        kwargs["confidence"] = "log"
    with pytest.raises(ValueError, match=message):
        WALSConfig(**kwargs)  # type: ignore[arg-type]


def test_solve_rows_checks_shapes() -> None:
    with pytest.raises(ValueError, match="fixed factors"):
        solve_rows(_tiny(), torch.zeros(4, 3), CONFIG)
