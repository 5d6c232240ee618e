"""The embedded broker keeps every folder under UNFOLD_VAR_DIR, none in the working directory."""

from __future__ import annotations

from pathlib import Path

from app.config import Settings
from workers.celery_app import broker_options


def test_filesystem_broker_folders_live_under_var_dir(tmp_path: Path) -> None:
    var = tmp_path / "var"
    url, options = broker_options(Settings(var_dir=var))
    assert url.startswith("filesystem://")
    folders = {key: Path(str(value)) for key, value in options.items() if key.endswith("folder") or "folder_" in key}
    assert {"control_folder", "data_folder_in", "data_folder_out", "processed_folder"} <= set(folders)
    for key, folder in folders.items():
        assert folder.is_relative_to(var.resolve()), key
        assert folder.is_dir(), key


def test_a_server_broker_gets_a_visibility_timeout_longer_than_any_training() -> None:
    url, options = broker_options(Settings(broker_url="redis://127.0.0.1:6379/0"))
    assert url == "redis://127.0.0.1:6379/0"
    assert int(str(options["visibility_timeout"])) >= 3600
