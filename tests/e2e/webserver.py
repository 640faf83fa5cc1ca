"""`dagster dev` (webserver + daemon) on a free loopback port, and a small GraphQL client for it.

Modelled on Dagster's own `test_dev_command.py`: start the process in its own session, poll
`/server_info`, talk GraphQL over HTTP, and tear the whole process group down at the end.
"""

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import yaml

from .conftest import REPO, free_port


def embedded_instance_yaml(dagster_home: Path) -> str:
    """The repository's dagster.yaml, with its SQLite folder made absolute under `dagster_home`
    (a relative `base_dir` resolves against the working directory of each process)."""
    cfg = yaml.safe_load((REPO / "dagster.yaml").read_text())
    sqlite = cfg.get("storage", {}).get("sqlite")
    if sqlite and not Path(str(sqlite.get("base_dir", "history"))).is_absolute():
        sqlite["base_dir"] = str(dagster_home / str(sqlite.get("base_dir", "history")))
    return yaml.safe_dump(cfg)


class DagsterDev:
    def __init__(self, dagster_home: Path, env: dict[str, str], log_path: Path):
        self.dagster_home = dagster_home
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = log_path
        self.env = {**os.environ, **env, "DAGSTER_HOME": str(dagster_home), "PYTHONUNBUFFERED": "1"}
        self.proc: subprocess.Popen | None = None

    def __enter__(self) -> "DagsterDev":
        dagster = Path(sys.executable).parent / "dagster"
        cmd = [
            str(dagster),
            "dev",
            "-m",
            "mmoral_pipeline.definitions",
            "-a",
            "defs",
            "-h",
            "127.0.0.1",
            "-p",
            str(self.port),
        ]
        self._log = open(self.log_path, "w")
        self.proc = subprocess.Popen(
            cmd, cwd=REPO, env=self.env, stdout=self._log, stderr=subprocess.STDOUT, start_new_session=True
        )
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    def stop(self) -> None:
        """SIGINT to the whole process group (dagster dev shuts its children down), then SIGKILL
        whatever of the group is left (own session: the group id is the leader's pid)."""
        if self.proc is None:
            return
        pgid = self.proc.pid
        try:
            os.killpg(pgid, signal.SIGINT)
            self.proc.wait(timeout=30)
        except (ProcessLookupError, subprocess.TimeoutExpired):
            pass
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pgid, signal.SIGKILL)
        self.proc.wait(timeout=10)
        self.proc = None
        self._log.close()

    def log_tail(self, n: int = 60) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-n:])
        except OSError:
            return ""

    # ------------------------------------------------------------------ HTTP / GraphQL

    def wait_until_up(self, timeout: float = 240) -> dict:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"dagster dev exited with {self.proc.returncode}:\n{self.log_tail()}")
            try:
                with urllib.request.urlopen(f"{self.url}/server_info", timeout=5) as resp:
                    info = json.loads(resp.read())
                loaded = self.graphql(WORKSPACE)["workspaceOrError"]["locationEntries"]
                if loaded and all(e["loadStatus"] == "LOADED" for e in loaded):
                    errors = [e for e in loaded if e["locationOrLoadError"]["__typename"] != "RepositoryLocation"]
                    if errors:
                        raise RuntimeError(f"code location failed to load: {errors}\n{self.log_tail()}")
                    return info
            except (urllib.error.URLError, ConnectionError, TimeoutError, json.JSONDecodeError, KeyError):
                pass
            time.sleep(1)
        raise TimeoutError(f"dagster dev did not come up in {timeout}s:\n{self.log_tail()}")

    def graphql(self, query: str, variables: dict | None = None) -> dict:
        body = json.dumps({"query": query, "variables": variables or {}}).encode()
        req = urllib.request.Request(f"{self.url}/graphql", data=body, headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=60) as resp:
            doc = json.loads(resp.read())
        if doc.get("errors"):
            raise RuntimeError(f"GraphQL errors: {doc['errors']}")
        return doc["data"]


# Pinned query strings (the GraphQL schema is documented as evolving; these match Dagster 1.13).
WORKSPACE = """
query Workspace {
  workspaceOrError {
    ... on Workspace {
      locationEntries {
        name
        loadStatus
        locationOrLoadError {
          __typename
          ... on RepositoryLocation { name repositories { name } }
          ... on PythonError { message }
        }
      }
    }
  }
}
"""

ASSET_NODES = """
query AssetNodes {
  assetNodes {
    assetKey { path }
    groupName
    isPartitioned
    assetChecksOrError { ... on AssetChecks { checks { name } } }
  }
}
"""

ADD_PARTITION = """
mutation AddPartition($repositorySelector: RepositorySelector!, $partitionsDefName: String!, $partitionKey: String!) {
  addDynamicPartition(
    repositorySelector: $repositorySelector, partitionsDefName: $partitionsDefName, partitionKey: $partitionKey
  ) {
    __typename
    ... on AddDynamicPartitionSuccess { partitionKey }
    ... on PythonError { message }
    ... on UnauthorizedError { message }
  }
}
"""

LAUNCH_BACKFILL = """
mutation Launch($backfillParams: LaunchBackfillParams!) {
  launchPartitionBackfill(backfillParams: $backfillParams) {
    __typename
    ... on LaunchBackfillSuccess { backfillId }
    ... on PythonError { message stack }
    ... on InvalidStepError { invalidStepKey }
    ... on InvalidOutputError { stepKey invalidOutputName }
    ... on PartitionSetNotFoundError { message }
    ... on UnauthorizedError { message }
  }
}
"""

BACKFILL_STATUS = """
query Backfill($backfillId: String!) {
  partitionBackfillOrError(backfillId: $backfillId) {
    __typename
    ... on PartitionBackfill {
      id
      status
      isAssetBackfill
      error { message }
    }
    ... on PythonError { message }
  }
}
"""

RUNS = """
query Runs($filter: RunsFilter) {
  runsOrError(filter: $filter) {
    ... on Runs { results { runId status tags { key value } } }
  }
}
"""

CHECK_EXECUTIONS = """
query CheckExecutions($assetKey: AssetKeyInput!, $checkName: String!) {
  assetCheckExecutions(assetKey: $assetKey, checkName: $checkName, limit: 20) {
    runId
    status
    partition
    evaluation { success severity partition }
  }
}
"""

LATEST_MATERIALIZATION = """
query Latest($assetKey: AssetKeyInput!) {
  assetOrError(assetKey: $assetKey) {
    ... on Asset {
      assetMaterializations(limit: 1) {
        runId
        partition
        metadataEntries { label __typename }
      }
    }
  }
}
"""

LAUNCH_RUN = """
mutation LaunchRun($executionParams: ExecutionParams!) {
  launchRun(executionParams: $executionParams) {
    __typename
    ... on LaunchRunSuccess { run { runId } }
    ... on PythonError { message stack }
    ... on RunConfigValidationInvalid { errors { message } }
    ... on InvalidSubsetError { message }
    ... on UnauthorizedError { message }
  }
}
"""

RUN_STATUS = """
query Run($runId: ID!) {
  runOrError(runId: $runId) {
    __typename
    ... on Run { runId status tags { key value } }
  }
}
"""

SENSOR_STATE = """
query Sensor($sensorSelector: SensorSelector!) {
  sensorOrError(sensorSelector: $sensorSelector) {
    __typename
    ... on Sensor { name sensorState { status } }
  }
}
"""
