"""S3-compatible artifact store (AWS S3, MinIO, moto), so hosts share datasets and models.

Layout under `s3://<bucket>/<prefix>/`, for an artifact key such as `models/mdl_x`:

    <key>/_v/<version>/<file>...   the files of one published version (version = a fresh uuid)
    <key>/_COMPLETE                the marker: {"version": ..., "files": {relative path: size}}

Publishing uploads every file of the staged directory under a new version, then writes the
marker LAST. S3 replaces a single object atomically and reads after a write are strongly
consistent, so the marker is the switch: a reader sees either no artifact, the old version or
the new one, never a mix, and a crashed upload (no marker, or the marker of the older version)
stays invisible. Only after the switch is the version the old marker named deleted; a reader
that was still downloading it gets a missing object and starts again from the marker. Versions
left behind by crashed or concurrent publishers are invisible and go when the key is deleted.

Reading downloads a version into a local cache, `<cache>/<key>/_v/<version>/`, through a
temporary directory renamed into place, so a cached directory is always complete; the version
in the marker says whether the cached copy is still the published one.

Credentials come from boto3's usual chain (AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, a profile,
an instance role); transient errors are retried by botocore's standard retry mode.
"""

from __future__ import annotations

import json
import logging
import shutil
import uuid
from pathlib import Path
from typing import Any

import boto3
from botocore.config import Config
from botocore.exceptions import ClientError

from app.storage.base import check_key, sweep

log = logging.getLogger(__name__)

MARKER = "_COMPLETE"
VERSIONS = "_v"
MARKER_FORMAT = 1
# A reader racing a replacement may find the version it started on deleted; it starts over.
READ_ATTEMPTS = 3
_MISSING = {"404", "NoSuchKey", "NotFound"}


def _is_missing(exc: ClientError) -> bool:
    return str(exc.response.get("Error", {}).get("Code")) in _MISSING


def parse_s3_url(root: str) -> tuple[str, str]:
    """("bucket", "prefix/") from "s3://bucket/prefix" (the prefix may be empty)."""
    if not root.startswith("s3://"):
        raise ValueError(f"not an s3:// URL: {root!r}")
    bucket, _, prefix = root.removeprefix("s3://").partition("/")
    if not bucket:
        raise ValueError(f"no bucket in {root!r}")
    prefix = prefix.strip("/")
    return bucket, f"{prefix}/" if prefix else ""


def make_client(endpoint_url: str | None = None, region: str | None = None) -> Any:
    """An S3 client with standard retries; path-style addressing when an endpoint is given (MinIO)."""
    config = Config(
        retries={"mode": "standard", "max_attempts": 5},
        s3={"addressing_style": "path"} if endpoint_url else {},
        # Checksums only where the API requires them: S3-compatible servers lag behind AWS here.
        request_checksum_calculation="when_required",
        response_checksum_validation="when_required",
    )
    return boto3.session.Session().client("s3", endpoint_url=endpoint_url, region_name=region, config=config)


class S3ArtifactStore:
    """Artifacts as versioned object prefixes in a bucket, published by writing a marker last."""

    def __init__(self, root: str, cache_dir: str | Path, client: Any) -> None:
        self.bucket, self.prefix = parse_s3_url(root)
        self.client = client
        self.cache = Path(cache_dir).resolve()
        (self.cache / ".tmp").mkdir(parents=True, exist_ok=True)

    def _object(self, key: str, *parts: str) -> str:
        return self.prefix + "/".join((check_key(key), *parts))

    def _read_marker(self, key: str) -> dict[str, Any] | None:
        try:
            body = self.client.get_object(Bucket=self.bucket, Key=self._object(key, MARKER))["Body"].read()
        except ClientError as exc:
            if _is_missing(exc):
                return None
            raise
        return json.loads(body)  # type: ignore[no-any-return]

    def staging_dir(self) -> Path:
        """A fresh scratch directory in the local cache; publishing uploads it."""
        path = self.cache / ".tmp" / uuid.uuid4().hex
        path.mkdir(parents=True)
        return path

    def publish_dir(self, key: str, staged: Path) -> None:
        """Upload a staged directory as a new version, switch the marker to it, drop the old one."""
        previous = self._read_marker(key)
        version = uuid.uuid4().hex
        files: dict[str, int] = {}
        for path in sorted(p for p in staged.rglob("*") if p.is_file()):
            relative = path.relative_to(staged).as_posix()
            self.client.upload_file(str(path), self.bucket, self._object(key, VERSIONS, version, relative))
            files[relative] = path.stat().st_size
        marker = {"format": MARKER_FORMAT, "version": version, "files": files}
        self.client.put_object(
            Bucket=self.bucket,
            Key=self._object(key, MARKER),
            Body=json.dumps(marker, indent=1).encode(),
            ContentType="application/json",
        )
        shutil.rmtree(staged, ignore_errors=True)
        if previous is not None and previous.get("version") != version:
            # Published already: a failed cleanup only leaves invisible objects that delete() sweeps.
            try:
                self._delete_prefix(self._object(key, VERSIONS, str(previous["version"])) + "/")
            except Exception:
                log.warning("artifact %s: could not delete the replaced version", key, exc_info=True)

    def local_dir(self, key: str) -> Path:
        """A local copy of the published version, downloaded once and reused while it is current."""
        for attempt in range(READ_ATTEMPTS):
            marker = self._read_marker(key)
            if marker is None:
                shutil.rmtree(self.cache / check_key(key), ignore_errors=True)  # a copy of a deleted artifact
                raise FileNotFoundError(f"no artifact at {key!r}")
            target = self.cache / key / VERSIONS / str(marker["version"])
            if self._complete(target, marker):
                return target
            try:
                self._download(key, marker, target)
            except ClientError as exc:
                if not _is_missing(exc) or attempt == READ_ATTEMPTS - 1:
                    raise
                log.info("artifact %s was replaced while downloading it; reading it again", key)
                continue
            self._prune_cache(key, keep=target)
            return target
        raise AssertionError("unreachable")

    @staticmethod
    def _complete(directory: Path, marker: dict[str, Any]) -> bool:
        if not directory.is_dir():
            return False
        files: dict[str, int] = marker["files"]
        return all(
            (directory / name).is_file() and (directory / name).stat().st_size == size for name, size in files.items()
        )

    def _download(self, key: str, marker: dict[str, Any], target: Path) -> None:
        version = check_key(str(marker["version"]))
        tmp = self.cache / ".tmp" / f"dl-{uuid.uuid4().hex}"
        tmp.mkdir()
        try:
            for name, size in marker["files"].items():
                if name.startswith("/") or ".." in name.split("/"):
                    raise ValueError(f"artifact {key!r}: the marker names a file outside it: {name!r}")
                path = tmp / name
                path.parent.mkdir(parents=True, exist_ok=True)
                self.client.download_file(self.bucket, self._object(key, VERSIONS, version, name), str(path))
                if path.stat().st_size != size:
                    raise OSError(f"artifact {key!r}: {name} has {path.stat().st_size} bytes, the marker says {size}")
            target.parent.mkdir(parents=True, exist_ok=True)
            try:
                tmp.rename(target)
            except OSError:
                if self._complete(target, marker):
                    return  # a concurrent reader got there first
                # A damaged copy (cached directories are only ever renamed in whole): set it aside.
                trash = self.cache / ".tmp" / f"old-{uuid.uuid4().hex}"
                target.rename(trash)
                shutil.rmtree(trash, ignore_errors=True)
                tmp.rename(target)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)

    def _prune_cache(self, key: str, keep: Path) -> None:
        """Drop cached copies of versions that are no longer published."""
        for old in (self.cache / key / VERSIONS).iterdir():
            if old != keep:
                shutil.rmtree(old, ignore_errors=True)

    def exists(self, key: str) -> bool:
        try:
            self.client.head_object(Bucket=self.bucket, Key=self._object(key, MARKER))
        except ClientError as exc:
            if _is_missing(exc):
                return False
            raise
        return True

    def delete(self, key: str) -> None:
        """Remove the marker first (the artifact is gone for readers), then every object and the cache."""
        self.client.delete_object(Bucket=self.bucket, Key=self._object(key, MARKER))
        self._delete_prefix(self._object(key) + "/")
        shutil.rmtree(self.cache / key, ignore_errors=True)

    def _delete_prefix(self, prefix: str) -> None:
        paginator = self.client.get_paginator("list_objects_v2")
        for page in paginator.paginate(Bucket=self.bucket, Prefix=prefix):
            objects = [{"Key": o["Key"]} for o in page.get("Contents", [])]
            if objects:
                reply = self.client.delete_objects(Bucket=self.bucket, Delete={"Objects": objects, "Quiet": True})
                if reply.get("Errors"):
                    raise OSError(
                        f"could not delete {len(reply['Errors'])} objects under {prefix!r}: {reply['Errors'][0]}"
                    )

    def sweep_staging(self, older_than: float) -> list[str]:
        """Remove staging directories nothing wrote to for `older_than` seconds (left by killed processes)."""
        return sweep(self.cache / ".tmp", older_than)

    def discard(self, staged: Path) -> None:
        shutil.rmtree(staged, ignore_errors=True)
