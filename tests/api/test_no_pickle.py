"""No unsafe deserialisation: artifacts are npz/npy without object arrays, JSON or faiss files, never pickles.

Three checks: the code (every np.load/np.save/torch.load call says so, nothing imports pickle), the
artifacts a real upload and real WALS and SGD trainings leave on disk, and the loaders refusing a
pickled array planted where an artifact should be.
"""

from __future__ import annotations

import ast
import io
import json
import pickle
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from app.recsys.synth import PlantedConfig, planted_communities, write_planted_csv
from app.services.models import model_key
from tests.helpers import upload

REPO = Path(__file__).resolve().parents[2]
SOURCES = ("app", "workers", "bench", "migrations")
# Formats an artifact may have: numpy without pickle, JSON, safetensors, and faiss's own index format.
ALLOWED_SUFFIXES = {".npz", ".npy", ".json", ".safetensors", ".faiss"}
UNSAFE_MODULES = {"pickle", "cPickle", "dill", "cloudpickle", "joblib", "shelve", "marshal", "jsonpickle"}


# --- the scanner -----------------------------------------------------------------------------


def pickle_header(data: bytes) -> bool:
    """A pickle of protocol 2 or later starts with the PROTO opcode: b'\\x80' and the protocol byte."""
    return len(data) >= 2 and data[0] == 0x80 and 2 <= data[1] <= 5


def npy_problems(name: str, data: bytes) -> list[str]:
    """What is wrong with one .npy payload: object dtype, a pickle after the header, or a load that needs pickle."""
    fp = io.BytesIO(data)
    try:
        version = np.lib.format.read_magic(fp)
        read_header = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
        _, _, dtype = read_header(fp)
    except ValueError as exc:
        return [f"{name}: not a .npy array ({exc})"]
    problems = []
    if dtype.hasobject:
        problems.append(f"{name}: dtype {dtype} holds Python objects (stored as a pickle)")
    if pickle_header(data[fp.tell() : fp.tell() + 2]):
        problems.append(f"{name}: pickle stream after the header")
    try:
        np.load(io.BytesIO(data), allow_pickle=False)
    except ValueError as exc:
        problems.append(f"{name}: does not load with allow_pickle=False ({exc})")
    return problems


def artifact_problems(root: Path) -> tuple[list[Path], list[str]]:
    """(every file under root, what is wrong with them)."""
    files = sorted(p for p in root.rglob("*") if p.is_file())
    problems = []
    for path in files:
        rel = str(path.relative_to(root))
        data = path.read_bytes()
        if pickle_header(data):
            problems.append(f"{rel}: starts with a pickle header")
        if path.suffix not in ALLOWED_SUFFIXES:
            problems.append(f"{rel}: {path.suffix or 'no suffix'} is not an allowed artifact format")
        if path.suffix == ".npy":
            problems += npy_problems(rel, data)
        elif path.suffix == ".npz":
            with zipfile.ZipFile(path) as z:
                for member in z.namelist():
                    problems += npy_problems(f"{rel}:{member}", z.read(member))
            try:
                with np.load(path, allow_pickle=False) as z:
                    for key in z.files:
                        z[key]  # every array loads without pickle
            except ValueError as exc:
                problems.append(f"{rel}: does not load with allow_pickle=False ({exc})")
        elif path.suffix == ".json":
            try:
                json.loads(data)
            except ValueError as exc:
                problems.append(f"{rel}: not JSON ({exc})")
    return files, problems


def test_the_scanner_finds_pickles(tmp_path: Path):
    (tmp_path / "ok.json").write_text("{}")
    np.savez(tmp_path / "ok.npz", a=np.arange(3), ids=np.array(["u1", "u2"]))
    np.savez(tmp_path / "objects.npz", a=np.array([{"x": 1}], dtype=object))
    np.save(tmp_path / "objects.npy", np.array([None, 1], dtype=object))
    (tmp_path / "model.pt").write_bytes(pickle.dumps({"w": [1.0]}, protocol=4))
    (tmp_path / "sneaky.json").write_bytes(pickle.dumps([1], protocol=2))
    (tmp_path / "nested").mkdir()
    with zipfile.ZipFile(tmp_path / "nested" / "raw.npz", "w") as z:
        z.writestr("x.npy", pickle.dumps("not an array", protocol=5))
    files, problems = artifact_problems(tmp_path)
    assert len(files) == 7
    text = "\n".join(problems)
    assert "ok.npz" not in text and "ok.json" not in text
    assert "objects.npz:a.npy: dtype object" in text and "objects.npy: dtype object" in text
    assert "model.pt: starts with a pickle header" in text and "model.pt: .pt is not an allowed" in text
    assert "sneaky.json: starts with a pickle header" in text
    assert "nested/raw.npz:x.npy: not a .npy array" in text


# --- the code ----------------------------------------------------------------------------------


def _calls(tree: ast.AST, module_names: set[str], func: str) -> list[ast.Call]:
    return [
        node
        for node in ast.walk(tree)
        if isinstance(node, ast.Call)
        and isinstance(node.func, ast.Attribute)
        and node.func.attr == func
        and isinstance(node.func.value, ast.Name)
        and node.func.value.id in module_names
    ]


def _keyword(call: ast.Call, name: str) -> Any:
    for kw in call.keywords:
        if kw.arg == name and isinstance(kw.value, ast.Constant):
            return kw.value.value
    return None


def test_the_code_never_deserialises_pickles():
    problems = []
    n_loads = 0
    for folder in SOURCES:
        for path in sorted((REPO / folder).rglob("*.py")):
            tree = ast.parse(path.read_text(), str(path))
            where = path.relative_to(REPO)
            for node in ast.walk(tree):
                names = []
                if isinstance(node, ast.Import):
                    names = [a.name.split(".")[0] for a in node.names]
                elif isinstance(node, ast.ImportFrom) and node.module:
                    names = [node.module.split(".")[0]]
                problems += [f"{where}:{node.lineno}: imports {n}" for n in names if n in UNSAFE_MODULES]
            for call in _calls(tree, {"np", "numpy"}, "load"):
                n_loads += 1
                if _keyword(call, "allow_pickle") is not False:
                    problems.append(f"{where}:{call.lineno}: np.load without allow_pickle=False")
            for func in ("save", "savez", "savez_compressed"):
                for call in _calls(tree, {"np", "numpy"}, func):
                    if _keyword(call, "allow_pickle") is not False:
                        problems.append(f"{where}:{call.lineno}: np.{func} without allow_pickle=False")
            for call in _calls(tree, {"torch"}, "load"):
                if _keyword(call, "weights_only") is not True:
                    problems.append(f"{where}:{call.lineno}: torch.load without weights_only=True")
            for call in _calls(tree, {"pd", "pandas"}, "read_pickle"):
                problems.append(f"{where}:{call.lineno}: pandas.read_pickle")
    assert not problems, "\n".join(problems)
    assert n_loads >= 3  # the dataset, model and checkpoint loaders were seen


def test_celery_messages_are_json_only():
    from workers.celery_app import celery_app

    assert celery_app.conf.task_serializer == "json"
    assert list(celery_app.conf.accept_content) == ["json"]


# --- the artifacts -----------------------------------------------------------------------------


@pytest.fixture
def trained(client, tmp_path: Path) -> tuple[Any, dict[str, Any]]:
    """A planted upload (with group columns) and three models: WALS with an HNSW index, WALS exact, SGD."""
    data = planted_communities(
        PlantedConfig(n_groups=3, users_per_group=30, items_per_group=15, interactions_per_user=8, seed=2)
    )
    write_planted_csv(data, tmp_path / "planted.csv")
    r = upload(client, tmp_path / "planted.csv")
    assert r.status_code == 201, r.text
    ds = r.json()["id"]
    specs = [
        {"algorithm": "wals", "dim": 8, "wals": {"iterations": 3}, "index": {"exact_max_items": 0}},
        {"algorithm": "wals", "dim": 8, "wals": {"iterations": 3}, "evaluation": {"split": "none"}},
        {"algorithm": "sgd", "dim": 8, "sgd": {"epochs": 2, "batch_size": 64}},
    ]
    models = {}
    for spec in specs:
        job = client.post("/v1/jobs", json={"dataset_id": ds, **spec}).json()
        job = client.get(f"/v1/jobs/{job['id']}").json()
        assert job["status"] == "succeeded", job
        models[spec["algorithm"] + str(len(models))] = client.get(f"/v1/models/{job['model_id']}").json()
    return ds, models


def test_artifacts_hold_no_pickles(client, trained):
    ds, models = trained
    root = Path(client.app.state.settings.resolved_artifact_root)
    files, problems = artifact_problems(root)
    assert not problems, "\n".join(problems)
    names = {p.relative_to(root).as_posix() for p in files}
    assert f"datasets/{ds}/interactions.npz" in names
    assert models["wals0"]["index"]["kind"] == "hnsw"
    for model in models.values():
        assert f"{model_key(model['id'])}/model.npz" in names and f"{model_key(model['id'])}/model.json" in names
    assert any(n.endswith(".faiss") for n in names)  # the HNSW graph was scanned too
    # The dataset kept its string ids and group labels as fixed-width unicode, not objects.
    with np.load(root / "datasets" / ds / "interactions.npz", allow_pickle=False) as z:
        assert z["user_ids"].dtype.kind == "U" and "item_groups" in z.files


def test_loaders_refuse_a_pickled_array(client, trained):
    from app.recsys.artifact import load_model
    from app.services.datasets import load_dataset

    ds, models = trained
    store = client.app.state.store
    # Replace one array of the dataset and of a model with an object array (stored as a pickle).
    planted = np.array([{"boom": 1}] * 3, dtype=object)
    dataset_file = store.local_dir(f"datasets/{ds}") / "interactions.npz"
    with np.load(dataset_file, allow_pickle=False) as z:
        arrays = {k: z[k] for k in z.files}
    np.savez(dataset_file, **{**arrays, "user_ids": planted})
    model_dir = store.local_dir(model_key(models["sgd2"]["id"]))
    with np.load(model_dir / "model.npz", allow_pickle=False) as z:
        arrays = {k: z[k] for k in z.files}
    np.savez(model_dir / "model.npz", **{**arrays, "item_ids": planted})

    from app.db import get_sessionmaker
    from app.models import Dataset

    with get_sessionmaker(client.app.state.settings.resolved_database_url)() as session:
        row = session.get(Dataset, ds)
        with pytest.raises(ValueError, match="allow_pickle=False"):
            load_dataset(store, row)
    with pytest.raises(ValueError, match="allow_pickle=False"):
        load_model(model_dir)
    # Through the API: a job on that dataset fails, saying why.
    job = client.post("/v1/jobs", json={"dataset_id": ds, "dim": 4, "wals": {"iterations": 1}}).json()
    job = client.get(f"/v1/jobs/{job['id']}").json()
    assert job["status"] == "failed" and "allow_pickle" in job["error"]["message"]
