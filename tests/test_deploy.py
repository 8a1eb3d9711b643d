"""The image and the deployment, validated offline (no Docker daemon or cluster here): the compose file
parses under `docker-compose config` and every service runs the one image with a command the image
has; the Dockerfile's install steps run in a fresh venv; the Helm values use the official chart's keys."""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import sqlalchemy as sa
import yaml

from tests.conftest import PG_URL, fresh_pg_database, psycopg2_url

REPO = Path(__file__).resolve().parent.parent
DEPLOY = REPO / "deploy"
SERVICES = {"postgres", "rabbitmq", "dagster-init", "code", "webserver", "daemon", "celery-worker", "serve"}


def _compose() -> dict:
    exe = shutil.which("docker-compose")
    if exe is None:  # .ci/run installs Debian's docker-compose; its absence is a failure, not a skip
        pytest.fail("docker-compose not found: apt-get install docker-compose (validates the compose file offline)")
    out = subprocess.run(
        [exe, "-f", str(DEPLOY / "docker-compose.yml"), "config"], capture_output=True, text=True, timeout=60
    )
    assert out.returncode == 0, out.stderr
    return yaml.safe_load(out.stdout)


def test_compose_runs_the_whole_stack_from_one_image() -> None:
    stack = _compose()["services"]
    assert set(stack) == SERVICES
    ours = {name: s for name, s in stack.items() if name not in ("postgres", "rabbitmq")}
    assert {s["image"] for s in ours.values()} == {"cams:latest"}
    assert all(s["build"]["dockerfile"] == "Dockerfile" for s in ours.values())
    bin_dir = Path(sys.executable).parent
    for name, service in ours.items():
        command = service["command"]
        assert (bin_dir / command[0]).exists(), f"{name}: {command[0]} is not installed by the image's packages"
        assert service["depends_on"]["postgres"]["condition"] == "service_healthy", name
        if name != "dagster-init":  # Dagster's storage is created once, before anything else opens it
            assert service["depends_on"]["dagster-init"]["condition"] == "service_completed_successfully", name
        env = service["environment"]
        assert env["DAGSTER_PG_URL"].startswith("postgresql+psycopg2://"), name  # dagster-postgres needs psycopg2
        assert env["CAMS_DATABASE_URL"].startswith("postgresql://"), name
        mounted = {v.split(":")[1] for v in service["volumes"] if ":" in v}
        assert env["CAMS_CONFIG"] in mounted, name
    # the files the commands name exist in the project, and the config they load is valid
    assert (REPO / "pipelines" / "definitions.py").is_file()
    from cams.config import load

    cfg = load(DEPLOY / "cams.yaml")
    assert cfg.execution.executor == "celery" and "rabbitmq" in cfg.execution.celery_broker
    celery = yaml.safe_load((DEPLOY / "celery.yaml").read_text())["execution"]["config"]
    assert (celery["broker"], celery["backend"]) == (cfg.execution.celery_broker, cfg.execution.celery_backend)
    workspace = yaml.safe_load((DEPLOY / "workspace.yaml").read_text())["load_from"][0]["grpc_server"]
    assert workspace["host"] == "code" and str(workspace["port"]) in stack["code"]["command"]
    assert "CREATE DATABASE dagster" in (DEPLOY / "initdb" / "01-databases.sql").read_text()
    # the instance config the image installs is one Dagster accepts
    from dagster._core.instance.config import dagster_instance_config

    config, _ = dagster_instance_config(str(DEPLOY), "dagster.yaml")
    assert config["storage"]["postgres"]["postgres_url"] == {"env": "DAGSTER_PG_URL"}


@pytest.mark.parametrize("backend", [b for b in ("postgresql",) if PG_URL])
def test_the_init_service_creates_dagsters_storage_once(backend: str, tmp_path: Path) -> None:
    """The compose stack's dagster-init command, with the image's instance config, on an empty database:
    it creates Dagster's storage, so the services started after it find the tables instead of racing."""
    command = _compose()["services"]["dagster-init"]["command"]
    home = tmp_path / "dagster_home"
    home.mkdir()
    shutil.copy(DEPLOY / "dagster.yaml", home / "dagster.yaml")
    with fresh_pg_database("cams_init") as url:
        out = subprocess.run(
            [str(Path(sys.executable).parent / command[0]), *command[1:]],
            env={**os.environ, "DAGSTER_HOME": str(home), "DAGSTER_PG_URL": psycopg2_url(url)},
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert out.returncode == 0, out.stderr[-3000:]
        engine = sa.create_engine(psycopg2_url(url))
        try:
            tables = set(sa.inspect(engine).get_table_names())
        finally:
            engine.dispose()
    assert {"runs", "event_logs", "jobs", "job_ticks"} <= tables


def _dockerfile_runs() -> list[str]:
    text = (REPO / "Dockerfile").read_text().replace("\\\n", " ")
    return [line[4:].strip() for line in text.splitlines() if line.startswith("RUN ")]


def test_dockerfile_install_steps_run_in_a_fresh_venv(tmp_path: Path) -> None:
    """The image's pip steps, as written, in a new venv: the pins are consistent with pyproject (pip has
    nothing to fetch), CAMS builds and installs from the copied sources, `cams` starts, `pip check` is clean."""
    runs = [r for r in _dockerfile_runs() if "pip install" in r]
    assert len(runs) == 2
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    py = venv / "bin" / "python"
    # the packages come from this venv's site-packages (no network in tests): the new venv sees them through a
    # .pth, so pip must find every pin satisfied as the constraints say, and installs CAMS itself
    ours = next(p for p in sys.path if p.endswith("site-packages") and Path(p).is_relative_to(sys.prefix))
    theirs = next((venv / "lib").glob("python3*/site-packages"))
    (theirs / "cams-deps.pth").write_text(ours + "\n")
    work = tmp_path / "src"
    # what the Dockerfile has COPY'd by each step
    work.mkdir()
    for name in ("pyproject.toml", "constraints.txt"):
        shutil.copy(REPO / name, work / name)
    (work / "cams").mkdir()
    shutil.copy(REPO / "cams" / "__init__.py", work / "cams" / "__init__.py")
    # no network: the pins must all be satisfied already; the build backend (setuptools, wheel) comes from
    # the machine's local package mirror on disk, as `make install`'s does
    env = {**os.environ, "PIP_INDEX_URL": "file:///opt/pypi/simple", "PIP_EXTRA_INDEX_URL": ""}
    first = runs[0].split("&&")[0].strip()  # python -m pip install -c constraints.txt '.[deploy]'
    cmd = [str(py) if w == "python" else w for w in shlex.split(first)]
    done = subprocess.run(cmd, cwd=work, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    shutil.rmtree(work / "cams")
    shutil.copytree(REPO / "cams", work / "cams", ignore=shutil.ignore_patterns("__pycache__"))
    second = runs[1].split("&&")[0].strip()  # python -m pip install --no-deps -c constraints.txt .
    cmd = [str(py) if w == "python" else w for w in shlex.split(second)]
    done = subprocess.run(cmd, cwd=work, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    version = subprocess.run([str(venv / "bin" / "cams"), "--version"], capture_output=True, text=True, timeout=60)
    assert version.returncode == 0 and re.search(r"\d+\.\d+", version.stdout + version.stderr), version
    check = subprocess.run([str(py), "-m", "pip", "check"], capture_output=True, text=True, timeout=120)
    assert check.returncode == 0, check.stdout


def test_helm_values_use_the_official_chart_keys() -> None:
    values = yaml.safe_load((DEPLOY / "helm" / "values.yaml").read_text())
    deployment = values["dagster-user-deployments"]["deployments"][0]
    assert values["dagster-user-deployments"]["enabled"] is True
    args = deployment["dagsterApiGrpcArgs"]
    assert args[args.index("--python-file") + 1] == "/opt/cams/pipelines/definitions.py"
    assert deployment["port"] == 3030 and deployment["image"]["repository"]
    assert values["runLauncher"]["type"] == "K8sRunLauncher"
    resources = values["runLauncher"]["config"]["k8sRunLauncher"]["runK8sConfig"]["containerConfig"]["resources"]
    assert resources["limits"]["memory"] == "4Gi"
    coordinator = values["dagsterDaemon"]["runCoordinator"]
    assert coordinator["type"] == "QueuedRunCoordinator"
    limits = coordinator["config"]["queuedRunCoordinator"]
    instance = yaml.safe_load((REPO / "dagster.yaml").read_text())["run_coordinator"]["config"]
    assert limits["maxConcurrentRuns"] == instance["max_concurrent_runs"]  # the same limits as dagster.yaml
    assert values["postgresql"]["enabled"] is False and values["postgresql"]["postgresqlHost"]
    # the image the chart runs is this Dockerfile's: its CMD is the same code server
    cmd = json.loads((REPO / "Dockerfile").read_text().split("\nCMD ", 1)[1].splitlines()[0])
    assert cmd[:3] == ["dagster", "code-server", "start"] and "pipelines/definitions.py" in cmd
