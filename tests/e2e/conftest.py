"""Fixtures of the end-to-end tests: a throwaway PostgreSQL server on loopback, small synthetic
sources, free ports, and the rule for missing system binaries (fail in CI, skip elsewhere)."""

import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]


def require(what: str, found: bool, how: str) -> None:
    """A missing system dependency fails in CI (CI=true) and skips with the reason elsewhere."""
    if found:
        return
    message = f"{what} is not installed: {how}"
    if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
        pytest.fail(message + " (CI: .ci/run installs it; this must not be skipped)")
    pytest.skip(message)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def write_sources(folder: Path, sources: dict[str, int], seed: int = 5, width: int = 500, height: int = 250) -> Path:
    """COCO sources of synthetic OPGs: {name: n_images}; returns the sources file."""
    from mmoral_pipeline.synth import generate

    entries = []
    for i, (name, n) in enumerate(sources.items()):
        generate(n=n, seed=seed + i, out=folder / name, fmt="coco", width=width, height=height, scores=True)
        entries.append({"name": name, "format": "coco", "root": name, "options": {"score_field": "score"}})
    path = folder / "sources.yaml"
    path.write_text(yaml.safe_dump({"sources": entries}))
    return path


# --------------------------------------------------------------------------- PostgreSQL


def postgres_bindir() -> Path | None:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    if found:
        return Path(found[-1]).parent
    initdb = shutil.which("initdb")
    return Path(initdb).parent if initdb else None


@dataclass
class PostgresServer:
    url: str
    host: str
    port: int
    user: str
    db_name: str


def _as_server_user(cmd: list[str], user: str | None) -> list[str]:
    """PostgreSQL refuses to run as root: run its binaries as `user` when we are root."""
    if user is None:
        return cmd
    runuser = shutil.which("runuser")
    return [runuser, "-u", user, "--", *cmd] if runuser else ["su", user, "-s", "/bin/sh", "-c", " ".join(cmd)]


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    bindir = postgres_bindir()
    require("PostgreSQL (initdb/pg_ctl)", bindir is not None, "apt-get install -y postgresql")
    server_user = None
    if os.geteuid() == 0:
        try:
            pwd.getpwnam("postgres")
        except KeyError:
            pytest.fail("running as root and there is no 'postgres' system user to run the server as")
        server_user = "postgres"
    base = Path(tempfile.mkdtemp(prefix="mmoral-pg-"))
    data, sock = base / "data", base / "sock"
    sock.mkdir()
    if server_user:
        entry = pwd.getpwnam(server_user)
        for p in (base, sock):
            os.chown(p, entry.pw_uid, entry.pw_gid)
    port = free_port()
    def run(cmd):
        return subprocess.run(
            _as_server_user(cmd, server_user), check=True, capture_output=True, text=True, timeout=120
        )
    try:
        run(
            [
                str(bindir / "initdb"),
                "-D",
                str(data),
                "-U",
                "dagster",
                "--auth=trust",
                "-E",
                "UTF8",
                "--no-sync",
                "--no-instructions",
            ]
        )
        opts = (f"-p {port} -k {sock} -c listen_addresses=127.0.0.1 "
                "-c fsync=off -c synchronous_commit=off -c full_page_writes=off")
        run(
            [
                str(bindir / "pg_ctl"),
                "-D",
                str(data),
                "-o",
                opts,
                "-l",
                str(base / "server.log"),
                "-w",
                "-t",
                "60",
                "start",
            ]
        )
        run([str(bindir / "createdb"), "-h", "127.0.0.1", "-p", str(port), "-U", "dagster", "dagster_test"])
    except subprocess.CalledProcessError as exc:
        log = (base / "server.log").read_text() if (base / "server.log").exists() else ""
        shutil.rmtree(base, ignore_errors=True)
        pytest.fail(f"could not start PostgreSQL: {exc.cmd}\n{exc.stdout}\n{exc.stderr}\n{log}")
    try:
        yield PostgresServer(
            url=f"postgresql+psycopg2://dagster@127.0.0.1:{port}/dagster_test",
            host="127.0.0.1",
            port=port,
            user="dagster",
            db_name="dagster_test",
        )
    finally:
        subprocess.run(
            _as_server_user([str(bindir / "pg_ctl"), "-D", str(data), "-m", "fast", "-w", "stop"], server_user),
            capture_output=True,
            timeout=60,
        )
        shutil.rmtree(base, ignore_errors=True)
