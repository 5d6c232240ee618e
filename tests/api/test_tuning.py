"""Tuning runs through the HTTP API: trials run in-process (eager), or by hand to test the join."""

from __future__ import annotations

import threading
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest

from app.db import get_sessionmaker
from app.models import Job
from app.recsys.interactions import Interactions
from app.recsys.split import split
from app.services import job_state, tuning
from app.services.trials import validation_split
from app.spec import TrainingSpec
from tests.helpers import planted_csv, upload

BASE = {"dim": 8, "wals": {"iterations": 3}}


class Recorder:
    """A dispatch that sends nothing: the test runs the trials itself."""

    def __init__(self) -> None:
        self.sent_trials: list[str] = []
        self.sent_finals: list[str] = []

    def trials(self, job_ids: Sequence[str]) -> None:
        self.sent_trials += job_ids

    def final(self, job_id: str) -> None:
        self.sent_finals.append(job_id)


@pytest.fixture
def dataset(client, tmp_path: Path) -> str:
    return upload(client, planted_csv(tmp_path / "p.csv")).json()["id"]


def _submit(client, dataset: str, search: dict, **spec) -> dict:
    base = {"dim": BASE["dim"]} if spec.get("algorithm") == "sgd" else BASE  # a wals block only for wals
    r = client.post("/v1/tuning", json={"spec": {"dataset_id": dataset, **base, **spec}, "search": search})
    assert r.status_code == 202, r.text
    assert r.headers["location"] == f"/v1/tuning/{r.json()['id']}"
    return r.json()


def test_grid_run_ranks_trials_and_retrains_the_best_as_a_model(client, dataset: str):
    grid = {"wals.l2": [0.1, 10.0], "wals.unobserved_weight": [0.01, 1.0]}
    run = _submit(client, dataset, {"method": "grid", "metric": "recall@10", "params": grid})
    run = client.get(f"/v1/tuning/{run['id']}").json()
    assert run["status"] == "succeeded", run
    assert run["progress"] == {
        "trials_done": 4,
        "trials_total": 4,
        "trials_failed": 0,
        "fraction": 1.0,
        "phase": "final",
    }
    board = run["leaderboard"]
    assert sorted(tuple(t["params"].values()) for t in board) == [(0.1, 0.01), (0.1, 1.0), (10.0, 0.01), (10.0, 1.0)]
    values = [t["value"] for t in board]
    assert values == sorted(values, reverse=True) and all(0 <= v <= 1 for v in values)
    assert all(t["status"] == "succeeded" and t["worker"] and t["seconds"] is not None for t in board)
    assert all(t["value"] == t["metrics"]["recall@10"] for t in board)
    assert run["best"] == board[0]

    trial = client.get(f"/v1/jobs/{board[0]['job_id']}").json()
    assert trial["kind"] == "trial" and trial["tuning_id"] == run["id"] and trial["model_id"] is None
    final = client.get(f"/v1/jobs/{run['final_job_id']}").json()
    assert final["kind"] == "train" and final["tuning_id"] == run["id"] and final["status"] == "succeeded"
    assert run["model_id"] == final["model_id"]
    model = client.get(f"/v1/models/{run['model_id']}").json()
    best = board[0]["params"]
    assert model["spec"]["wals"]["l2"] == best["wals.l2"]
    assert model["spec"]["wals"]["unobserved_weight"] == best["wals.unobserved_weight"]
    assert model["spec"]["evaluation"] == run["spec"]["evaluation"]  # test metrics on the untouched test part
    assert "recall@10" in model["metrics"]
    recs = client.get(f"/v1/models/{run['model_id']}/users/u0/recommendations", params={"k": 3}).json()
    assert len(recs["items"]) == 3


def test_random_search_draws_in_ranges_with_integer_fields_rounded_and_is_seeded(client, dataset: str):
    search = {
        "method": "random",
        "trials": 5,
        "seed": 7,
        "params": {
            "wals.l2": {"low": 0.01, "high": 100.0, "log": True},
            "dim": {"low": 4, "high": 12},
            "wals.confidence.scheme": ["log", "linear"],
        },
    }
    run = _submit(client, dataset, search)
    assert run["status"] == "succeeded" and run["progress"]["trials_total"] == 5
    params = sorted((t["params"] for t in run["leaderboard"]), key=str)
    for p in params:
        assert 0.01 <= p["wals.l2"] <= 100 and isinstance(p["dim"], int) and 4 <= p["dim"] <= 12
        assert p["wals.confidence.scheme"] in ("log", "linear")
    again = _submit(client, dataset, search)
    assert sorted((t["params"] for t in again["leaderboard"]), key=str) == params


def test_sgd_parameters_and_a_grid_sample(client, dataset: str):
    search = {"trials": 2, "params": {"sgd.learning_rate": [0.01, 0.05, 0.1], "sgd.l2": [0.0, 0.01]}}
    run = _submit(client, dataset, search, algorithm="sgd", sgd={"epochs": 2, "batch_size": 64})
    assert run["status"] == "succeeded" and len(run["leaderboard"]) == 2
    model = client.get(f"/v1/models/{run['model_id']}").json()
    assert model["algorithm"] == "sgd"
    assert model["spec"]["sgd"]["learning_rate"] == run["best"]["params"]["sgd.learning_rate"]


@pytest.mark.parametrize(
    ("search", "spec", "field"),
    [
        ({"params": {"wals.l2x": [1]}}, {}, "wals.l2x"),
        ({"params": {"wals": [1]}}, {}, "search.params.wals"),
        ({"params": {"dim.size": [1]}}, {}, "dim.size"),
        ({"params": {"dataset_id": ["x"]}}, {}, "search.params.dataset_id"),
        ({"params": {"evaluation.test_fraction": [0.1]}}, {}, "search.params.evaluation"),
        ({"params": {"wals.l2": [1, -1]}}, {}, "search.params.wals.l2"),
        ({"params": {"wals.solver": ["qr"]}}, {}, "search.params.wals.solver"),
        ({"params": {"wals.l2": {"low": 1, "high": 10}}}, {}, "search.params.wals.l2"),  # a range in a grid
        ({"method": "random", "params": {"wals.solver": {"low": 1, "high": 2}}}, {}, "wals.solver"),
        ({"method": "random", "params": {"wals.l2": {"low": 10, "high": 1}}}, {}, "search.params.wals.l2"),
        ({"method": "random", "params": {"wals.l2": {"low": 0, "high": 1, "log": True}}}, {}, "search.params"),
        ({"params": {"dim": list(range(1, 10)), "wals.l2": list(range(10))}}, {}, "90 combinations"),
        ({"method": "random", "trials": 65, "params": {"dim": [8]}}, {}, "search.trials"),
        ({"params": {}}, {}, "search.params"),
        ({"metric": "ndcg@50", "params": {"dim": [8]}}, {}, "search.metric"),
        ({"params": {"dim": [8]}}, {"evaluation": {"split": "none"}}, "spec.evaluation.split"),
        ({"params": {"dim": [8]}}, {"wals": {"l2": -1}}, "spec.wals.l2"),
        (
            {"params": {"sgd.negatives.strategy": ["uniform", "none"]}},
            {"algorithm": "sgd", "sgd": {"loss": "softmax"}},
            "trial 1",
        ),
    ],
)
def test_bad_searches_are_422_naming_the_parameter(client, dataset: str, search: dict, spec: dict, field: str):
    r = client.post("/v1/tuning", json={"spec": {"dataset_id": dataset, **spec}, "search": search})
    assert r.status_code == 422, r.text
    assert r.headers["content-type"] == "application/problem+json"
    assert field in r.json()["detail"], r.json()
    assert client.get("/v1/tuning").json()["items"] == []


def test_a_missing_dataset_is_404_naming_the_field(client):
    r = client.post("/v1/tuning", json={"spec": {"dataset_id": "ds_missing"}, "search": {"params": {"dim": [8]}}})
    assert r.status_code == 404 and r.json()["field"] == "spec.dataset_id", r.text
    assert client.get("/v1/tuning").json()["items"] == []


def test_list_paginates_filters_and_unknown_run_is_404(client, dataset: str):
    assert client.get("/v1/tuning/tun_nope").status_code == 404
    assert client.post("/v1/tuning/tun_nope/cancel").status_code == 404
    ids = [_submit(client, dataset, {"params": {"dim": [4]}})["id"] for _ in range(3)]
    page = client.get("/v1/tuning", params={"limit": 2}).json()
    assert [r["id"] for r in page["items"]] == ids[::-1][:2] and page["next_cursor"]
    rest = client.get("/v1/tuning", params={"limit": 2, "cursor": page["next_cursor"]}).json()
    assert [r["id"] for r in rest["items"]] == ids[:1] and rest["next_cursor"] is None
    assert len(client.get("/v1/tuning", params={"status": "succeeded"}).json()["items"]) == 3
    assert client.get("/v1/tuning", params={"status": "queued"}).json()["items"] == []


def _trial_job(settings, job_id: str, dispatch: Recorder, worker: str = "w1") -> str:
    from workers.tasks import trial_job

    return trial_job(settings, job_id, worker=worker, dispatch=dispatch)


def test_the_last_trial_to_end_submits_the_final_job_once(client, settings, dataset: str):
    sent = Recorder()
    client.app.state.tuning_dispatch = sent
    run = _submit(client, dataset, {"params": {"wals.l2": [0.1, 1.0, 10.0]}})
    assert run["status"] == "queued" and len(sent.sent_trials) == 3
    assert [t["status"] for t in run["leaderboard"]] == ["queued"] * 3

    assert _trial_job(settings, sent.sent_trials[0], sent, worker="w1") == "succeeded"
    mid = client.get(f"/v1/tuning/{run['id']}").json()
    assert mid["status"] == "running" and mid["progress"]["trials_done"] == 1 and mid["final_job_id"] is None
    assert mid["best"]["job_id"] == sent.sent_trials[0]
    assert _trial_job(settings, sent.sent_trials[1], sent, worker="w2") == "succeeded"
    assert sent.sent_finals == []
    assert _trial_job(settings, sent.sent_trials[2], sent, worker="w1") == "succeeded"
    run = client.get(f"/v1/tuning/{run['id']}").json()
    assert sent.sent_finals == [run["final_job_id"]] and run["progress"]["phase"] == "final"
    assert run["status"] == "running" and {t["worker"] for t in run["leaderboard"]} == {"w1", "w2"}

    # A redelivered trial is not run again, but sends the still-queued final job again (harmless:
    # its claim lets one run); this covers a worker that died between the join and the send.
    assert _trial_job(settings, sent.sent_trials[0], sent) == "skipped"
    assert sent.sent_finals == [run["final_job_id"]] * 2

    from workers.tasks import final_job

    assert final_job(settings, run["final_job_id"]) == "succeeded"
    assert final_job(settings, run["final_job_id"]) == "skipped"
    run = client.get(f"/v1/tuning/{run['id']}").json()
    assert run["status"] == "succeeded" and run["model_id"] and run["finished_at"]


def test_failed_trials_are_ranked_last_and_a_run_without_success_fails(client, settings, dataset, monkeypatch):
    import app.services.trials as trials

    real = trials.fit_and_score

    def flaky(fit, valid, spec, reporter, *checkpointer):
        if spec.wals.l2 == 666:
            raise ValueError("boom")
        return real(fit, valid, spec, reporter, *checkpointer)

    monkeypatch.setattr(trials, "fit_and_score", flaky)
    run = _submit(client, dataset, {"params": {"wals.l2": [666, 1.0]}})
    assert run["status"] == "succeeded" and run["progress"]["trials_failed"] == 1
    assert [t["status"] for t in run["leaderboard"]] == ["succeeded", "failed"]
    assert run["leaderboard"][1]["error"] == {"type": "ValueError", "message": "boom"}

    run = _submit(client, dataset, {"params": {"wals.l2": [666]}})
    assert run["status"] == "failed" and run["final_job_id"] is None and run["model_id"] is None
    assert run["error"]["type"] == "NoTrialSucceeded" and "boom" in run["error"]["message"]


def test_cancel_stops_queued_and_running_trials_and_no_final_job_follows(client, settings, dataset: str):
    sent = Recorder()
    client.app.state.tuning_dispatch = sent
    run = _submit(client, dataset, {"params": {"wals.l2": [0.1, 1.0, 10.0]}})
    sessions = get_sessionmaker(settings.resolved_database_url)
    running = sent.sent_trials[0]
    assert job_state.claim(sessions, running, "w1", stale_after=60)

    r = client.post(f"/v1/tuning/{run['id']}/cancel")
    assert r.status_code == 202 and r.json()["status"] == "cancelled"
    statuses = {t["job_id"]: t["status"] for t in r.json()["leaderboard"]}
    assert statuses[running] == "running"
    assert [statuses[j] for j in sent.sent_trials[1:]] == ["cancelled", "cancelled"]
    with sessions() as session:
        assert session.get(Job, running).cancel_requested

    # The running trial stops at its next report; the queued ones' deliveries are skipped.
    assert tuning.record_trial(sessions, running, "cancelled") is None
    for job_id in sent.sent_trials[1:]:
        assert _trial_job(settings, job_id, sent) == "skipped"
    run = client.get(f"/v1/tuning/{run['id']}").json()
    assert run["status"] == "cancelled" and run["final_job_id"] is None and sent.sent_finals == []
    assert client.post(f"/v1/tuning/{run['id']}/cancel").json()["status"] == "cancelled"


def test_a_trial_cancelled_on_its_own_still_lets_the_run_finish(client, settings, dataset: str):
    sent = Recorder()
    client.app.state.tuning_dispatch = sent
    run = _submit(client, dataset, {"params": {"wals.l2": [0.1, 1.0]}})
    first, second = sent.sent_trials
    assert client.post(f"/v1/jobs/{second}/cancel").json()["status"] == "cancelled"
    assert _trial_job(settings, first, sent) == "succeeded"
    assert _trial_job(settings, second, sent) == "skipped"
    run = client.get(f"/v1/tuning/{run['id']}").json()
    assert run["best"]["job_id"] == first and set(sent.sent_finals) == {run["final_job_id"]}


def _join_race(url: str, dataset_id: str) -> None:
    """Trials ending at the same moment: exactly one of them creates the final job."""
    from app.services.tuning import submit_tuning
    from app.tuning_spec import SearchSpec

    sessions = get_sessionmaker(url)
    sent = Recorder()
    with sessions() as session:
        spec = TrainingSpec(dataset_id=dataset_id, dim=4)
        search = SearchSpec(params={"wals.l2": [float(i) for i in range(8)]})
        submit_tuning(session, spec, search, sent, tenant="default", max_concurrent_jobs=1)
    for i, job_id in enumerate(sent.sent_trials):
        assert job_state.claim(sessions, job_id, f"w{i}", stale_after=60)
    barrier = threading.Barrier(len(sent.sent_trials))
    finals: list[str | None] = []

    def end(i: int, job_id: str) -> None:
        barrier.wait()
        finals.append(tuning.record_trial(sessions, job_id, "succeeded", metrics={"ndcg@20": i / 10}))

    threads = [threading.Thread(target=end, args=(i, j)) for i, j in enumerate(sent.sent_trials)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    created = [f for f in finals if f is not None]
    assert len(finals) == 8 and len(created) == 1, finals
    with sessions() as session:
        final = session.get(Job, created[0])
        assert final is not None and final.kind == "train" and final.spec["wals"]["l2"] == 7.0


def test_join_race_on_sqlite(client, settings, dataset: str):
    _join_race(settings.resolved_database_url, dataset)


@pytest.mark.integration
def test_join_race_on_postgresql():
    from app.migrate import upgrade
    from app.models import Dataset
    from tests.services import postgres_database

    with postgres_database() as url:
        upgrade(url)
        with get_sessionmaker(url)() as session:
            session.add(
                Dataset(
                    id="ds_race",
                    name="race",
                    format="csv",
                    n_users=1,
                    n_items=1,
                    n_interactions=1,
                    density=1.0,
                    checksum="0" * 64,
                    size_bytes=1,
                    artifact_key="datasets/ds_race",
                )
            )
            session.commit()
        _join_race(url, "ds_race")


@pytest.mark.parametrize("method", ["random", "leave_last_out", "temporal"])
def test_validation_is_carved_from_the_training_part_and_never_touches_test(method: str):
    rng = np.random.default_rng(0)
    dense = rng.random((50, 30)) < 0.3
    rows, cols = np.nonzero(dense)
    indptr = np.concatenate([[0], np.cumsum(dense.sum(axis=1))])
    data = Interactions(50, 30, indptr, cols, np.ones(cols.size), rng.permutation(cols.size).astype(np.int64))
    spec = TrainingSpec(dataset_id="d", evaluation={"split": method, "test_fraction": 0.2})
    train, test = split(data, method, 0.2, spec.seed)
    fit, valid = validation_split(data, spec)
    as_set = lambda m: {(int(u), int(i)) for u, i in zip(m.row_users(), m.indices, strict=True)}  # noqa: E731
    assert as_set(fit) | as_set(valid) == as_set(train)
    assert not as_set(fit) & as_set(valid) and not as_set(valid) & as_set(test) and valid.nnz > 0


def test_trials_and_the_final_job_train_what_they_name_without_the_settings_search():
    from app.spec import TrainingSpec
    from app.tuning_spec import SearchSpec, plan_trials

    base = TrainingSpec(dataset_id="ds", dim=8)
    plan = plan_trials(base, SearchSpec(params={"wals.l2": [0.01, 0.1]}))
    assert [t.spec.search.mode for t in plan.trials] == ["off", "off"]
    assert [t.spec.wals.l2 for t in plan.trials] == [0.01, 0.1]
