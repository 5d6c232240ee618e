"""API keys: create (the plaintext is returned once, only its sha256 is kept), list, revoke, resolve.

A key is `unf_` + 32 random bytes (urlsafe base64). With 256 bits of randomness there is nothing
to brute-force, so a fast unsalted sha256 is the right hash: a lookup is one indexed equality on
the digest, and a database leak does not give the keys away.
"""

from __future__ import annotations

import hashlib
import re
import secrets
from datetime import UTC, datetime, timedelta
from typing import Protocol

from sqlalchemy import exists, select
from sqlalchemy.orm import Session

from app.errors import InvalidInput, NotFound
from app.models import ApiKey, new_id, utcnow

KEY_PREFIX = "unf_"
DISPLAY_CHARS = 12  # "unf_" and the first 8 random characters: enough to tell keys apart in a list
TENANT_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}")
# last_used_at is a hint for whoever reviews keys; writing it at most this often keeps the
# authentication path (which the API caches anyway) from writing on every lookup.
LAST_USED_RESOLUTION = timedelta(minutes=5)


class AuthSettings(Protocol):
    """The part of the settings that decides whether keys are required."""

    @property
    def require_auth(self) -> bool: ...


def hash_key(plaintext: str) -> str:
    """The stored form of a key."""
    return hashlib.sha256(plaintext.encode()).hexdigest()


def create_key(session: Session, tenant: str, name: str | None = None) -> tuple[ApiKey, str]:
    """A new key for `tenant`: (its row, the plaintext key, which is not stored and shown only now)."""
    if not TENANT_PATTERN.fullmatch(tenant):
        raise InvalidInput(
            f"tenant {tenant!r} must be 1-100 letters, digits, '.', '_' or '-', starting with a letter or digit",
            field="tenant",
        )
    if name is not None and len(name) > 200:
        raise InvalidInput("name is longer than 200 characters", field="name")
    plaintext = KEY_PREFIX + secrets.token_urlsafe(32)
    key = ApiKey(
        id=new_id("key"), tenant=tenant, name=name, key_hash=hash_key(plaintext), prefix=plaintext[:DISPLAY_CHARS]
    )
    session.add(key)
    session.commit()
    return key, plaintext


def list_keys(session: Session) -> list[ApiKey]:
    """Every key, revoked ones included, newest first."""
    return list(session.scalars(select(ApiKey).order_by(ApiKey.id.desc())))


def revoke_key(session: Session, key_id: str) -> ApiKey:
    """Revoke a key (again is a no-op); the API stops accepting it within its cache TTL."""
    key = session.get(ApiKey, key_id)
    if key is None:
        raise NotFound(f"no API key {key_id!r}")
    if key.revoked_at is None:
        key.revoked_at = utcnow()
        session.commit()
    return key


def resolve(session: Session, plaintext: str) -> str | None:
    """The tenant of a valid (known, not revoked) key; None otherwise."""
    key = session.scalars(select(ApiKey).where(ApiKey.key_hash == hash_key(plaintext))).first()
    if key is None or key.revoked_at is not None:
        return None
    now = utcnow()
    last = as_utc(key.last_used_at)
    if last is None or now - last > LAST_USED_RESOLUTION:
        key.last_used_at = now
        session.commit()
    return key.tenant


def auth_required(session: Session, settings: AuthSettings) -> bool:
    """Keys are required when the settings say so, or as soon as one key that is not revoked exists."""
    if settings.require_auth:
        return True
    return bool(session.scalar(select(exists().where(ApiKey.revoked_at.is_(None)))))


def as_utc(value: datetime | None) -> datetime | None:
    """A stored time with its zone (SQLite hands datetimes back without one; they are stored in UTC)."""
    return value if value is None or value.tzinfo else value.replace(tzinfo=UTC)
