"""What every artifact store offers, and which keys it accepts."""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Protocol

# A key is slash-separated names such as "models/mdl_0190ab". Names may not start with "." or
# "_": stores keep their own bookkeeping under such names (".tmp", "_COMPLETE", "_v"), so a key
# can never reach into them, nor climb out of the store with "..".
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")


def check_key(key: str) -> str:
    """The key itself when it is a valid artifact key; ValueError otherwise."""
    if not key or not all(_NAME.fullmatch(name) for name in key.split("/")):
        raise ValueError(f"artifact key escapes the store or is malformed: {key!r}")
    return key


def last_written(path: Path) -> float:
    """The newest modification time of a folder and everything in it (a writer touches what it writes)."""
    newest = path.stat().st_mtime
    for folder, dirs, files in os.walk(path):
        for name in (*dirs, *files):
            with contextlib.suppress(OSError):  # removed while we looked
                newest = max(newest, os.stat(os.path.join(folder, name)).st_mtime)
    return newest


def sweep(scratch: Path, older_than: float, now: float | None = None) -> list[str]:
    """Remove the entries of a scratch folder nothing wrote to for `older_than` seconds; their names.

    A process killed mid-upload or mid-publish leaves its staging folder behind forever otherwise.
    """
    now = time.time() if now is None else now
    removed = []
    for entry in scratch.iterdir() if scratch.is_dir() else ():
        try:
            stale = now - last_written(entry) > older_than
        except OSError:  # gone already
            continue
        if stale:
            if entry.is_dir():
                shutil.rmtree(entry, ignore_errors=True)
            else:
                entry.unlink(missing_ok=True)
            removed.append(entry.name)
    return removed


class ArtifactStore(Protocol):
    """Directories of files published whole under a key; readers never see half an artifact."""

    def staging_dir(self) -> Path:
        """A fresh local scratch directory to write an artifact into before publishing it."""
        ...

    def publish_dir(self, key: str, staged: Path) -> None:
        """Make a staged directory visible under `key` all at once (replacing an older one)."""
        ...

    def local_dir(self, key: str) -> Path:
        """A local directory holding the published artifact; FileNotFoundError when there is none."""
        ...

    def exists(self, key: str) -> bool:
        """Whether an artifact is published under `key`."""
        ...

    def delete(self, key: str) -> None:
        """Remove an artifact; missing ones are fine (deletes are idempotent)."""
        ...

    def discard(self, staged: Path) -> None:
        """Throw away a staging directory that will not be published."""
        ...

    def sweep_staging(self, older_than: float) -> list[str]:
        """Remove staging directories nothing wrote to for `older_than` seconds (left by killed processes)."""
        ...


@contextlib.contextmanager
def publishing(store: ArtifactStore, key: str) -> Iterator[Path]:
    """A fresh staging directory to write an artifact into, published whole under `key` when the block
    ends; thrown away, never published, when the block (or the publish) raises."""
    staged = store.staging_dir()
    try:
        yield staged
        store.publish_dir(key, staged)
    except BaseException:
        store.discard(staged)
        raise
