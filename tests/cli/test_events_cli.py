"""`unfold events send` (files of events in batches) and `unfold aliases policy` / `show` with a retrain history."""

from __future__ import annotations

import json
import re
from pathlib import Path

import httpx

from app.client.events import read_batches
from tests.cli.conftest import Unfold
from workers.tasks import check_retrains


def _stats(unfold: Unfold, dataset: str) -> dict:
    return dict(httpx.get(f"{unfold.server.url}/v1/datasets/{dataset}/events", timeout=10).json())


def test_events_send_posts_csv_and_ndjson_in_batches(unfold: Unfold, dataset: str, tmp_path: Path):
    before = _stats(unfold, dataset)["total"]
    csv_file = tmp_path / "events.csv"
    csv_file.write_text("user,item,weight,event_id\nu1,i3,2,a\nu2,i4,,b\n\nnewcomer,i5,1,c\n")
    sent = unfold("events", "send", str(csv_file), "--dataset", dataset, "--batch-size", "2")
    assert sent.exit_code == 0, sent.output
    assert "3 events stored" in sent.stdout and "0 duplicates" in sent.stdout
    ndjson = tmp_path / "events.ndjson"
    ndjson.write_text('{"user": "u1", "item": "i3", "event_id": "a"}\n{"user": "u7", "item": "i8", "weight": 3}\n')
    again = unfold("events", "send", str(ndjson), "-d", dataset)
    assert again.exit_code == 0, again.output
    assert "1 events stored" in again.stdout and "1 duplicates" in again.stdout  # "a" was sent by the CSV
    assert _stats(unfold, dataset)["total"] == before + 4


def test_a_refused_line_is_named_by_its_line_in_the_file(unfold: Unfold, dataset: str, tmp_path: Path):
    before = _stats(unfold, dataset)["total"]
    (tmp_path / "good.csv").write_text("u1,i1\n")
    bad = tmp_path / "bad.csv"
    bad.write_text("u1,i1\nu2,i2\nu3,i3\n\nu4,i4,-1\n")  # no header: user,item,weight; line 5 has a negative weight
    result = unfold("events", "send", str(bad), "-d", dataset, "--batch-size", "2")
    assert result.exit_code == 3, result.output
    assert "line 5 of the file" in result.stderr and "weight" in result.stderr
    assert "stored 2 events before this batch" in result.stderr
    assert _stats(unfold, dataset)["total"] == before + 2  # the first batch; the refused one is stored whole or not
    missing = unfold("events", "send", str(tmp_path / "good.csv"), "-d", "ds_nope")
    assert missing.exit_code == 3 and "404" in missing.stderr


def test_batches_keep_the_file_line_of_each_event(tmp_path: Path):
    path = tmp_path / "e.csv"
    path.write_text("item,user,timestamp\ni1,u1,1765094400\n\ni2,u2,2026-12-07T08:00:00Z\n")
    with path.open("rb") as fh:
        [batch] = list(read_batches(fh, 10, csv_format=True))
    assert batch.numbers == [2, 4]
    assert [json.loads(line) for line in batch.lines] == [
        {"item": "i1", "user": "u1", "timestamp": 1765094400},
        {"item": "i2", "user": "u2", "timestamp": "2026-12-07T08:00:00Z"},
    ]


def test_aliases_policy_sets_a_schedule_and_show_lists_the_retrains(unfold: Unfold, dataset: str, tmp_path: Path):
    trained = unfold("train", "-d", dataset, "--set", "dim=8", "--set", "wals.iterations=3", "--watch")
    assert trained.exit_code == 0, trained.output
    model = re.search(r"mdl_[0-9a-z]+", trained.stdout).group(0)  # type: ignore[union-attr]
    assert unfold("aliases", "set", "staging", model).exit_code == 0
    policy = unfold("aliases", "policy", "staging", "--after-events", "2", "--set", "wals.iterations=1")
    assert policy.exit_code == 0, policy.output
    assert "after 2 events" in policy.stdout and "warm-started" in policy.stdout
    bad = unfold("aliases", "policy", "staging", "--after-events", "2", "--set", "wals.l2_reg=1")
    assert bad.exit_code == 3 and "spec.wals.l2_reg" in bad.stderr

    events = tmp_path / "e.ndjson"
    events.write_text('{"user": "u1", "item": "i9"}\n{"user": "u2", "item": "i8"}\n')
    assert unfold("events", "send", str(events), "-d", dataset).exit_code == 0
    [started] = check_retrains(unfold.server.settings)  # the beat's check; eager: trained and decided inline
    shown = unfold("aliases", "show", "staging")
    assert shown.exit_code == 0, shown.output
    assert "retrain policy: after 2 events" in shown.stdout
    outcome = httpx.get(f"{unfold.server.url}/v1/aliases/staging", timeout=10).json()["retrains"][0]
    assert outcome["id"] == started and outcome["outcome"] in ("moved", "refused")
    assert outcome["outcome"] in shown.stdout and outcome["job_id"] in shown.stdout
    assert unfold("aliases", "policy", "staging", "--off").exit_code == 0
    assert "retrain policy" not in unfold("aliases", "show", "staging").stdout
