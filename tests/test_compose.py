"""docker-compose.yml is consistent (no Docker engine here: we check its structure)."""

from __future__ import annotations

import re
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parent.parent


def _compose() -> dict:
    return yaml.safe_load((REPO / "docker-compose.yml").read_text())


def test_services_and_dependencies() -> None:
    services = _compose()["services"]
    assert set(services) == {"postgres", "worker", "dashboard"}
    for name in ("worker", "dashboard"):
        assert services[name]["depends_on"]["postgres"]["condition"] == "service_healthy"
        assert services[name]["environment"]["SWEEPER_STORAGE"].startswith("postgresql+psycopg2://")


def test_postgres_has_a_healthcheck_and_a_named_volume() -> None:
    compose = _compose()
    postgres = compose["services"]["postgres"]
    assert postgres["image"].startswith("postgres:")
    assert "pg_isready" in " ".join(postgres["healthcheck"]["test"])
    volume = postgres["volumes"][0].split(":")[0]
    assert volume in compose["volumes"]


def test_worker_reserves_a_gpu_and_scales() -> None:
    worker = _compose()["services"]["worker"]
    devices = worker["deploy"]["resources"]["reservations"]["devices"]
    assert devices == [{"driver": "nvidia", "count": 1, "capabilities": ["gpu"]}]
    assert "container_name" not in worker  # a fixed name would forbid --scale worker=N
    assert "ports" not in worker
    assert worker["command"][:2] == ["worker", "--study"]


def test_dashboard_binds_to_localhost_only() -> None:
    ports = _compose()["services"]["dashboard"]["ports"]
    assert all(p.startswith("127.0.0.1:") for p in ports)


def test_credentials_come_from_an_uncommitted_env_file() -> None:
    compose_text = (REPO / "docker-compose.yml").read_text()
    used = set(re.findall(r"\$\{(\w+)", compose_text))
    example = (REPO / ".env.example").read_text()
    defined = set(re.findall(r"^(\w+)=", example, flags=re.MULTILINE))
    assert used <= defined, f"variables without an example: {used - defined}"
    assert "POSTGRES_PASSWORD" in defined
    assert ".env" in (REPO / ".gitignore").read_text().splitlines()


def test_dockerfile_builds_the_console_script() -> None:
    dockerfile = (REPO / "Dockerfile").read_text()
    assert 'ENTRYPOINT ["sweeper"]' in dockerfile
    assert "pip install ." in dockerfile
