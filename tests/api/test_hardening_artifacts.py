"""A damaged model artifact is a 500 problem naming the model and the damaged file, logged once."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from tests.helpers import planted_csv, upload


@pytest.fixture
def model(client, tmp_path: Path) -> tuple[str, Path]:
    ds = upload(client, planted_csv(tmp_path / "p.csv", 40, 30)).json()["id"]
    spec = {"dataset_id": ds, "dim": 4, "wals": {"iterations": 2}, "evaluation": {"split": "none"}}
    job = client.get(f"/v1/jobs/{client.post('/v1/jobs', json=spec).json()['id']}").json()
    assert job["status"] == "succeeded", job
    [folder] = [p.parent for p in (client.app.state.settings.var_dir / "artifacts").rglob("model.npz")]
    return job["model_id"], folder


def _truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


@pytest.mark.parametrize(
    ("damage", "part"),
    [
        (lambda folder: _truncate(folder / "model.npz"), "model.npz"),
        (lambda folder: (folder / "model.json").write_text('{"format_version": 1, "dim"'), "model.json"),
        (lambda folder: (folder / "model.npz").write_bytes(b"PK\x03\x04 not a zip"), "model.npz"),
    ],
)
def test_a_damaged_artifact_is_a_500_naming_the_model_and_the_file_logged_once(client, model, caplog, damage, part):
    model_id, folder = model
    damage(folder)
    urls = [f"/v1/models/{model_id}/users/u3/recommendations", f"/v1/models/{model_id}/items/i3/similar"]
    with caplog.at_level(logging.ERROR):
        answers = [client.get(url) for url in urls * 3]
    for response in answers:
        assert response.status_code == 500
        assert response.headers["content-type"] == "application/problem+json"
        problem = response.json()
        assert problem["title"] == "Damaged model artifact"
        assert (problem["model_id"], problem["damaged"]) == (model_id, part)
        assert model_id in problem["detail"] and part in problem["detail"]
    logged = [r for r in caplog.records if model_id in r.getMessage()]
    assert len(logged) == 1, [r.getMessage() for r in logged]
