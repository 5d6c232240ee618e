"""The hot path and the full route parse a recommendations query string the same way.

Both use app.api.params.parse_k / parse_bool; hypothesis feeds both the same random query strings
(unicode digits, signs, blanks, repeats, percent escapes) and the answers must be identical.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.helpers import planted_csv, upload


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    from fastapi.testclient import TestClient

    from app.api.app import create_app
    from app.config import Settings
    from app.migrate import upgrade

    tmp = tmp_path_factory.mktemp("query")
    config = Settings(var_dir=tmp / "var", task_always_eager=True, max_upload_mb=5, max_k=50)
    upgrade(config.resolved_database_url)
    with TestClient(create_app(config), raise_server_exceptions=False) as client:
        ds = upload(client, planted_csv(Path(tmp) / "p.csv", 40, 60)).json()["id"]
        spec = {"dataset_id": ds, "dim": 4, "wals": {"iterations": 2}, "evaluation": {"split": "none"}}
        job = client.get(f"/v1/jobs/{client.post('/v1/jobs', json=spec).json()['id']}").json()
        assert job["status"] == "succeeded", job
        yield client, job["model_id"]


def _both(client, model: str, query: str):
    """(full route's response, hot path's response or None when it fell through) for one query string."""
    url = f"/v1/models/{model}/users/u3/recommendations?{query}"
    client.app.state.model_cache.forget_name("default", model)  # the next request takes the full route
    before = client.app.state.hot_path.answered
    slow = client.get(url)
    assert client.app.state.hot_path.answered == before
    fast = client.get(url)  # the model is remembered now: the hot path answers it if it accepts the query
    return slow, fast


@pytest.mark.parametrize("k", ["%C2%B2", "²", "%D9%A3", "٣", "%EF%BC%93", "3%00", "+3", " 3", "3_0", "3.0", ""])
def test_k_that_is_not_plain_ascii_digits_is_a_422_on_both_paths(served, k):
    client, model = served
    slow, fast = _both(client, model, f"k={k}")
    assert slow.status_code == fast.status_code == 422, (slow.text, fast.text)
    assert slow.headers["content-type"] == "application/problem+json"
    assert fast.content == slow.content


def test_without_a_key_a_superscript_k_is_not_a_500(served):
    client, model = served
    # No route lookup first: the hot path sees the query before anything else does.
    response = client.get(f"/v1/models/{model}/users/u3/recommendations?k=%C2%B2")
    assert response.status_code == 422


# k and exclude_seen most often: they are what the two paths parse.
_KEYS = st.sampled_from(["k", "k", "k", "exclude_seen", "exclude_seen", "exclude", "x", "K", "k%00", ""])
_VALUE_PIECES = st.sampled_from(
    ["0", "1", "3", "9", "50", "51", "07", "+", "-", " ", "%20", "%C2%B2", "²", "٣", "%D9%A3", "３", "௫", "%00", "true",
     "False", "ON", "t", "y", "no", "maybe", "i1", "%", "_", ".", "=", "e"]
)  # fmt: skip
_VALUES = st.one_of(
    _VALUE_PIECES,
    st.lists(_VALUE_PIECES, max_size=2).map("".join),
    st.text(st.characters(blacklist_categories=("Cc", "Cs")), max_size=3),
)
_PAIRS = st.lists(st.tuples(_KEYS, _VALUES), max_size=3)


@settings(max_examples=300, deadline=None, database=None, suppress_health_check=list(HealthCheck))
@given(pairs=_PAIRS, separator=st.sampled_from(["&", ";", "&&"]))
def test_both_paths_answer_any_query_string_alike(served, pairs, separator):
    client, model = served
    query = separator.join(f"{key}={value}" for key, value in pairs)
    slow, fast = _both(client, model, query)
    assert slow.status_code < 500, (query, slow.text)
    assert (fast.status_code, fast.content) == (slow.status_code, slow.content), query
