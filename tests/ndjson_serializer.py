"""Schemathesis sends NDJSON bodies (POST /v1/datasets/{id}/events documents one as a string) as that string's bytes.

Imported by the schemathesis test modules: a media type without a serializer fails the whole run.
"""

from __future__ import annotations

import json
from typing import Any

import schemathesis


@schemathesis.serializer("application/x-ndjson")
def ndjson(ctx: Any, value: Any) -> bytes:
    return value.encode() if isinstance(value, str) else json.dumps(value).encode()
