"""Configured limits: each one refuses with a problem naming the field, the limit, the value and the setting."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from app.api.app import create_app
from app.config import Settings
from app.migrate import upgrade
from tests.helpers import planted_csv, upload


@contextmanager
def limited_client(tmp_path: Path, **limits: Any) -> Iterator[TestClient]:
    settings = Settings(var_dir=tmp_path / "var", task_always_eager=True, **limits)
    upgrade(settings.resolved_database_url)
    with TestClient(create_app(settings), raise_server_exceptions=False) as client:
        yield client


def assert_limit(response: Any, status: int, field: str, limit: int, value: int, setting: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"
    body = response.json()
    assert (body["status"], body["field"], body["limit"], body["value"], body["setting"]) == (
        status,
        field,
        limit,
        value,
        setting,
    ), body
    assert field in body["detail"] and str(limit) in body["detail"] and setting in body["detail"]
    return body


def _datasets(client: TestClient) -> list[dict[str, Any]]:
    return client.get("/v1/datasets").json()["items"]


def _nothing_stored(client: TestClient) -> None:
    root = Path(client.app.state.settings.resolved_artifact_root)
    assert not _datasets(client)
    assert not list((root / "datasets").glob("*")) if (root / "datasets").exists() else True
    assert not list((root / ".tmp").iterdir())


def test_upload_over_max_upload_mb_declared_length(tmp_path: Path):
    limit = 20 * 1024
    with limited_client(tmp_path, max_upload_mb=limit / 2**20) as client:
        path = tmp_path / "big.csv"
        path.write_text("user,item\n" + "u1,i1\n" * 20_000)  # 120 KB: past the limit and the multipart slack
        r = upload(client, path)
        body = assert_limit(
            r, 413, "file", limit + 64 * 1024, int(r.request.headers["content-length"]), "UNFOLD_MAX_UPLOAD_MB"
        )
        assert body["limit_bytes"] == limit + 64 * 1024
        _nothing_stored(client)


def test_upload_over_max_upload_mb_counted_while_copying(tmp_path: Path):
    # Small enough to pass the Content-Length check (which allows for multipart framing), so the
    # service's exact count of the file's bytes refuses it.
    limit = 20 * 1024
    with limited_client(tmp_path, max_upload_mb=limit / 2**20) as client:
        path = tmp_path / "big.csv"
        path.write_text("user,item\n" + "u1,i1\n" * 5_000)  # 30 KB
        r = upload(client, path)
        assert_limit(r, 413, "file", limit, path.stat().st_size, "UNFOLD_MAX_UPLOAD_MB")
        _nothing_stored(client)


def test_upload_over_max_upload_rows(tmp_path: Path):
    with limited_client(tmp_path, max_upload_rows=100) as client:
        r = upload(client, planted_csv(tmp_path / "p.csv", 20, 20, per_user=6))  # 120 rows
        assert_limit(r, 413, "file", 100, 120, "UNFOLD_MAX_UPLOAD_ROWS")
        _nothing_stored(client)
        ok = upload(client, planted_csv(tmp_path / "q.csv", 20, 20, per_user=5))  # exactly 100
        assert ok.status_code == 201, ok.text
        assert ok.json()["n_interactions"] == 100


def test_request_body_over_max_body_mb(tmp_path: Path):
    limit = 2048
    with limited_client(tmp_path, max_body_mb=limit / 2**20) as client:
        spec = {"dataset_id": "ds_x", "algorithm": "wals", "padding": "x" * 4000}
        r = client.post("/v1/jobs", json=spec)
        assert_limit(r, 413, "body", limit, int(r.request.headers["content-length"]), "UNFOLD_MAX_BODY_MB")

        def chunks() -> Iterator[bytes]:  # no Content-Length: counted as it streams in
            yield b'{"dataset_id": "ds_x", "pad": "'
            for _ in range(10):
                yield b"x" * 1000
            yield b'"}'

        r = client.post("/v1/jobs", content=chunks(), headers={"content-type": "application/json"})
        body = r.json()
        assert r.status_code == 413 and body["field"] == "body" and body["limit"] == limit
        assert body["value"] > limit and "read before it was refused" in body["detail"]
        # A small body is still read normally (and refused for its own reason).
        assert client.post("/v1/jobs", json={"dataset_id": "ds_x"}).status_code == 404  # no such dataset


@pytest.fixture
def tiny(tmp_path: Path) -> Iterator[tuple[TestClient, str]]:
    with limited_client(
        tmp_path, max_dim=8, max_wals_iterations=3, max_sgd_epochs=2, max_k=5, max_batch_users=2
    ) as client:
        ds = upload(client, planted_csv(tmp_path / "p.csv", 30, 20, per_user=6)).json()["id"]
        yield client, ds


def test_spec_limits(tiny):
    client, ds = tiny
    base = {"dataset_id": ds, "evaluation": {"split": "none"}}
    r = client.post("/v1/jobs", json={**base, "dim": 9, "wals": {"iterations": 2}})
    body = assert_limit(r, 422, "dim", 8, 9, "UNFOLD_MAX_DIM")
    assert body["errors"][0]["field"] == "dim"  # read like any validation error
    r = client.post("/v1/jobs", json={**base, "dim": 4, "wals": {"iterations": 4}})
    assert_limit(r, 422, "wals.iterations", 3, 4, "UNFOLD_MAX_WALS_ITERATIONS")
    # Omitted, Unfold's default (15) would run past the limit: refused, with a hint.
    r = client.post("/v1/jobs", json={**base, "dim": 4})
    body = assert_limit(r, 422, "wals.iterations", 3, 15, "UNFOLD_MAX_WALS_ITERATIONS")
    assert "omitted" in body["detail"]
    r = client.post("/v1/jobs", json={**base, "algorithm": "sgd", "dim": 4, "sgd": {"epochs": 3}})
    assert_limit(r, 422, "sgd.epochs", 2, 3, "UNFOLD_MAX_SGD_EPOCHS")
    # Values at the limit are fine (a wals block in an sgd spec is refused on its own: test_first_hour_refusals).
    r = client.post("/v1/jobs", json={**base, "algorithm": "sgd", "dim": 8, "sgd": {"epochs": 2}})
    assert r.status_code == 202 and r.json()["status"] == "succeeded", r.text
    r = client.post("/v1/jobs", json={**base, "dim": 8, "wals": {"iterations": 3}})
    assert r.status_code == 202 and r.json()["status"] == "succeeded", r.text
    assert len(client.get("/v1/jobs").json()["items"]) == 2  # refused specs left no job behind


def test_tuning_trials_within_the_limits(tiny):
    client, ds = tiny
    spec = {"dataset_id": ds, "wals": {"iterations": 2}}
    r = client.post("/v1/tuning", json={"spec": spec, "search": {"params": {"dim": [4, 16]}}})
    assert_limit(r, 422, "search.params.dim", 8, 16, "UNFOLD_MAX_DIM")
    r = client.post("/v1/tuning", json={"spec": {**spec, "dim": 12}, "search": {"params": {"wals.l2": [1.0, 2.0]}}})
    assert_limit(r, 422, "spec.dim", 8, 12, "UNFOLD_MAX_DIM")
    assert client.get("/v1/tuning").json()["items"] == [] and client.get("/v1/jobs").json()["items"] == []


def test_query_limits(tiny):
    client, ds = tiny
    spec = {"dataset_id": ds, "dim": 4, "wals": {"iterations": 2}, "evaluation": {"split": "none"}}
    model = client.post("/v1/jobs", json=spec).json()["model_id"]
    base = f"/v1/models/{model}"
    assert client.get(f"{base}/users/u1/recommendations", params={"k": 5}).status_code == 200
    hot = client.app.state.hot_path.answered
    r = client.get(f"{base}/users/u1/recommendations", params={"k": 6})
    assert client.app.state.hot_path.answered == hot  # the hot path keeps the same bound
    assert_limit(r, 422, "k", 5, 6, "UNFOLD_MAX_K")
    assert_limit(client.get(f"{base}/items/i1/similar", params={"k": 6}), 422, "k", 5, 6, "UNFOLD_MAX_K")
    r = client.post(f"{base}/recommendations", json={"items": ["i1"], "k": 6})
    assert_limit(r, 422, "k", 5, 6, "UNFOLD_MAX_K")
    r = client.post(f"{base}/neighbors", json={"vector": [0.1] * 4, "k": 6})
    assert_limit(r, 422, "k", 5, 6, "UNFOLD_MAX_K")
    r = client.post(f"{base}/recommendations/batch", json={"users": ["u1"], "k": 6})
    assert_limit(r, 422, "k", 5, 6, "UNFOLD_MAX_K")
    r = client.post(f"{base}/recommendations/batch", json={"users": ["u1", "u2", "u3"], "k": 2})
    assert_limit(r, 422, "users", 2, 3, "UNFOLD_MAX_BATCH_USERS")
    r = client.post(f"{base}/recommendations/batch", json={"users": ["u1", "u2"], "k": 5})
    assert r.status_code == 200 and all(len(v) == 5 for v in r.json()["results"].values())


def test_max_k_can_be_raised_past_the_old_1000(tmp_path: Path):
    with limited_client(tmp_path, max_k=5000) as client:
        ds = upload(client, planted_csv(tmp_path / "p.csv", 30, 20, per_user=6)).json()["id"]
        spec = {"dataset_id": ds, "dim": 4, "wals": {"iterations": 2}, "evaluation": {"split": "none"}}
        model = client.post("/v1/jobs", json=spec).json()["model_id"]
        url = f"/v1/models/{model}/users/u1/recommendations"
        slow = client.get(url, params={"k": 1500, "exclude_seen": "false"})
        assert slow.status_code == 200 and len(slow.json()["items"]) == 20  # the whole catalogue
        hot = client.app.state.hot_path.answered
        fast = client.get(url, params={"k": 1500, "exclude_seen": "false"})
        assert client.app.state.hot_path.answered == hot + 1 and fast.content == slow.content
        assert client.get(url, params={"k": 5001}).status_code == 422


def test_settings_read_the_limits_from_the_environment(monkeypatch: pytest.MonkeyPatch):
    from pydantic import ValidationError

    for name, value in {
        "UNFOLD_MAX_K": "7",
        "UNFOLD_MAX_DIM": "32",
        "UNFOLD_MAX_UPLOAD_ROWS": "1000",
        "UNFOLD_MAX_BODY_MB": "0.5",
        "UNFOLD_MAX_SGD_EPOCHS": "9",
        "UNFOLD_MAX_WALS_ITERATIONS": "8",
        "UNFOLD_MAX_BATCH_USERS": "3",
        "UNFOLD_MAX_UPLOAD_MB": "2",
    }.items():
        monkeypatch.setenv(name, value)
    limits = Settings().limits
    assert (limits.max_k, limits.max_dim, limits.max_upload_rows, limits.max_body_bytes) == (7, 32, 1000, 2**19)
    assert (limits.max_sgd_epochs, limits.max_wals_iterations, limits.max_batch_users) == (9, 8, 3)
    assert limits.max_upload_bytes == 2 * 2**20
    # The spec's bounds are ceilings: a limit above one is a configuration error, not a silent no-op.
    monkeypatch.setenv("UNFOLD_MAX_DIM", "5000")
    with pytest.raises(ValidationError, match="max_dim"):
        Settings()


def test_default_wals_iterations_matches_the_core():
    from app.limits import DEFAULT_WALS_ITERATIONS
    from app.recsys.wals import WALSConfig

    assert WALSConfig().iterations == DEFAULT_WALS_ITERATIONS


def test_every_limit_setting_is_documented_in_the_configuration_page_with_its_default():
    from app.limits import SETTINGS

    readme = (Path(__file__).resolve().parents[2] / "docs" / "configuration.md").read_text()
    rows = {
        line.split("|")[1].strip(" `"): line.split("|")[2].strip(" `")
        for line in readme.splitlines()
        if line.startswith("| `UNFOLD_MAX_")
    }
    defaults = Settings.model_fields
    for name, setting in SETTINGS.items():
        field = name.replace("_bytes", "_mb")
        assert setting == f"UNFOLD_{field.upper()}"
        assert float(rows[setting]) == defaults[field].default, setting


def test_omitted_sgd_epochs_are_checked_at_what_the_job_would_run():
    """With the search on, omitted epochs may run to the search's ceiling; with it off, to the recipe's epochs."""
    from app.limits import LimitExceeded, Limits, check_spec
    from app.recsys.sgd_config import RECIPE_EPOCHS, SEARCH_MAX_EPOCHS
    from app.spec import TrainingSpec

    assert RECIPE_EPOCHS < SEARCH_MAX_EPOCHS
    between = Limits(max_sgd_epochs=RECIPE_EPOCHS)
    off = TrainingSpec(dataset_id="ds_x", algorithm="sgd", search={"mode": "off"})
    check_spec(off, between)  # the fixed fit stays within the limit
    with pytest.raises(LimitExceeded) as refused:
        check_spec(TrainingSpec(dataset_id="ds_x", algorithm="sgd"), between)
    assert (refused.value.extra["field"], refused.value.extra["value"]) == ("sgd.epochs", SEARCH_MAX_EPOCHS)
    with pytest.raises(LimitExceeded) as refused:
        check_spec(off, Limits(max_sgd_epochs=RECIPE_EPOCHS - 1))
    assert (refused.value.extra["field"], refused.value.extra["value"]) == ("sgd.epochs", RECIPE_EPOCHS)
