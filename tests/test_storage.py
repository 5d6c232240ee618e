"""The artifact store contract, for the local directory and for S3 (moto's server, a real S3 API)."""

from __future__ import annotations

from pathlib import Path

import pytest

from app.config import Settings
from app.storage import ArtifactStore, LocalArtifactStore, open_store, publishing
from app.storage.s3 import MARKER, S3ArtifactStore, parse_s3_url
from tests.s3 import CREDENTIALS, REGION, create_bucket


@pytest.fixture
def s3_root(s3_endpoint: str, monkeypatch: pytest.MonkeyPatch) -> str:
    for name, value in CREDENTIALS.items():
        monkeypatch.setenv(name, value)
    return f"s3://{create_bucket(s3_endpoint)}/unfold"


def _s3_store(root: str, endpoint: str, var_dir: Path) -> S3ArtifactStore:
    store = open_store(root, Settings(var_dir=var_dir, s3_endpoint_url=endpoint, s3_region=REGION))
    assert isinstance(store, S3ArtifactStore)
    return store


@pytest.fixture(params=["local", "s3"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> ArtifactStore:
    if request.param == "local":
        return open_store(str(tmp_path / "artifacts"))
    return _s3_store(request.getfixturevalue("s3_root"), request.getfixturevalue("s3_endpoint"), tmp_path / "var")


@pytest.fixture
def s3(s3_root: str, s3_endpoint: str, tmp_path: Path) -> S3ArtifactStore:
    return _s3_store(s3_root, s3_endpoint, tmp_path / "host-a")


def _publish(store: ArtifactStore, key: str, files: dict[str, bytes]) -> None:
    staged = store.staging_dir()
    for name, content in files.items():
        (staged / name).parent.mkdir(parents=True, exist_ok=True)
        (staged / name).write_bytes(content)
    store.publish_dir(key, staged)
    assert not staged.exists()


def _read(directory: Path) -> dict[str, bytes]:
    return {p.relative_to(directory).as_posix(): p.read_bytes() for p in directory.rglob("*") if p.is_file()}


def _objects(store: S3ArtifactStore) -> list[str]:
    pages = store.client.get_paginator("list_objects_v2").paginate(Bucket=store.bucket)
    return sorted(o["Key"] for page in pages for o in page.get("Contents", []))


# --- the contract, for both stores -------------------------------------------------------------

MODEL = {"model.json": b'{"format_version": 1}', "model.npz": bytes(range(256)) * 40, "index/hnsw.bin": b"\x00\x01"}


def test_publish_then_read_back_the_same_files(store: ArtifactStore):
    assert not store.exists("models/mdl_1")
    _publish(store, "models/mdl_1", MODEL)
    assert store.exists("models/mdl_1")
    assert _read(store.local_dir("models/mdl_1")) == MODEL
    assert _read(store.local_dir("models/mdl_1")) == MODEL  # a second read (the S3 cache) is the same


def test_an_empty_directory_is_an_artifact_too(store: ArtifactStore):
    _publish(store, "datasets/ds_empty", {})
    assert store.exists("datasets/ds_empty") and _read(store.local_dir("datasets/ds_empty")) == {}


def test_missing_artifact_is_file_not_found(store: ArtifactStore):
    with pytest.raises(FileNotFoundError):
        store.local_dir("models/mdl_missing")


def test_replacing_a_key_leaves_only_the_new_files(store: ArtifactStore):
    _publish(store, "datasets/ds_1", {"a.npz": b"old", "old-only.json": b"{}"})
    assert _read(store.local_dir("datasets/ds_1")) == {"a.npz": b"old", "old-only.json": b"{}"}
    _publish(store, "datasets/ds_1", {"a.npz": b"new content"})
    assert _read(store.local_dir("datasets/ds_1")) == {"a.npz": b"new content"}


def test_delete_is_idempotent(store: ArtifactStore):
    store.delete("models/mdl_never")
    _publish(store, "models/mdl_1", MODEL)
    _publish(store, "models/mdl_2", {"x": b"y"})
    store.local_dir("models/mdl_1")
    store.delete("models/mdl_1")
    store.delete("models/mdl_1")
    assert not store.exists("models/mdl_1")
    with pytest.raises(FileNotFoundError):
        store.local_dir("models/mdl_1")
    assert _read(store.local_dir("models/mdl_2")) == {"x": b"y"}


def test_discard_removes_the_staging_dir(store: ArtifactStore):
    staged = store.staging_dir()
    (staged / "f").write_bytes(b"1")
    store.discard(staged)
    assert not staged.exists()


def test_publishing_publishes_the_block_whole_or_discards_it(store: ArtifactStore):
    with publishing(store, "models/mdl_1") as staged:
        (staged / "model.json").write_bytes(b"{}")
    assert not staged.exists() and _read(store.local_dir("models/mdl_1")) == {"model.json": b"{}"}
    with pytest.raises(RuntimeError, match="half written"), publishing(store, "models/mdl_2") as staged:
        (staged / "model.json").write_bytes(b"{}")
        raise RuntimeError("half written")
    assert not staged.exists() and not store.exists("models/mdl_2")
    with pytest.raises(ValueError, match="artifact key"), publishing(store, "../x") as staged:
        (staged / "model.json").write_bytes(b"{}")
    assert not staged.exists()  # a publish that fails discards what was staged too


@pytest.mark.parametrize(
    "key", ["", "../x", "models/../../x", "/etc/passwd", "models//x", ".tmp/x", "m/_COMPLETE", "a\\b"]
)
def test_keys_that_escape_or_reach_into_bookkeeping_are_rejected(store: ArtifactStore, key: str):
    staged = store.staging_dir()
    with pytest.raises(ValueError, match="artifact key"):
        store.publish_dir(key, staged)
    for call in (store.local_dir, store.exists, store.delete):
        with pytest.raises(ValueError, match="artifact key"):
            call(key)


# --- S3 specifics ------------------------------------------------------------------------------


def test_open_store_picks_the_store_by_scheme(tmp_path: Path):
    assert isinstance(open_store(str(tmp_path / "a")), LocalArtifactStore)
    assert isinstance(open_store(f"file://{tmp_path / 'b'}"), LocalArtifactStore)
    with pytest.raises(ValueError, match="unsupported"):
        open_store("gs://bucket/x")
    assert parse_s3_url("s3://bucket") == ("bucket", "")
    assert parse_s3_url("s3://bucket/a/b/") == ("bucket", "a/b/")
    with pytest.raises(ValueError, match="no bucket"):
        parse_s3_url("s3:///prefix")


def test_layout_is_one_version_and_a_marker(s3: S3ArtifactStore):
    _publish(s3, "models/mdl_1", {"model.npz": b"12345"})
    [marker, data] = _objects(s3)
    assert marker == f"unfold/models/mdl_1/{MARKER}"
    assert data.startswith("unfold/models/mdl_1/_v/") and data.endswith("/model.npz")


def _on_write(store: S3ArtifactStore, handler) -> None:
    """Call handler(operation, key) before every write the client sends (uploads included)."""

    def hook(params, model, **_):
        if model.name in ("PutObject", "CreateMultipartUpload"):
            handler(model.name, params["Key"])

    store.client.meta.events.register("before-parameter-build.s3", hook, unique_id="unfold-test-write")


def test_the_marker_is_written_last(s3: S3ArtifactStore):
    writes: list[str] = []
    _on_write(s3, lambda _, key: writes.append(key))
    _publish(s3, "models/mdl_1", MODEL)
    assert len(writes) == len(MODEL) + 1 and writes[-1].endswith(f"/{MARKER}")
    assert all("/_v/" in key for key in writes[:-1])


def test_a_crashed_upload_is_invisible(s3: S3ArtifactStore):
    _publish(s3, "models/mdl_old", {"model.npz": b"published"})

    def crash_at_the_marker(_, key: str) -> None:
        if key.endswith(MARKER):
            raise ConnectionError("the worker died before the marker")

    _on_write(s3, crash_at_the_marker)
    for key in ("models/mdl_new", "models/mdl_old"):
        staged = s3.staging_dir()
        (staged / "model.npz").write_bytes(b"half of a new version")
        with pytest.raises(ConnectionError):
            s3.publish_dir(key, staged)
        s3.discard(staged)
    assert any("mdl_new/_v/" in k for k in _objects(s3))  # the files are up there...
    assert not s3.exists("models/mdl_new")  # ...but without a marker nobody sees them
    with pytest.raises(FileNotFoundError):
        s3.local_dir("models/mdl_new")
    assert _read(s3.local_dir("models/mdl_old")) == {"model.npz": b"published"}  # the old version stays whole
    s3.client.meta.events.unregister("before-parameter-build.s3", unique_id="unfold-test-write")
    s3.delete("models/mdl_new")
    s3.delete("models/mdl_old")
    assert _objects(s3) == []  # deleting a key also sweeps what crashed uploads left


def test_replacing_deletes_the_old_version(s3: S3ArtifactStore):
    _publish(s3, "models/mdl_1", {"a": b"1"})
    _publish(s3, "models/mdl_1", {"b": b"2"})
    assert len({k.split("/_v/")[1].split("/")[0] for k in _objects(s3) if "/_v/" in k}) == 1


def test_a_reader_racing_a_replacement_gets_the_new_version_whole(s3: S3ArtifactStore, monkeypatch: pytest.MonkeyPatch):
    _publish(s3, "models/mdl_1", {"a": b"old", "b": b"old"})
    download = s3.client.download_file
    raced: list[bool] = []

    def replace_first(bucket: str, key: str, path: str) -> None:
        if not raced:  # the reader has read the old marker; a writer replaces the artifact now
            raced.append(True)
            _publish(s3, "models/mdl_1", {"a": b"new", "b": b"new"})
        download(bucket, key, path)

    monkeypatch.setattr(s3.client, "download_file", replace_first)
    assert _read(s3.local_dir("models/mdl_1")) == {"a": b"new", "b": b"new"}


def test_reads_reuse_the_cached_copy_while_it_is_current(s3: S3ArtifactStore, monkeypatch: pytest.MonkeyPatch):
    _publish(s3, "models/mdl_1", MODEL)
    downloads: list[str] = []
    download = s3.client.download_file
    monkeypatch.setattr(s3.client, "download_file", lambda b, k, p: downloads.append(k) or download(b, k, p))
    first = s3.local_dir("models/mdl_1")
    assert len(downloads) == len(MODEL)
    assert s3.local_dir("models/mdl_1") == first and len(downloads) == len(MODEL)
    (first / "model.npz").write_bytes(b"damaged")  # a cached copy that no longer matches the marker
    assert _read(s3.local_dir("models/mdl_1")) == MODEL and len(downloads) == 2 * len(MODEL)
    _publish(s3, "models/mdl_1", {"model.npz": b"v2"})
    second = s3.local_dir("models/mdl_1")
    assert second != first and not first.exists()  # the superseded copy is dropped


def test_hosts_share_artifacts_through_the_bucket(s3: S3ArtifactStore, s3_root: str, s3_endpoint: str, tmp_path: Path):
    other_host = _s3_store(s3_root, s3_endpoint, tmp_path / "host-b")
    _publish(s3, "datasets/ds_1", {"arrays.npz": b"data"})
    assert _read(other_host.local_dir("datasets/ds_1")) == {"arrays.npz": b"data"}
    cached = other_host.local_dir("datasets/ds_1")
    s3.delete("datasets/ds_1")
    with pytest.raises(FileNotFoundError):
        other_host.local_dir("datasets/ds_1")
    assert not cached.exists()  # its copy of a deleted artifact goes too
