"""docker compose and the Dockerfile cannot run here; check by reading that they match the code."""

from __future__ import annotations

import os
import re
from pathlib import Path

import yaml

from app.cli import cli
from app.config import Settings

REPO = Path(__file__).resolve().parents[1]


def _compose() -> dict:
    return yaml.safe_load((REPO / "docker-compose.yml").read_text())


def _commands() -> set[str]:
    return {c.name or c.callback.__name__ for c in cli.registered_commands}


def test_compose_has_the_production_shape():
    services = _compose()["services"]
    assert {"postgres", "redis", "migrate", "api", "worker"} <= set(services)
    for name in ("postgres", "redis", "api", "worker"):
        assert "healthcheck" in services[name], name
    # Scalable workers: no fixed container name or host port.
    assert "container_name" not in services["worker"] and "ports" not in services["worker"]
    for name in ("migrate", "api", "worker"):
        svc = services[name]
        assert svc["build"]["context"] == "." and svc["image"] == "unfold:latest"
        assert svc["command"][0] == "unfold" and svc["command"][1] in _commands(), svc["command"]
    assert services["api"]["depends_on"]["migrate"]["condition"] == "service_completed_successfully"
    assert services["worker"]["depends_on"]["migrate"]["condition"] == "service_completed_successfully"


def test_compose_runs_one_beat_for_the_retrain_checks():
    beat = _compose()["services"]["beat"]
    assert beat["command"] == ["unfold", "beat"] and "beat" in _commands()
    assert beat["image"] == "unfold:latest" and "ports" not in beat
    assert beat["depends_on"]["migrate"]["condition"] == "service_completed_successfully"
    assert beat["depends_on"]["redis"]["condition"] == "service_healthy"


def test_compose_runs_flower_on_the_workers_broker():
    compose = _compose()
    flower = compose["services"]["flower"]
    broker = compose["x-unfold-env"]["UNFOLD_BROKER_URL"]
    assert f"--broker={broker}" in flower["command"] and "flower" in flower["command"]
    assert flower["depends_on"]["redis"]["condition"] == "service_healthy"
    assert any(str(p).startswith("127.0.0.1:5555:") for p in flower["ports"])


def test_compose_environment_names_real_settings_and_production_backends():
    fields = {f"UNFOLD_{name.upper()}" for name in Settings.model_fields}
    env = _compose()["services"]["api"]["environment"]
    # boto3 reads its credentials itself, from the standard AWS variables.
    assert set(env) <= fields | {"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"}, set(env) - fields
    assert env["UNFOLD_DATABASE_URL"].startswith("postgresql+psycopg://")
    assert env["UNFOLD_BROKER_URL"].startswith("redis://")
    pg = _compose()["services"]["postgres"]["environment"]
    assert (
        f"{pg['POSTGRES_USER']}:{pg['POSTGRES_PASSWORD']}@postgres:5432/{pg['POSTGRES_DB']}"
        in env["UNFOLD_DATABASE_URL"]
    )


def test_compose_api_requires_keys_and_keeps_the_shared_environment():
    compose = _compose()
    api, worker = compose["services"]["api"]["environment"], compose["services"]["worker"]["environment"]
    assert api["UNFOLD_REQUIRE_AUTH"] == "true" and "require_auth" in Settings.model_fields
    api_only = ("UNFOLD_REQUIRE_AUTH", "UNFOLD_PORT")
    assert {k: v for k, v in api.items() if k not in api_only} == worker == compose["x-unfold-env"]
    assert "keys" in {g.name for g in cli.registered_groups}
    assert "docker compose exec api unfold keys create --tenant" in (REPO / "docs" / "api-keys.md").read_text()


def test_compose_minio_is_optional_and_matches_the_s3_settings():
    compose = _compose()
    services = compose["services"]
    for name in ("minio", "minio-bucket"):
        assert services[name]["profiles"] == ["s3"], name  # `docker compose up` alone never starts it
    minio_env = services["minio"]["environment"]
    env = services["api"]["environment"]
    assert (env["AWS_ACCESS_KEY_ID"], env["AWS_SECRET_ACCESS_KEY"]) == (
        minio_env["MINIO_ROOT_USER"],
        minio_env["MINIO_ROOT_PASSWORD"],
    )
    assert env["UNFOLD_S3_ENDPOINT_URL"] == "http://minio:9000" and "healthcheck" in services["minio"]
    # The default stays the shared volume; the s3 profile's bucket is the one the README names.
    assert env["UNFOLD_ARTIFACT_ROOT"] == "${UNFOLD_ARTIFACT_ROOT:-/srv/unfold/var/artifacts}"
    assert "mc mb --ignore-existing store/unfold" in services["minio-bucket"]["command"][0]
    assert "s3://unfold/" in (REPO / "docker-compose.yml").read_text()
    for name in ("api", "worker"):
        wait = services[name]["depends_on"]["minio-bucket"]
        assert wait == {"condition": "service_completed_successfully", "required": False}, name
    assert "miniodata" in compose["volumes"]


def test_dockerfile_is_multi_stage_cpu_torch_and_non_root():
    text = (REPO / "Dockerfile").read_text()
    assert len(re.findall(r"^FROM ", text, re.M)) >= 2
    # torch alone, first, from the index the builder names (never a CUDA build from pip's default index).
    assert re.search(r"^ARG TORCH_INDEX_URL$", text, re.M)
    install = re.search(r'pip install --no-deps --index-url "\$TORCH_INDEX_URL" torch==2\.13\.0$', text, re.M)
    assert install and install.start() < text.index("pip install ."), text
    assert re.search(r"^USER (?!root)\w+", text, re.M)
    for path in ("app", "workers", "migrations", "pyproject.toml"):
        assert path in text
    env_names = set(re.findall(r"(UNFOLD_[A-Z_]+)=", text))
    assert env_names <= {f"UNFOLD_{n.upper()}" for n in Settings.model_fields}


def _make_dry_run(target: str, clone: Path, *variables: str) -> str:
    import subprocess

    for name in ("Makefile", "pyproject.toml"):
        (clone / name).write_bytes((REPO / name).read_bytes())
    # Under `make test PYTEST_ARGS=…` (as .ci/run calls it) the outer make's flags and its command-line
    # variables reach this one through the environment (it printed "make[1]: Entering directory …" and
    # the outer PYTEST_ARGS): run it as a fresh clone's own make, with nothing but PATH and HOME.
    env = {k: os.environ[k] for k in ("PATH", "HOME") if k in os.environ}
    command = ["make", "--no-print-directory", "-n", target, *variables]
    run = subprocess.run(command, cwd=clone, capture_output=True, text=True, check=True, env=env)
    return run.stdout


# scheme://host, as in an index URL (the health checks' loopback address is not a package host).
URL_HOST = re.compile(r"\b[a-z][a-z0-9+.-]*://[A-Za-z0-9-]+(\.[A-Za-z0-9-]+)+")


def test_installing_names_no_package_host():
    # Every package comes through pip's configured index; only torch has its own, and the user names it.
    for name in ("Makefile", "Dockerfile", ".env.example", "pyproject.toml"):
        text = (REPO / name).read_text()
        hosts = [m.group(0) for m in URL_HOST.finditer(text) if "://127.0.0.1" not in m.group(0)]
        assert not hosts, f"{name} names {hosts}"
        assert "pypi.org" not in text and "download.pytorch" not in text, name
    assert "--extra-index-url" not in (REPO / "Makefile").read_text()
    compose = _compose()
    assert compose["x-unfold"]["build"]["args"] == {"TORCH_INDEX_URL": "${TORCH_INDEX_URL:-}"}
    assert re.search(r"^TORCH_INDEX_URL=$", (REPO / ".env.example").read_text(), re.M)


def test_make_install_takes_torch_from_torch_index_url_only_when_no_local_wheel(tmp_path: Path):
    run = _make_dry_run("install-runtime", tmp_path, "TORCH_INDEX_URL=file:///somewhere/cpu")
    local, fallback = run.split("|| {", 1)
    assert 'pip install --no-index --no-deps "torch==2.13.0"' in local, run
    assert 'pip install --no-deps --index-url "file:///somewhere/cpu" "torch==2.13.0"' in fallback, run
    # Unset, the fallback stops and says what to set instead of reaching a default index for torch.
    unset = _make_dry_run("install-runtime", tmp_path).split("|| {", 1)[1]
    assert 'test -n ""' in unset and "set TORCH_INDEX_URL to PyTorch's CPU wheel index" in unset, unset


def test_make_run_installs_no_dev_extra_and_make_test_does(tmp_path: Path):
    # A fresh clone: no .venv yet. `make -n` prints what each target would run.
    run = _make_dry_run("run", tmp_path)
    assert "pip install -e .\n" in run and "[dev]" not in run, run
    assert run.index("torch==2.13.0") < run.index("pip install -e .") and run.rstrip().endswith("unfold up")
    test = _make_dry_run("test", tmp_path)
    assert 'pip install -e ".[dev]"' in test and test.rstrip().endswith("pytest"), test


# --- what reading the files finds (issue 17.9) ------------------------------------------------------------------

UNFOLD_SERVICES = ("migrate", "api", "worker")
# ${NAME}, ${NAME:?message}, ${NAME?message}, ${NAME:-default}, ${NAME-default}
INTERPOLATION = re.compile(r"\$\{([A-Z0-9_]+)(?:(:?[-?])([^}]*))?\}")
SECRET_NAME = re.compile(r"PASSWORD|SECRET|ACCESS_KEY|BASIC_AUTH|_USER$")


def _dockerfile() -> str:
    return (REPO / "Dockerfile").read_text()


def _runtime_stage() -> str:
    return re.split(r"^FROM ", _dockerfile(), flags=re.M)[-1]


def test_every_volume_of_the_image_is_created_and_owned_by_its_user():
    # A named volume mounted where the image has no folder is created root-owned, and the image's
    # non-root user cannot write to it; mounted on the image's own folder, it takes that folder's owner.
    stage = _runtime_stage()
    user = re.search(r"^USER (\w+)", stage, re.M).group(1)  # type: ignore[union-attr]
    created = {p for args in re.findall(r"mkdir -p ([^&\n\\]+)", stage) for p in args.split()}
    owned = re.findall(rf"chown -R {user}:{user} (\S+)", stage)
    services = _compose()["services"]
    for name in UNFOLD_SERVICES:
        for volume in services[name].get("volumes", []):
            target = volume.split(":")[1]
            assert target in created, f"{name}: {target} is mounted but the Dockerfile does not create it"
            assert any(target == o or target.startswith(o.rstrip("/") + "/") for o in owned), (target, owned)
    var_dir = re.search(r"UNFOLD_VAR_DIR=(\S+)", stage).group(1)  # type: ignore[union-attr]
    assert var_dir in created and any(var_dir.startswith(o) for o in owned)


def _values(node: object) -> list[tuple[str, str]]:
    """Every (key, string value) of the compose file's mappings, however deep."""
    found: list[tuple[str, str]] = []
    if isinstance(node, dict):
        for key, value in node.items():
            if isinstance(value, str):
                found.append((str(key), value))
            found += _values(value)
    elif isinstance(node, list):
        for value in node:
            found += _values(value)
    return found


def test_the_compose_file_holds_no_credentials_and_env_example_documents_each():
    text = (REPO / "docker-compose.yml").read_text()
    compose = _compose()
    for key, value in _values(compose):
        if SECRET_NAME.search(key):
            m = INTERPOLATION.fullmatch(value)
            assert m and m.group(2) in (None, ":?", "?"), f"{key}: {value!r} is a credential written in the file"
    url = compose["x-unfold-env"]["UNFOLD_DATABASE_URL"]
    assert re.fullmatch(r"postgresql\+psycopg://\$\{POSTGRES_USER[^}]*\}:\$\{POSTGRES_PASSWORD[^}]*\}@.*", url), url
    assert "unfold-secret" not in text and "unfold:unfold@" not in text
    # Each variable the file needs is in .env.example, with its documented default.
    needed = {name for name, kind, _ in INTERPOLATION.findall(text) if kind in (":?", "?")}
    example = (REPO / ".env.example").read_text()
    defined = dict(re.findall(r"^([A-Z0-9_]+)=(.*)$", example, re.M))
    assert needed and needed <= set(defined), needed - set(defined)
    assert ".env" in (REPO / ".gitignore").read_text().split()


def test_flower_asks_for_a_password_and_listens_on_localhost_only():
    flower = _compose()["services"]["flower"]
    auth = flower["environment"]["FLOWER_BASIC_AUTH"]
    assert INTERPOLATION.fullmatch(auth), auth
    assert all(str(p).startswith("127.0.0.1:") for p in flower["ports"]), flower["ports"]


def test_ports_and_health_checks_follow_unfold_port():
    stage = _runtime_stage()
    healthcheck = stage.split("HEALTHCHECK", 1)[1].split("\nCMD [", 1)[0]
    assert "${UNFOLD_PORT" in healthcheck and ":8000/" not in healthcheck, healthcheck
    assert "CMD [" not in healthcheck  # the shell form, so $UNFOLD_PORT is read when the check runs
    api = _compose()["services"]["api"]
    assert api["environment"]["UNFOLD_PORT"] == "${UNFOLD_PORT:-8000}"
    assert api["ports"] == ["${UNFOLD_PORT:-8000}:${UNFOLD_PORT:-8000}"]
    check = " ".join(api["healthcheck"]["test"])
    assert "$${UNFOLD_PORT" in check and "8000/" not in check.replace("${UNFOLD_PORT:-8000}", ""), check
