"""Uploads through the HTTP API: formats, stats, checksum, and every kind of bad input."""

from __future__ import annotations

import hashlib
from pathlib import Path

from tests.helpers import planted_csv, upload


def test_upload_csv_reports_stats_and_checksum(client, tmp_path: Path):
    path = planted_csv(tmp_path / "planted.csv")
    r = upload(client, path, name="planted")
    assert r.status_code == 201, r.text
    body = r.json()
    assert body["name"] == "planted"
    assert body["n_users"] == 60 and body["n_items"] == 40 and body["n_interactions"] == 60 * 12
    assert body["checksum"] == hashlib.sha256(path.read_bytes()).hexdigest()
    assert abs(body["density"] - 720 / (60 * 40)) < 1e-9
    assert body["created_at"].endswith("Z")
    assert client.get(f"/v1/datasets/{body['id']}").json()["id"] == body["id"]


def test_duplicates_are_summed_and_min_weight_applies(client, tmp_path: Path):
    path = tmp_path / "d.csv"
    path.write_text("user,item,rating\na,x,5\na,x,4\na,y,1\nb,x,4\nb,z,5\n")
    body = upload(client, path, min_weight="4").json()
    assert body["n_interactions"] == 3  # (a,x) merged, (a,y) dropped
    assert body["n_users"] == 2 and body["n_items"] == 2


def test_list_is_paginated_newest_first(client, tmp_path: Path):
    ids = [upload(client, planted_csv(tmp_path / f"{i}.csv", seed=i)).json()["id"] for i in range(3)]
    page = client.get("/v1/datasets", params={"limit": 2}).json()
    assert [d["id"] for d in page["items"]] == ids[::-1][:2]
    rest = client.get("/v1/datasets", params={"limit": 2, "cursor": page["next_cursor"]}).json()
    assert [d["id"] for d in rest["items"]] == [ids[0]] and rest["next_cursor"] is None


def test_malformed_line_is_a_422_naming_the_line(client, tmp_path: Path):
    path = tmp_path / "bad.csv"
    path.write_text("user,item,rating\na,x,5\nb,y,4\nc,z,notanumber\n")
    r = upload(client, path)
    assert r.status_code == 422
    assert r.headers["content-type"].startswith("application/problem+json")
    problem = r.json()
    assert problem["status"] == 422 and "line 4" in problem["detail"], problem


def test_empty_single_user_and_single_item_files_are_refused(client, tmp_path: Path):
    cases = {"empty.csv": "", "one_user.csv": "a,x\na,y\na,z\n", "one_item.csv": "a,x\nb,x\nc,x\n"}
    for name, text in cases.items():
        path = tmp_path / name
        path.write_text(text)
        r = upload(client, path)
        assert r.status_code == 422, (name, r.text)
        assert r.json()["detail"], name


def test_upload_over_the_limit_is_413(client, tmp_path: Path):
    path = tmp_path / "big.csv"
    row = "user_aaaaaaaa,item_bbbbbbbb,1\n"
    path.write_text(row * (6 * 2**20 // len(row)))  # 6 MiB > the 5 MiB test limit
    r = upload(client, path)
    assert r.status_code == 413, r.text
    assert r.json()["status"] == 413


def test_unknown_format_value_is_422_naming_the_field(client, tmp_path: Path):
    r = upload(client, planted_csv(tmp_path / "p.csv"), format="xlsx")
    assert r.status_code == 422
    assert any(e["field"] == "format" for e in r.json()["errors"])


def test_delete_dataset_and_404_after(client, tmp_path: Path):
    ds = upload(client, planted_csv(tmp_path / "p.csv")).json()
    assert client.delete(f"/v1/datasets/{ds['id']}").status_code == 204
    r = client.get(f"/v1/datasets/{ds['id']}")
    assert r.status_code == 404 and r.json()["title"] == "Not found"


def test_health_ready_and_metrics(client, tmp_path: Path):
    assert client.get("/healthz").json() == {"status": "ok"}
    ready = client.get("/readyz")
    assert ready.status_code == 200 and ready.json()["checks"] == {"database": "ok", "broker": "ok"}
    upload(client, planted_csv(tmp_path / "p.csv"))
    text = client.get("/metrics").text
    assert 'unfold_http_request_seconds_count{method="POST",route="/v1/datasets",status="201"} 1.0' in text
    assert 'unfold_jobs{status="queued"} 0.0' in text


def test_the_api_process_never_imports_torch():
    # Serving is numpy only; torch (hundreds of MB, seconds to import) belongs to the worker.
    import subprocess
    import sys

    code = "import sys, app.api.app, app.spec; app.api.app.create_app; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"
