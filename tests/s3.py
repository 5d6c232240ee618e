"""A real S3-compatible server for tests: moto's S3 in server mode on a free local port.

It runs in a thread of the test process and speaks HTTP, so processes the test starts (an
`unfold worker`) reach it like they would reach MinIO or AWS S3.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

import pytest

# moto accepts any credentials; fixed ones keep boto3 from looking for real ones (profiles, IMDS).
CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": "unfold-test",
    "AWS_SECRET_ACCESS_KEY": "unfold-test-secret",
    "AWS_DEFAULT_REGION": "us-east-1",
}
REGION = "us-east-1"


@contextmanager
def s3_server() -> Iterator[str]:
    """Start moto's S3 server; yields its endpoint URL. Skips without moto, except in CI."""
    try:
        from moto.server import ThreadedMotoServer
    except ImportError as exc:
        message = f"moto's S3 server is not installed ({exc}); pip install -e .[dev]"
        if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
            pytest.fail(f"{message}; CI must run the S3 tests")
        pytest.skip(message)
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    try:
        host, port = server.get_host_and_port()
        yield f"http://{host}:{port}"
    finally:
        server.stop()


def create_bucket(endpoint_url: str) -> str:
    """A fresh bucket on the server; returns its name."""
    from app.storage.s3 import make_client

    name = f"unfold-test-{uuid.uuid4().hex[:12]}"
    make_client(endpoint_url, REGION).create_bucket(Bucket=name)
    return name
