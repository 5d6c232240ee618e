"""`unfold datasets|train|jobs|models|recommend|similar` against a real (embedded) API over HTTP."""

from __future__ import annotations

import json
import re
from pathlib import Path

from app.client.api import UnfoldClient
from tests.cli.conftest import Unfold, closed_port

TINY_SGD = ["-a", "sgd", "--set", "dim=8", "--set", "sgd.epochs=2", "--set", "sgd.batch_size=64"]


def _job_id(output: str) -> str:
    match = re.search(r"job_[0-9a-z]+", output)
    assert match, output
    return match.group(0)


def test_upload_prints_the_dataset_and_reports_its_groups(unfold: Unfold, planted: Path):
    result = unfold("datasets", "upload", str(planted), "--name", "planted-test")
    assert result.exit_code == 0, result.output
    assert "planted-test" in result.stdout and "80" in result.stdout  # 80 users
    assert "2 item groups" in result.stdout
    listed = unfold("datasets", "list")
    assert listed.exit_code == 0 and "planted-test" in listed.stdout
    ds = re.search(r"ds_[0-9a-z]+", result.stdout).group(0)  # type: ignore[union-attr]
    shown = unfold("datasets", "show", ds)
    assert shown.exit_code == 0 and json.loads(shown.stdout)["stats"]["n_item_groups"] == 2


def test_a_bad_upload_is_one_line_naming_the_line_and_exit_3(unfold: Unfold, tmp_path: Path):
    bad = tmp_path / "bad.csv"
    bad.write_text("user,item,weight\nu1,i1,1\nu2,i2,heavy\n")
    result = unfold("datasets", "upload", str(bad), "--format", "csv")
    assert result.exit_code == 3
    assert result.stderr.startswith("error: 422") and "line 3" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1 and "Traceback" not in result.output


def test_an_unreachable_server_is_one_line_and_exit_3(unfold: Unfold, planted: Path):
    port = closed_port()
    result = unfold("jobs", "list", url=f"http://127.0.0.1:{port}")
    assert result.exit_code == 3
    assert f"cannot reach Unfold at http://127.0.0.1:{port}" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1 and "Traceback" not in result.output


def test_train_builds_the_spec_from_file_options_and_sets(unfold: Unfold, dataset: str, tmp_path: Path):
    spec = tmp_path / "spec.json"
    spec.write_text(json.dumps({"algorithm": "wals", "dim": 4, "sgd": {"learning_rate": 0.1}}))
    result = unfold(
        "train", "--dataset", dataset, "--spec", str(spec), *TINY_SGD,
        "--set", "sgd.negatives.strategy=uniform", "--set", "evaluation.k=[5, 10]", "--watch",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "succeeded" in result.stdout and "model mdl_" in result.stdout
    job = json.loads(unfold("jobs", "show", _job_id(result.stdout), "--json").stdout)
    # --algorithm beats the file, --set beats both; what nobody set keeps the file's value.
    assert job["spec"]["algorithm"] == "sgd" and job["spec"]["dim"] == 8
    assert job["spec"]["sgd"]["learning_rate"] == 0.1 and job["spec"]["sgd"]["epochs"] == 2
    assert job["spec"]["sgd"]["negatives"]["strategy"] == "uniform"
    assert job["spec"]["evaluation"]["k"] == [5, 10]


def test_train_refusals_say_why(unfold: Unfold, dataset: str):
    no_dataset = unfold("train", "-a", "wals")
    assert no_dataset.exit_code == 2 and "--dataset" in no_dataset.output
    bad_set = unfold("train", "-d", dataset, "--set", "wals.l2")
    assert bad_set.exit_code == 2 and "PATH=VALUE" in bad_set.output
    out_of_range = unfold("train", "-d", dataset, "--set", "wals.l2=-1")
    assert out_of_range.exit_code == 3 and "wals.l2" in out_of_range.stderr


def test_jobs_list_show_and_cancel(unfold: Unfold, dataset: str):
    with unfold.jobs_stay_queued() as sent:
        result = unfold("train", "-d", dataset, "-q", *TINY_SGD)
    assert result.exit_code == 0, result.output
    job_id = result.stdout.strip()
    assert sent == [job_id]
    queued = unfold("jobs", "list", "--status", "queued")
    assert queued.exit_code == 0 and job_id in queued.stdout
    shown = unfold("jobs", "show", job_id)
    assert shown.exit_code == 0 and "queued" in shown.stdout and "sgd" in shown.stdout
    cancelled = unfold("jobs", "cancel", job_id)
    assert cancelled.exit_code == 0 and f"{job_id} cancelled" in cancelled.stdout
    assert job_id in unfold("jobs", "list", "--status", "cancelled").stdout
    assert job_id not in unfold("jobs", "list", "--status", "queued").stdout
    missing = unfold("jobs", "show", "job_nope")
    assert missing.exit_code == 3 and "404" in missing.stderr and "job_nope" in missing.stderr


def test_models_recommend_and_similar(unfold: Unfold, dataset: str, server):
    trained = unfold("train", "-d", dataset, "--set", "dim=8", "--set", "wals.iterations=3", "--watch")
    assert trained.exit_code == 0, trained.output
    model_id = re.search(r"mdl_[0-9a-z]+", trained.stdout).group(0)  # type: ignore[union-attr]
    assert model_id in unfold("models", "list").stdout
    shown = unfold("models", "show", model_id)
    assert shown.exit_code == 0 and "folding leakage@10" in shown.stdout and "recall@20" in shown.stdout

    recs = unfold("recommend", model_id, "u0", "-k", "3", "--json")
    assert recs.exit_code == 0, recs.output
    items = [entry["item"] for entry in json.loads(recs.stdout)["items"]]
    with UnfoldClient(server.url) as client:
        assert items == [entry["item"] for entry in client.recommend(model_id, "u0", 3)["items"]]
    table = unfold("recommend", model_id, "u0", "-k", "3")
    assert table.exit_code == 0 and all(item in table.stdout for item in items)

    similar = unfold("similar", model_id, "i0", "-k", "4", "--json")
    assert similar.exit_code == 0, similar.output
    neighbours = [entry["item"] for entry in json.loads(similar.stdout)["items"]]
    assert len(neighbours) == 4 and "i0" not in neighbours

    unknown = unfold("recommend", model_id, "nobody")
    assert unknown.exit_code == 3 and "404" in unknown.stderr and "nobody" in unknown.stderr
