"""Start `dagster-webserver` on loopback for a test or a screenshot, and talk GraphQL to it."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import httpx

REPO = Path(__file__).resolve().parent.parent

ASSET_GRAPH_QUERY = """
{
  assetNodes {
    assetKey { path }
    groupName
    description
    kinds
    isPartitioned
    owners { ... on TeamAssetOwner { team } ... on UserAssetOwner { email } }
    dependencyKeys { path }
    dependedByKeys { path }
    jobNames
    hasAssetChecks
    assetChecksOrError { ... on AssetChecks { checks { name blocking } } }
    metadataEntries {
      label
      ... on TableSchemaMetadataEntry { schema { columns { name type description } } }
    }
  }
}
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.contextmanager
def webserver(env: Mapping[str, str], port: int | None = None, timeout_s: float = 120) -> Iterator[str]:
    """dagster-webserver on 127.0.0.1 with the project's workspace.yaml; yields its base URL."""
    port = port or free_port()
    exe = str(Path(sys.executable).with_name("dagster-webserver"))
    log = open(Path(env["DAGSTER_HOME"]) / "webserver.log", "w")  # noqa: SIM115 - closed below
    proc = subprocess.Popen(
        [exe, "-w", str(REPO / "workspace.yaml"), "-h", "127.0.0.1", "-p", str(port)],
        env={**os.environ, **env},
        cwd=REPO,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + timeout_s
        while True:
            if proc.poll() is not None:
                raise RuntimeError(
                    f"dagster-webserver exited: {(Path(env['DAGSTER_HOME']) / 'webserver.log').read_text()[-3000:]}"
                )
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{url}/server_info", timeout=2).status_code == 200 and _workspace_loaded(url):
                    break
            if time.monotonic() > deadline:
                raise TimeoutError(f"dagster-webserver not ready after {timeout_s} s")
            time.sleep(0.5)
        yield url
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
        log.close()


def graphql(url: str, query: str, variables: dict[str, Any] | None = None) -> dict[str, Any]:
    r = httpx.post(f"{url}/graphql", json={"query": query, "variables": variables or {}}, timeout=60)
    r.raise_for_status()
    body = r.json()
    if body.get("errors"):
        raise RuntimeError(f"GraphQL errors: {body['errors']}")
    return body["data"]


def _workspace_loaded(url: str) -> bool:
    data = graphql(url, "{ workspaceOrError { ... on Workspace { locationEntries { loadStatus } } } }")
    entries = data["workspaceOrError"].get("locationEntries", [])
    return bool(entries) and all(e["loadStatus"] == "LOADED" for e in entries)
