"""The worker's janitor removes staging folders a killed process left behind, and nothing else."""

from __future__ import annotations

import os
import time
from pathlib import Path

from app.migrate import upgrade
from app.storage import LocalArtifactStore
from workers.recovery import RecoveryLoop


def _age(path: Path, seconds: float) -> None:
    then = time.time() - seconds
    for folder, dirs, files in os.walk(path):
        for name in (*dirs, *files):
            os.utime(Path(folder) / name, (then, then))
    os.utime(path, (then, then))


def test_the_reaper_loop_sweeps_stale_staging_folders(settings):
    settings = settings.model_copy(update={"staging_max_age_seconds": 3600.0})
    upgrade(settings.resolved_database_url)
    store = LocalArtifactStore(settings.resolved_artifact_root)
    abandoned = store.staging_dir()  # an upload whose API process was killed
    (abandoned / "part.csv").write_bytes(b"u,i\n" * 100)
    _age(abandoned, 2 * 3600)
    busy = store.staging_dir()  # an old folder someone still writes into
    (busy / "old.bin").write_bytes(b"x")
    _age(busy, 2 * 3600)
    (busy / "new.bin").write_bytes(b"y")
    fresh = store.staging_dir()
    published = store.staging_dir()
    (published / "model.json").write_text("{}")
    store.publish_dir("models/mdl_kept", published)
    _age(store.local_dir("models/mdl_kept"), 10 * 24 * 3600)  # published artifacts are never swept

    RecoveryLoop(settings, celery=None, slots=1).tick()  # type: ignore[arg-type]

    assert not abandoned.exists()
    assert busy.exists() and fresh.exists()
    assert (store.local_dir("models/mdl_kept") / "model.json").exists()


def test_the_s3_stores_local_staging_is_swept_too(tmp_path):
    from app.storage.s3 import S3ArtifactStore

    store = S3ArtifactStore("s3://bucket/prefix", tmp_path / "cache", client=None)
    stale, fresh = store.staging_dir(), store.staging_dir()
    _age(stale, 100)
    assert store.sweep_staging(50) == [stale.name]
    assert not stale.exists() and fresh.exists()
