"""What can be checked of the Docker and Prefect files without a Docker engine.

No Docker engine runs here, so the images are not built and the compose stacks are not started
(README: "What is not tested"). These tests hold the files to the code: every command a service
runs exists in the CLI and starts, every variable they use is documented in env.example, the
volumes and ports line up, and `prefect deploy` from prefect.yaml works against a real server.
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from typer.main import get_command

from connecthub.app.cli import app
from connecthub.core.config import Settings

ROOT = Path(__file__).resolve().parents[1]
COMPOSE = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
COMPOSE_DEV = yaml.safe_load((ROOT / "docker-compose.dev.yml").read_text())
ENV_EXAMPLE = (ROOT / "env.example").read_text()
DOCKERFILE = (ROOT / "docker" / "Dockerfile").read_text()


def documented_variables() -> set[str]:
    return set(re.findall(r"^#?\s*([A-Z][A-Z0-9_]+)=", ENV_EXAMPLE, flags=re.M))


def connecthub_commands(command: list[str] | str) -> list[list[str]]:
    """Every `connecthub ...` invocation inside a service command."""
    text = command if isinstance(command, str) else shlex.join(command)
    found = []
    for part in re.split(r"&&|;|\"|'", text):
        words = shlex.split(part) if part.strip() else []
        if "connecthub" in words:
            found.append(words[words.index("connecthub") + 1 :])
    return found


def cli_paths() -> set[tuple[str, ...]]:
    root = get_command(app)
    paths: set[tuple[str, ...]] = set()
    for name, sub in root.commands.items():  # type: ignore[attr-defined]
        paths.add((name,))
        for child in getattr(sub, "commands", {}):
            paths.add((name, child))
    return paths


def all_service_commands() -> list[list[str]]:
    commands = []
    for compose in (COMPOSE, COMPOSE_DEV):
        for service in compose["services"].values():
            if "command" in service:
                commands.extend(connecthub_commands(service["command"]))
    cmd = re.search(r"^CMD (.+)$", DOCKERFILE, flags=re.M)
    assert cmd, "the Dockerfile has a CMD"
    commands.extend(connecthub_commands(yaml.safe_load(cmd.group(1))))
    return commands


def test_every_service_command_exists_in_the_cli():
    paths = cli_paths()
    commands = all_service_commands()
    assert len(commands) >= 6
    for words in commands:
        head = tuple(word for word in words[:2] if not word.startswith("-"))
        assert head[:1] in paths or head in paths, f"connecthub {' '.join(words)} is not a command"


@pytest.mark.parametrize("words", all_service_commands(), ids=lambda words: " ".join(words))
def test_every_service_command_parses(words: list[str]):
    """The command line of each service is accepted by the CLI (run with --help)."""
    subcommand = [word for word in words if not word.startswith("-")][:2]
    if subcommand and subcommand[0] not in {"db", "jobs"}:
        subcommand = subcommand[:1]
    result = subprocess.run(
        [sys.executable, "-m", "connecthub.app.cli", *subcommand, "--help"],
        capture_output=True, text=True, timeout=60,
    )
    assert result.returncode == 0, result.stderr
    for option in (word for word in words if word.startswith("--")):
        assert option in result.stdout, f"{option} is not an option of {' '.join(subcommand)}"


def test_every_variable_is_documented_in_env_example():
    used: set[str] = set()
    for path in ("docker-compose.yml", "docker-compose.dev.yml"):
        used |= set(re.findall(r"\$\{([A-Z][A-Z0-9_]*)", (ROOT / path).read_text()))
    for service in COMPOSE["services"].values():
        environment = service.get("environment") or {}
        used |= {key for key in environment if key.startswith(("CONNECTHUB_", "DB_", "DATA_"))}
    settings_variables = {
        field.validation_alias for field in Settings.model_fields.values()
        if isinstance(field.validation_alias, str)
    }
    missing = (used | settings_variables) - documented_variables()
    assert not missing, f"not in env.example: {sorted(missing)}"


def test_manual_values_are_the_compose_defaults():
    environment = COMPOSE["x-connecthub"]["environment"]
    assert "@postgres:5432/connecthub" in environment["DB_URL"]
    assert environment["FERNET_KEY_PATH"].endswith("/data/fernet.key}")
    assert environment["LOG_DIR"].endswith("/data/logs}")
    assert environment["DATA_DIR"] == "/data"


def test_compose_prefect_server_has_connecthubs_server_settings():
    from deployments.server import SERVER_SETTINGS

    environment = COMPOSE["services"]["prefect-server"]["environment"]
    assert {name: environment.get(name) for name in SERVER_SETTINGS} == SERVER_SETTINGS


def test_compose_prefect_api_requires_the_auth_string_everywhere():
    """The server requires it and every ConnectHub service sends the same one; compose refuses
    to start without it (`:?`) rather than publish an open Prefect API."""
    required = "${PREFECT_API_AUTH_STRING:?"
    server = COMPOSE["services"]["prefect-server"]["environment"]
    assert server["PREFECT_SERVER_API_AUTH_STRING"].startswith(required)
    assert COMPOSE["x-connecthub"]["environment"]["PREFECT_API_AUTH_STRING"].startswith(required)
    for name in ("admin", "worker", "sync"):
        assert COMPOSE["services"][name]["environment"] is COMPOSE["x-connecthub"]["environment"]


def test_volumes_and_ports_line_up():
    declared = set(COMPOSE["volumes"])
    for name, service in COMPOSE["services"].items():
        for volume in service.get("volumes", []):
            source = volume.split(":")[0]
            if not source.startswith("."):
                assert source in declared, f"{name} uses undeclared volume {source}"
    shared = {
        name for name, service in COMPOSE["services"].items()
        if "connecthub-data:/data" in service.get("volumes", [])
    }
    assert {"admin", "worker", "sync"} <= shared, "admin and workers must share the key file"
    assert "8000:8000" in COMPOSE["services"]["admin"]["ports"]
    assert "4200:4200" in COMPOSE["services"]["prefect-server"]["ports"]
    assert "--port 8000" in shlex.join(COMPOSE["services"]["admin"]["command"])
    assert "USER connecthub" in DOCKERFILE and "HEALTHCHECK" in DOCKERFILE


def test_connecthub_sh_documents_the_manual_commands():
    script = (ROOT / "connecthub.sh").read_text()
    for verb in ("dev-build)", "dev-start)", "dev-stop)", "logs)", "up)", "test)", "start)"):
        assert verb in script


@pytest.mark.engine
def test_prefect_deploy_from_prefect_yaml(pg_env: None, prefect_server: str):
    from connecthub.jobs.vocabulary import FLOW_NAME
    from deployments.client import prefect_client
    from deployments.sync import sync_all

    env = {**os.environ, "PREFECT_API_URL": prefect_server}
    subprocess.run(
        [sys.executable, "-m", "prefect", "work-pool", "create", "connecthub", "--type",
         "process", "--overwrite"], env=env, cwd=ROOT, capture_output=True, timeout=120,
    )
    result = subprocess.run(
        [sys.executable, "-m", "prefect", "--no-prompt", "deploy", "--all"],
        env=env, cwd=ROOT, capture_output=True, text=True, timeout=300,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    sync_all()  # the sync loop leaves a deployment it did not make alone
    with prefect_client() as client:
        deployment = client.read_deployment_by_name(f"{FLOW_NAME}/manual-run")
    assert deployment.work_pool_name == "connecthub"
    assert deployment.entrypoint == "flows/execute_job.py:execute_job"
    assert deployment.pull_steps[0]["prefect.deployments.steps.set_working_directory"] == {
        "directory": str(ROOT)
    }
