"""docker-compose.yml: the services exist, are wired safely, and name real code and settings.

Most checks parse the file (PyYAML resolves the `<<: *anchor` merges the same way
`docker compose` does). The rest run `docker-compose config` from Debian's
`docker-compose` package (no Docker daemon needed), which `make install` installs
where it can; they are skipped only where it cannot be installed.
"""
from __future__ import annotations

import fnmatch
import importlib.metadata
import importlib.util
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from shared.config import Settings

REPO_ROOT = Path(__file__).resolve().parents[2]
COMPOSE = yaml.safe_load((REPO_ROOT / "docker-compose.yml").read_text())
SERVICES = COMPOSE["services"]
APP_SERVICES = sorted(name for name, svc in SERVICES.items() if svc.get("image") == "parley:latest")
SETTING_NAMES = {name.upper() for name in Settings.model_fields}


def command_of(service: dict) -> list[str]:
    command = service["command"]
    return command.split() if isinstance(command, str) else list(command)


def module_exists(module: str) -> bool:
    """A module or package in this repo (not an installed library)."""
    path = REPO_ROOT.joinpath(*module.split("."))
    return path.with_suffix(".py").is_file() or (path / "__init__.py").is_file()


def referenced_code(command: list[str]) -> tuple[list[str], list[str]]:
    """(modules, files) a command needs from the repo."""
    modules, files = [], []
    program, args = command[0], command[1:]
    for flag, value in zip(args, args[1:]):
        if program == "celery" and flag in ("-A", "--app"):
            modules.append(value)
        if program == "python" and flag == "-m":
            modules.append(value)
        if program == "gunicorn" and flag in ("-c", "--config"):
            files.append(value)
    if program == "gunicorn":
        modules.append(args[-1].split(":")[0])
    if program == "alembic":
        files.append("alembic.ini")
    return modules, files


def test_expected_services_exist():
    for name in ("postgres", "redis", "minio", "migrate", "api", "worker", "webhooks", "flower"):
        assert name in SERVICES, name


def test_app_services_share_the_image():
    assert {"migrate", "model", "api", "worker", "flower"} <= set(APP_SERVICES)


@pytest.mark.parametrize("name", ["worker", "webhooks"])
def test_workers_can_scale(name):
    worker = SERVICES[name]
    assert "container_name" not in worker
    assert "ports" not in worker


def test_flower_is_loopback_only_and_authenticated():
    flower = SERVICES["flower"]
    assert flower["ports"], "flower publishes its port"
    for port in flower["ports"]:
        assert str(port).startswith("127.0.0.1:"), port
    command = command_of(flower)
    assert any(arg.startswith("--basic-auth=") for arg in command), command
    auth = next(arg for arg in command if arg.startswith("--basic-auth="))
    assert "${FLOWER_USER:?" in auth and "${FLOWER_PASSWORD:?" in auth, "credentials must be required"


def test_api_and_worker_read_identical_environment():
    api, worker = SERVICES["api"]["environment"], SERVICES["worker"]["environment"]
    assert isinstance(api, dict) and api
    assert api == worker
    for name in APP_SERVICES:
        assert SERVICES[name]["environment"] == api, name


def test_shared_environment_names_are_real_settings():
    shared = COMPOSE["x-parley-env"]
    unknown = [name for name in shared if name not in SETTING_NAMES and not name.startswith("AWS_")]
    assert not unknown, f"not a Settings field nor an AWS_ variable: {unknown}"


def test_shared_environment_values_parse_as_settings():
    # With the ${VAR:-default} defaults substituted, the values pass Settings validation.
    def default(value: str) -> str:
        value = str(value)
        while "${" in value:
            start = value.index("${")
            end = value.index("}", start)
            inner = value[start + 2:end]
            fallback = inner.split(":-", 1)[1] if ":-" in inner else ""
            value = value[:start] + fallback + value[end + 1:]
        return value

    values = {name.lower(): default(value) for name, value in COMPOSE["x-parley-env"].items()
              if name in SETTING_NAMES}
    settings = Settings(_env_file=None, **values)
    assert settings.storage_url.startswith("s3://parley/")


@pytest.mark.parametrize("name", APP_SERVICES)
def test_app_command_names_existing_code(name):
    modules, files = referenced_code(command_of(SERVICES[name]))
    assert modules or files, f"{name}: command names no repo code"
    for module in modules:
        assert module_exists(module), f"{name}: module {module} not in the repo"
        assert importlib.util.find_spec(module.split(".")[0]) is not None
    for file in files:
        assert (REPO_ROOT / file).is_file(), f"{name}: {file} not in the repo"


@pytest.mark.parametrize("name", sorted(SERVICES))
def test_every_service_has_healthcheck_or_is_one_shot(name):
    service = SERVICES[name]
    assert "healthcheck" in service or service.get("restart") == "no", name


def test_one_shots_are_awaited():
    for name in ("api", "worker", "webhooks"):
        depends = SERVICES[name]["depends_on"]
        assert depends["migrate"]["condition"] == "service_completed_successfully"
        assert depends["minio-setup"]["condition"] == "service_completed_successfully"
        assert depends["redis"]["condition"] == "service_healthy"
    assert SERVICES["migrate"]["depends_on"]["postgres"]["condition"] == "service_healthy"


def test_bucket_created_matches_storage_url():
    bucket = COMPOSE["x-parley-env"]["STORAGE_URL"][len("s3://"):].split("/", 1)[0]
    setup = " ".join(command_of(SERVICES["minio-setup"]))
    assert f"local/{bucket}" in setup


def test_app_services_share_one_environment_anchor():
    # The same object, not just equal values: every app service reads *parley-env.
    shared = COMPOSE["x-parley-env"]
    for name in APP_SERVICES:
        assert SERVICES[name]["environment"] is shared, f"{name} does not use *parley-env"


def test_webhooks_worker_consumes_its_queue():
    from shared.tasks import WEBHOOK_QUEUE

    command = command_of(SERVICES["webhooks"])
    assert command[:4] == ["celery", "-A", "worker.celery_app", "worker"]
    assert command[command.index("-Q") + 1] == WEBHOOK_QUEUE
    assert command[command.index("--pool") + 1] == "threads"


# --- `docker-compose config`: the file as Docker reads it --------------------------

def compose_binary() -> str:
    found = shutil.which("docker-compose")
    if found:
        return found
    if os.geteuid() == 0 and shutil.which("apt-get"):
        pytest.fail("docker-compose is missing but installable here: run `make install` "
                    "(it runs `apt-get install docker-compose`)")
    pytest.skip("docker-compose is not installed and cannot be installed here (needs root and apt-get)")


@pytest.fixture(scope="module")
def compose(tmp_path_factory):
    """Runs docker-compose on the file, with only the variables given (not the
    developer's .env or shell, which may set FLOWER_*)."""
    binary = compose_binary()
    empty = tmp_path_factory.mktemp("compose") / "empty.env"
    empty.write_text("")
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("FLOWER_", "COMPOSE_"))}

    def run(*args: str, **env: str) -> subprocess.CompletedProcess:
        return subprocess.run([binary, "--env-file", str(empty), "-f", str(REPO_ROOT / "docker-compose.yml"), *args],
                              cwd=REPO_ROOT, env={**clean, **env}, capture_output=True, text=True, timeout=60)
    return run


FLOWER_ENV = {"FLOWER_USER": "admin", "FLOWER_PASSWORD": "not-a-real-secret"}


@pytest.fixture(scope="module")
def resolved(compose) -> dict:
    """The configuration as docker-compose resolves it: anchors merged, variables substituted."""
    checked = compose("config", "-q", **FLOWER_ENV)
    assert checked.returncode == 0, checked.stderr
    full = compose("config", **FLOWER_ENV)
    assert full.returncode == 0, full.stderr
    return yaml.safe_load(full.stdout)


def test_docker_compose_validates_the_file(resolved):
    assert set(SERVICES) == set(resolved["services"])


def test_docker_compose_refuses_to_run_flower_without_credentials(compose):
    result = compose("config", "-q", FLOWER_PASSWORD="x")
    assert result.returncode != 0
    assert "FLOWER_USER" in result.stderr


def test_resolved_app_services_read_identical_settings(resolved):
    services = resolved["services"]
    api = services["api"]["environment"]
    assert api["DATABASE_URL"].startswith("postgresql://") and api["WORKER_METRICS_PORT"] == "9808"
    for name in APP_SERVICES:
        assert services[name]["environment"] == api, name


def test_resolved_services_are_healthchecked_and_awaited(resolved):
    services = resolved["services"]
    for name, service in services.items():
        assert "healthcheck" in service or service.get("restart") == "no", name
        for needed, how in service.get("depends_on", {}).items():
            expected = "service_healthy" if "healthcheck" in services[needed] else "service_completed_successfully"
            assert how["condition"] == expected, f"{name} -> {needed}"


def test_resolved_state_lives_in_volumes(resolved):
    services = resolved["services"]
    assert any(v.endswith(":/var/lib/postgresql/data:rw") for v in services["postgres"]["volumes"])
    assert any(v.startswith("minio-data:/data") for v in services["minio"]["volumes"])
    assert {"postgres-data", "minio-data"} <= set(resolved["volumes"])


@pytest.mark.parametrize("name", ["worker", "webhooks"])
def test_resolved_workers_can_scale(resolved, name):
    worker = resolved["services"][name]
    assert "container_name" not in worker and "ports" not in worker
    assert "-n" in worker["command"], "a node name per replica: <role>@<container id>"


# --- every app command exists in the image ------------------------------------------

def requirement_names() -> set[str]:
    names = set()
    for line in (REPO_ROOT / "requirements.txt").read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line and not line.startswith("-"):
            names.add(canonical(re.split(r"[\[=<>!~ ;]", line, maxsplit=1)[0]))
    return names


def canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def installed_by(group: str, name: str) -> str | None:
    """The distribution that provides entry point `name` in `group`."""
    for entry in importlib.metadata.entry_points(group=group):
        if entry.name == name:
            return canonical(entry.dist.name)
    return None


def dockerignored(path: str) -> bool:
    patterns = [line.strip() for line in (REPO_ROOT / ".dockerignore").read_text().splitlines()
                if line.strip() and not line.startswith("#")]
    parts = Path(path).parts
    prefixes = ["/".join(parts[:i]) for i in range(1, len(parts) + 1)]
    return any(fnmatch.fnmatch(prefix, pattern.lstrip("/")) or fnmatch.fnmatch(prefix, pattern.lstrip("*/"))
               for pattern in patterns for prefix in prefixes)


def test_image_installs_the_requirements_and_copies_the_repo():
    dockerfile = (REPO_ROOT / "Dockerfile").read_text()
    assert re.search(r"^RUN pip install .*-r requirements\.txt", dockerfile, re.M)
    assert re.search(r"^COPY \. \.", dockerfile, re.M)
    assert re.search(r"^WORKDIR /app", dockerfile, re.M)


@pytest.mark.parametrize("name", APP_SERVICES)
def test_app_command_runs_in_the_image(resolved, name):
    command = resolved["services"][name]["command"]
    program, pinned = command[0], requirement_names()
    if program != "python":  # python is the base image's; anything else comes from requirements.txt
        provider = installed_by("console_scripts", program)
        assert provider in pinned, f"{name}: `{program}` is installed by {provider}, not pinned in requirements.txt"
    if program == "celery":
        subcommand = command[command.index("-A") + 2]
        if subcommand != "worker":  # e.g. flower registers itself as a celery subcommand
            assert installed_by("celery.commands", subcommand) in pinned, f"{name}: celery {subcommand}"
    modules, files = referenced_code(command)
    for path in [module.replace(".", "/") for module in modules] + files:
        assert not dockerignored(path), f"{name}: {path} is excluded from the image by .dockerignore"
    for module in modules:
        assert module_exists(module), f"{name}: module {module} not in the repo"


def test_bucket_credentials_never_reach_bedrock():
    """MinIO's keys go in S3_*; the AWS_* chain, which Bedrock signs with, is the caller's own."""
    shared = COMPOSE["x-parley-env"]
    assert "MINIO_ROOT_USER" in shared["S3_ACCESS_KEY_ID"] and "MINIO_ROOT_PASSWORD" in shared["S3_SECRET_ACCESS_KEY"]
    assert not any("MINIO" in str(value) for name, value in shared.items() if name.startswith("AWS_"))
