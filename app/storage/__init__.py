"""Artifact store: a local directory by default, S3-compatible when the root is an s3:// URL."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from app.storage.base import ArtifactStore, check_key, publishing
from app.storage.local import LocalArtifactStore

if TYPE_CHECKING:
    from app.config import Settings

__all__ = ["ArtifactStore", "LocalArtifactStore", "check_key", "open_store", "publishing"]


def open_store(root: str, settings: Settings | None = None) -> ArtifactStore:
    """The artifact store for a configured root: a local path, file://path or s3://bucket/prefix.

    For s3:// the endpoint, region and local cache come from `settings` (UNFOLD_S3_ENDPOINT_URL,
    UNFOLD_S3_REGION, <UNFOLD_VAR_DIR>/s3-cache); without settings boto3's own environment applies.
    """
    if root.startswith("s3://"):
        from app.storage.s3 import S3ArtifactStore, make_client  # boto3 only where S3 is used

        var_dir = settings.var_dir if settings is not None else Path("var")
        # An empty variable (UNFOLD_S3_ENDPOINT_URL=) means unset, as boto3 expects None.
        client = make_client(
            (settings.s3_endpoint_url or None) if settings is not None else None,
            (settings.s3_region or None) if settings is not None else None,
        )
        return S3ArtifactStore(root, var_dir / "s3-cache", client)
    if "://" in root and not root.startswith("file://"):
        raise ValueError(f"unsupported artifact store {root!r}: use a local path, file:// or s3://")
    return LocalArtifactStore(root.removeprefix("file://"))
