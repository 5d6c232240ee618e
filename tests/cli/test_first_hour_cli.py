"""The command line a new user meets: refusals exit non-zero, tables fit the terminal."""

from __future__ import annotations

import json
import re
import time

from tests.cli.conftest import Unfold


def test_cancelling_a_finished_job_exits_3_and_says_it_had_ended(unfold: Unfold, dataset: str):
    with unfold.jobs_stay_queued():
        job_id = unfold("train", "-d", dataset, "-q").stdout.strip()
    assert unfold("jobs", "cancel", job_id).exit_code == 0
    again = unfold("jobs", "cancel", job_id)
    assert again.exit_code == 3, again.output
    assert "409" in again.stderr and "was already cancelled" in again.stderr and "nothing was cancelled" in again.stderr


def _trained(unfold: Unfold, dataset: str) -> tuple[str, str]:
    result = unfold("train", "-d", dataset, "--set", "dim=8", "--set", "wals.iterations=3", "--watch")
    assert result.exit_code == 0, result.output
    job_id = re.search(r"job_[0-9a-z]+", result.stdout).group(0)  # type: ignore[union-attr]
    model_id = re.search(r"mdl_[0-9a-z]+", result.stdout).group(0)  # type: ignore[union-attr]
    return job_id, model_id


def test_jobs_show_includes_the_models_metrics(unfold: Unfold, dataset: str):
    job_id, model_id = _trained(unfold, dataset)
    shown = unfold("jobs", "show", job_id)
    assert shown.exit_code == 0, shown.output
    for row in ("recall@20", "ndcg@20", "folding leakage@10", "popularity recall@20"):
        assert row in shown.stdout, shown.stdout
    assert model_id in shown.stdout


def test_aliases_set_show_query_and_delete(unfold: Unfold, dataset: str):
    _, model_id = _trained(unfold, dataset)
    assert unfold("aliases", "set", "prod", model_id).stdout.strip() == f"prod → {model_id}"
    assert model_id in unfold("aliases", "show", "prod").stdout
    recommended = unfold("recommend", "prod", "u1", "-k", "3", "--json")
    assert recommended.exit_code == 0 and json.loads(recommended.stdout)["model_id"] == model_id
    assert unfold("aliases", "delete", "prod").exit_code == 0
    gone = unfold("aliases", "show", "prod")
    assert gone.exit_code == 3 and "404" in gone.stderr


def test_fold_in_recommends_for_a_new_user_from_items(unfold: Unfold, dataset: str):
    _, model_id = _trained(unfold, dataset)
    answer = unfold("fold-in", model_id, "i1", "i2", "nope", "-k", "4", "--json")
    assert answer.exit_code == 0, answer.output
    body = json.loads(answer.stdout)
    assert len(body["items"]) == 4 and body["unknown_items"] == ["nope"]
    table = unfold("fold-in", model_id, "i1", "nope", "--weights", "2,1")
    assert table.exit_code == 0 and "top 10 for a new user" in table.stdout and "nope" in table.stderr
    bad = unfold("fold-in", model_id, "i1", "--weights", "x")
    assert bad.exit_code == 2 and "--weights" in bad.output


def test_tuning_start_list_show_and_cancel(unfold: Unfold, dataset: str):
    started = unfold(
        "tuning", "start", "-d", dataset, "--set", "dim=4", "--set", "wals.iterations=2", "-p", "wals.l2=[1, 10]", "-q"
    )
    assert started.exit_code == 0, started.output
    run_id = started.stdout.strip()
    assert run_id.startswith("tun_")
    listed = unfold("tuning", "list")
    assert listed.exit_code == 0 and run_id in listed.stdout
    deadline = time.monotonic() + 120
    while "succeeded" not in (shown := unfold("tuning", "show", run_id)).stdout:
        assert time.monotonic() < deadline, shown.stdout
        time.sleep(0.5)
    assert "wals.l2=1" in shown.stdout and "wals.l2=10" in shown.stdout and "mdl_" in shown.stdout
    again = unfold("tuning", "cancel", run_id)
    assert again.exit_code == 3 and "nothing was cancelled" in again.stderr
    bad = unfold("tuning", "start", "-d", dataset, "-p", "wals.l2=3")
    assert bad.exit_code == 2 and "JSON list" in bad.output


def test_an_upload_that_ignored_columns_says_so_on_stderr(unfold: Unfold, tmp_path):
    path = tmp_path / "amounts.csv"
    path.write_text("user,item,amount\nu1,i1,3\nu2,i2,1\nu1,i2,2\n")
    result = unfold("datasets", "upload", str(path), "-q")
    assert result.exit_code == 0, result.output
    assert result.stdout.strip().startswith("ds_") and len(result.stdout.split()) == 1
    assert "note:" in result.stderr and "'amount'" in result.stderr and "weight_column" in result.stderr
