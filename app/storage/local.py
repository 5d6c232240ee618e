"""Local artifact store: datasets and models as directories of npz/json files under one root.

Writes go to a temporary name and are renamed into place, so a reader sees a directory
only once it is complete (a crashed writer leaves no half-written artifact behind).
"""

from __future__ import annotations

import os
import shutil
import uuid
from pathlib import Path

from app.storage.base import check_key, sweep


class LocalArtifactStore:
    """Artifacts as directories under a local root (the embedded default)."""

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root).resolve()
        self.root.mkdir(parents=True, exist_ok=True)
        (self.root / ".tmp").mkdir(exist_ok=True)

    def _path(self, key: str) -> Path:
        path = (self.root / check_key(key)).resolve()
        if self.root not in path.parents:
            raise ValueError(f"artifact key escapes the store: {key!r}")
        return path

    def staging_dir(self) -> Path:
        """A fresh scratch directory on the same filesystem, so publishing is a rename."""
        path = self.root / ".tmp" / uuid.uuid4().hex
        path.mkdir(parents=True)
        return path

    def publish_dir(self, key: str, staged: Path) -> None:
        """Atomically make a staged directory visible under `key` (replacing an older one)."""
        target = self._path(key)
        target.parent.mkdir(parents=True, exist_ok=True)
        if target.exists():
            trash = self.root / ".tmp" / f"old-{uuid.uuid4().hex}"
            target.rename(trash)
            shutil.rmtree(trash, ignore_errors=True)
        staged.rename(target)

    def local_dir(self, key: str) -> Path:
        """The directory of a published artifact, readable in place."""
        path = self._path(key)
        if not path.is_dir():
            raise FileNotFoundError(f"no artifact at {key!r}")
        return path

    def exists(self, key: str) -> bool:
        return self._path(key).exists()

    def delete(self, key: str) -> None:
        """Remove an artifact; missing ones are fine (deletes are idempotent)."""
        shutil.rmtree(self._path(key), ignore_errors=True)

    def sweep_staging(self, older_than: float) -> list[str]:
        """Remove staging directories nothing wrote to for `older_than` seconds (left by killed processes)."""
        return sweep(self.root / ".tmp", older_than)

    def discard(self, staged: Path) -> None:
        shutil.rmtree(staged, ignore_errors=True)
