"""Domain errors raised by services; app.api.errors maps them to problem+json in one place."""

from __future__ import annotations


class DomainError(Exception):
    """Base of every error a client can cause; `status` is the HTTP status it maps to."""

    status = 400
    title = "Bad request"

    def __init__(self, detail: str, **extra: object) -> None:
        super().__init__(detail)
        self.detail = detail
        self.extra = extra
        self.headers: dict[str, str] = {}  # response headers the status calls for (WWW-Authenticate...)


class NotFound(DomainError):
    status = 404
    title = "Not found"


class Unauthorized(DomainError):
    """No valid API key. Another tenant's resource is a NotFound instead, so ids do not leak."""

    status = 401
    title = "Unauthorized"

    def __init__(self, detail: str, **extra: object) -> None:
        super().__init__(detail, **extra)
        self.headers["WWW-Authenticate"] = "Bearer"


class TooManyRequests(DomainError):
    """Over a rate or concurrency limit; the client may try again after `retry_after` seconds."""

    status = 429
    title = "Too many requests"

    def __init__(self, detail: str, *, retry_after: int, **extra: object) -> None:
        super().__init__(detail, **extra)
        self.headers["Retry-After"] = str(retry_after)


class Conflict(DomainError):
    status = 409
    title = "Conflict"


class InvalidInput(DomainError):
    """Input that parsed but cannot be used (bad upload line, unknown dataset in a spec...)."""

    status = 422
    title = "Unprocessable content"


class TooLarge(DomainError):
    status = 413
    title = "Content too large"


class Unavailable(DomainError):
    status = 503
    title = "Service unavailable"


class LimitExceeded(DomainError):
    """A value over a configured limit (app.limits): the problem names the field, limit, value and setting.

    413 for sizes (upload bytes, rows, request body), 422 for spec and query values.
    """

    status = 422
    title = "Limit exceeded"

    def __init__(
        self, field: str, value: object, limit: object, setting: str, *, status: int = 422, detail: str | None = None
    ) -> None:
        detail = detail or f"{field} is {value}, over the limit of {limit} (set by {setting})"
        # `errors` in the shape of request-validation 422s, so a client reads both the same way.
        errors = [{"field": field, "message": detail, "type": "limit_exceeded"}]
        super().__init__(detail, field=field, value=value, limit=limit, setting=setting, errors=errors)
        self.status = status
        self.title = "Content too large" if status == 413 else "Limit exceeded"
