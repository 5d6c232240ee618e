"""A small typed client of the Unfold HTTP contract (API.md), over httpx.

Where it connects comes from UNFOLD_URL (default http://127.0.0.1:8000); UNFOLD_API_KEY, when
set, is sent as `Authorization: Bearer <key>`. Every failure — a problem+json answer, a server
that is not there — becomes an ApiError whose message is one line a person can act on.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from types import TracebackType
from typing import Any, BinaryIO
from urllib.parse import quote

import httpx

from app.client.sse import parse_events

DEFAULT_URL = "http://127.0.0.1:8000"
# Reading a response may take this long: an upload is parsed before the server answers.
UPLOAD_TIMEOUT = httpx.Timeout(600.0, connect=5.0)
# The events endpoint sends a keep-alive every 15 s; silence four times that long means it is gone.
EVENTS_TIMEOUT = httpx.Timeout(60.0, connect=5.0)

JSON = dict[str, Any]


class ApiError(Exception):
    """A request the API refused (status set) or that never got an answer (status None)."""

    def __init__(self, message: str, status: int | None = None, line: int | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.line = line  # the line of the request body the API refused, when it named one


class EventsUnavailable(Exception):
    """The server does not stream job events (an older server, a proxy); poll instead."""


def _segment(value: str) -> str:
    # External ids are arbitrary strings: "a/b" must stay one path segment, and "." or ".." must not
    # be read as a dot segment (httpx would drop or climb them), so their dots are escaped too.
    segment = quote(value, safe="")
    return segment.replace(".", "%2E") if segment in (".", "..") else segment


def _form_value(value: str | float | bool) -> str:
    return ("true" if value else "false") if isinstance(value, bool) else str(value)


def problem_message(response: httpx.Response) -> str:
    """One line from an error response: problem+json's title and detail, else the body's start."""
    status = response.status_code
    try:
        body = response.json()
    except ValueError:
        body = None
    if isinstance(body, dict) and ("detail" in body or "title" in body):
        title = str(body.get("title") or response.reason_phrase)
        detail = body.get("detail")
        if isinstance(detail, list | dict):  # FastAPI's default shape, from a server without our handlers
            detail = json.dumps(detail)
        text = f"{title}: {detail}" if detail and detail != title else title
    else:
        text = response.text.strip().splitlines()[0][:200] if response.text.strip() else response.reason_phrase
    return f"{status} {' '.join(text.split())}"


class UnfoldClient:
    """The HTTP contract as methods; each returns the decoded JSON body."""

    def __init__(
        self,
        base_url: str | None = None,
        api_key: str | None = None,
        *,
        timeout: float = 60.0,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.base_url = (base_url or os.environ.get("UNFOLD_URL") or DEFAULT_URL).rstrip("/")
        key = api_key if api_key is not None else os.environ.get("UNFOLD_API_KEY")
        headers = {"Accept": "application/json", "User-Agent": "unfold-cli"}
        if key:
            headers["Authorization"] = f"Bearer {key}"
        self.http = httpx.Client(
            base_url=self.base_url, headers=headers, timeout=httpx.Timeout(timeout, connect=5.0), transport=transport
        )

    def __enter__(self) -> UnfoldClient:
        return self

    def __exit__(self, *exc: type[BaseException] | BaseException | TracebackType | None) -> None:
        self.close()

    def close(self) -> None:
        self.http.close()

    def _unreachable(self, exc: httpx.TransportError) -> ApiError:
        if isinstance(exc, httpx.TimeoutException):
            return ApiError(f"Unfold at {self.base_url} did not answer in time ({type(exc).__name__})")
        reason = str(exc) or type(exc).__name__
        hint = "start it with `unfold up` or set UNFOLD_URL"
        return ApiError(f"cannot reach Unfold at {self.base_url} ({reason}); {hint}")

    def _request(self, method: str, path: str, **kwargs: Any) -> Any:
        try:
            response = self.http.request(method, path, **kwargs)
        except httpx.TransportError as exc:
            raise self._unreachable(exc) from None
        if response.status_code >= 400:
            raise ApiError(problem_message(response), response.status_code)
        if not response.content:
            return None
        try:
            return response.json()
        except ValueError:
            raise ApiError(f"{method} {path}: the answer is not JSON (is {self.base_url} an Unfold API?)") from None

    # -- health ---------------------------------------------------------------------------------
    def healthy(self, timeout: float = 2.0) -> bool:
        """Whether an Unfold API answers /healthz at base_url."""
        try:
            return self.http.get("/healthz", timeout=timeout).status_code == 200
        except httpx.HTTPError:
            return False

    # -- datasets -------------------------------------------------------------------------------
    def upload_dataset(self, file: BinaryIO, filename: str, **form: str | float | bool | None) -> JSON:
        """POST /v1/datasets; the file is streamed in chunks (read from `file` as it is sent)."""
        data = {key: _form_value(value) for key, value in form.items() if value is not None}
        result: JSON = self._request(
            "POST", "/v1/datasets", files={"file": (filename, file)}, data=data, timeout=UPLOAD_TIMEOUT
        )
        return result

    def list_datasets(self, limit: int = 50, cursor: str | None = None) -> JSON:
        return self._page("/v1/datasets", limit, cursor)

    def get_dataset(self, dataset_id: str) -> JSON:
        result: JSON = self._request("GET", f"/v1/datasets/{_segment(dataset_id)}")
        return result

    # -- jobs -----------------------------------------------------------------------------------
    def submit_job(self, spec: JSON) -> JSON:
        result: JSON = self._request("POST", "/v1/jobs", json=spec)
        return result

    def list_jobs(self, status: str | None = None, limit: int = 50, cursor: str | None = None) -> JSON:
        return self._page("/v1/jobs", limit, cursor, status=status)

    def get_job(self, job_id: str) -> JSON:
        result: JSON = self._request("GET", f"/v1/jobs/{_segment(job_id)}")
        return result

    def cancel_job(self, job_id: str) -> JSON:
        result: JSON = self._request("POST", f"/v1/jobs/{_segment(job_id)}/cancel")
        return result

    def job_events(self, job_id: str) -> Iterator[tuple[str, JSON]]:
        """(event, data) from GET /v1/jobs/{id}/events until the job ends; EventsUnavailable when
        the server does not stream them or the stream breaks (the caller then polls)."""
        path = f"/v1/jobs/{_segment(job_id)}/events"
        try:
            with self.http.stream("GET", path, headers={"Accept": "text/event-stream"}, timeout=EVENTS_TIMEOUT) as r:
                if r.status_code != 200 or not r.headers.get("content-type", "").startswith("text/event-stream"):
                    raise EventsUnavailable(f"GET {path} answered {r.status_code} {r.headers.get('content-type')}")
                for event in parse_events(r.iter_lines()):
                    yield event.event, json.loads(event.data)
        except (httpx.TransportError, ValueError) as exc:
            raise EventsUnavailable(f"the event stream broke: {exc or type(exc).__name__}") from None

    # -- models and queries ---------------------------------------------------------------------
    def list_models(self, limit: int = 50, cursor: str | None = None) -> JSON:
        return self._page("/v1/models", limit, cursor)

    def get_model(self, model_id: str) -> JSON:
        result: JSON = self._request("GET", f"/v1/models/{_segment(model_id)}")
        return result

    def recommend(
        self,
        model_id: str,
        user: str,
        k: int = 10,
        exclude_seen: bool = True,
        fallback: str = "none",
        filter: str | None = None,
    ) -> JSON:
        # fallback none: a user the model does not know is the API's 404 here, not the popular items a service
        # answers by default (the CLI and the dashboard look at a model, they do not serve shoppers).
        params: dict[str, Any] = {"k": k, "exclude_seen": str(exclude_seen).lower(), "fallback": fallback}
        if filter is not None:
            params["filter"] = filter
        path = f"/v1/models/{_segment(model_id)}/users/{_segment(user)}/recommendations"
        result: JSON = self._request("GET", path, params=params)
        return result

    def similar(self, model_id: str, item: str, k: int = 10, filter: str | None = None) -> JSON:
        path = f"/v1/models/{_segment(model_id)}/items/{_segment(item)}/similar"
        params: dict[str, Any] = {"k": k, **({"filter": filter} if filter is not None else {})}
        result: JSON = self._request("GET", path, params=params)
        return result

    def fold_in(self, model_id: str, items: list[str], k: int = 10, weights: list[float] | None = None) -> JSON:
        """Recommendations for a user the model has not seen, from the items they interacted with."""
        body: JSON = {"items": items, "k": k, **({"weights": weights} if weights is not None else {})}
        result: JSON = self._request("POST", f"/v1/models/{_segment(model_id)}/recommendations", json=body)
        return result

    # -- events ---------------------------------------------------------------------------------
    def post_events(self, dataset_id: str, ndjson: bytes) -> JSON:
        """POST /v1/datasets/{id}/events with an NDJSON body; a refusal's ApiError carries the line it names."""
        path = f"/v1/datasets/{_segment(dataset_id)}/events"
        try:
            response = self.http.post(
                path, content=ndjson, headers={"content-type": "application/x-ndjson"}, timeout=UPLOAD_TIMEOUT
            )
        except httpx.TransportError as exc:
            raise self._unreachable(exc) from None
        if response.status_code >= 400:
            try:
                line = response.json().get("line")
            except (ValueError, AttributeError):
                line = None
            raise ApiError(problem_message(response), response.status_code, line if isinstance(line, int) else None)
        result: JSON = response.json()
        return result

    # -- aliases --------------------------------------------------------------------------------
    def put_alias(self, name: str, model_id: str) -> JSON:
        result: JSON = self._request("PUT", f"/v1/aliases/{_segment(name)}", json={"model_id": model_id})
        return result

    def get_alias(self, name: str) -> JSON:
        result: JSON = self._request("GET", f"/v1/aliases/{_segment(name)}")
        return result

    def delete_alias(self, name: str) -> None:
        self._request("DELETE", f"/v1/aliases/{_segment(name)}")

    def put_policy(self, name: str, policy: JSON) -> JSON:
        result: JSON = self._request("PUT", f"/v1/aliases/{_segment(name)}/policy", json=policy)
        return result

    def delete_policy(self, name: str) -> None:
        self._request("DELETE", f"/v1/aliases/{_segment(name)}/policy")

    # -- tuning runs ----------------------------------------------------------------------------
    def submit_tuning(self, spec: JSON, search: JSON) -> JSON:
        result: JSON = self._request("POST", "/v1/tuning", json={"spec": spec, "search": search})
        return result

    def list_tuning(self, limit: int = 50, cursor: str | None = None) -> JSON:
        return self._page("/v1/tuning", limit, cursor)

    def get_tuning(self, tuning_id: str) -> JSON:
        result: JSON = self._request("GET", f"/v1/tuning/{_segment(tuning_id)}")
        return result

    def cancel_tuning(self, tuning_id: str) -> JSON:
        result: JSON = self._request("POST", f"/v1/tuning/{_segment(tuning_id)}/cancel")
        return result

    def _page(self, path: str, limit: int, cursor: str | None, **filters: str | None) -> JSON:
        params = {"limit": limit, "cursor": cursor, **filters}
        result: JSON = self._request("GET", path, params={k: v for k, v in params.items() if v is not None})
        return result
