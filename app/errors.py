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


class NotFound(DomainError):
    status = 404
    title = "Not found"


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
