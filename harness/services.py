"""Throwaway backing services for tests, on loopback: an S3 API (moto's standalone server) and
PostgreSQL clusters (pytest-postgresql's executor over the local PostgreSQL binaries).

Both are real servers in their own processes; nothing is mocked inside the test process.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from harness.e2e import free_port

S3_ENV_KEYS = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_DEFAULT_REGION")
FAKE_CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": "satchel-test",
    "AWS_SECRET_ACCESS_KEY": "satchel-test-secret",
    "AWS_DEFAULT_REGION": "us-east-1",
}


@dataclass
class S3Server:
    """moto's S3 API on 127.0.0.1; :meth:`env` is what a ``satchel serve`` child needs."""

    proc: subprocess.Popen[bytes]
    endpoint: str
    log_path: Path

    def env(self) -> dict[str, str]:
        return {"AWS_ENDPOINT_URL_S3": self.endpoint, **FAKE_CREDENTIALS}

    def client(self) -> Any:
        import boto3

        return boto3.client(
            "s3",
            endpoint_url=self.endpoint,
            aws_access_key_id=FAKE_CREDENTIALS["AWS_ACCESS_KEY_ID"],
            aws_secret_access_key=FAKE_CREDENTIALS["AWS_SECRET_ACCESS_KEY"],
            region_name=FAKE_CREDENTIALS["AWS_DEFAULT_REGION"],
        )

    def new_bucket(self) -> str:
        name = "satchel-" + uuid.uuid4().hex[:20]
        self.client().create_bucket(Bucket=name)
        return name

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(10)


def start_s3(log_dir: Path, timeout: float = 60.0) -> S3Server:
    port = free_port()
    log_path = log_dir / "moto.log"
    with open(log_path, "ab") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
    server = S3Server(proc, f"http://127.0.0.1:{port}", log_path)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            break
        try:
            if httpx.get(f"{server.endpoint}/moto-api/", timeout=2).status_code < 500:
                return server
        except httpx.HTTPError:
            time.sleep(0.1)
    server.stop()
    raise RuntimeError(f"moto server did not start: {log_path.read_text(errors='replace')}")


# -- PostgreSQL ---------------------------------------------------------------------------------
def pg_ctl_path() -> str | None:
    """The local ``pg_ctl`` (Debian keeps it out of PATH), or None when PostgreSQL is absent."""
    import glob

    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"))
    return found[-1] if found else shutil.which("pg_ctl")


def running_as_root() -> bool:
    return hasattr(os, "geteuid") and os.geteuid() == 0


@dataclass
class PostgresCluster:
    """A throwaway PostgreSQL cluster on 127.0.0.1 (trust auth, user ``postgres``)."""

    executor: Any
    host: str
    port: int
    user: str
    root: Path
    template: str = ""

    def url(self, dbname: str) -> str:
        return f"postgresql+psycopg://{self.user}@{self.host}:{self.port}/{dbname}"

    def new_database(self, *, migrated: bool = False) -> str:
        """A fresh database; returns its SQLAlchemy URL. Empty, or with ``migrated`` a copy
        of one already at the newest schema (cheaper than migrating each one)."""
        import psycopg

        name = "satchel_" + uuid.uuid4().hex[:16]
        template = self._template() if migrated else "template1"
        with psycopg.connect(
            host=self.host, port=self.port, user=self.user, dbname="postgres", autocommit=True
        ) as conn:
            conn.execute(f'CREATE DATABASE "{name}" TEMPLATE "{template}"')
        return self.url(name)

    def drop_database(self, url: str) -> None:
        """Drop a database made by :meth:`new_database` (each one is ~8 MB on disk)."""
        import psycopg

        name = url.rsplit("/", 1)[1]
        with psycopg.connect(
            host=self.host, port=self.port, user=self.user, dbname="postgres", autocommit=True
        ) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    def _template(self) -> str:
        if not self.template:
            from satchel.server.db import make_engine

            url = self.new_database()
            make_engine(url).dispose()
            self.template = url.rsplit("/", 1)[1]
        return self.template

    def stop(self) -> None:
        # pg_ctl directly: the executor's own stop waits a long time for its launcher.
        subprocess.run(
            [self.executor.executable, "stop", "-D", self.executor.datadir, "-m", "fast"],
            capture_output=True,
            timeout=60,
            check=False,
        )
        shutil.rmtree(self.root, ignore_errors=True)


def start_postgres(base: Path) -> PostgresCluster:
    """initdb + pg_ctl start in a fresh folder under ``base``.

    PostgreSQL refuses to run as root (CI runs as root). Then pg_ctl goes through a two-line
    wrapper that runs it as the ``postgres`` system user (created by Debian's package), and
    every folder the cluster uses is created under a world-traversable temp folder and owned
    by that user; pytest's own tmp folders are 0700 root, so they cannot be used.
    """
    import tempfile

    from pytest_postgresql.executors import PostgreSQLExecutor

    pg_ctl = pg_ctl_path()
    if pg_ctl is None:
        raise RuntimeError("PostgreSQL is not installed (apt-get install postgresql)")
    root = Path(tempfile.mkdtemp(prefix="satchel-pg-", dir=base if not running_as_root() else None))
    executable = pg_ctl
    if running_as_root():
        import pwd

        pw = pwd.getpwnam("postgres")
        os.chmod(root, 0o755)
        os.chown(root, pw.pw_uid, pw.pw_gid)
        wrapper = root / "pg_ctl-as-postgres"
        runuser = shutil.which("runuser", path="/usr/sbin:/sbin:/usr/bin:/bin") or "runuser"
        wrapper.write_text(f'#!/bin/sh\nexec {runuser} -u postgres -- "{pg_ctl}" "$@"\n')
        wrapper.chmod(0o755)
        executable = str(wrapper)
        (root / "sock").mkdir()
        os.chown(root / "sock", pw.pw_uid, pw.pw_gid)
    else:
        (root / "sock").mkdir()
    port = free_port()  # another process may take it first; rare, and the start then fails
    executor = PostgreSQLExecutor(
        executable=executable,
        host="127.0.0.1",
        port=port,
        datadir=str(root / "data"),
        unixsocketdir=str(root / "sock"),
        logfile=str(root / "postgresql.log"),
        startparams="-w",
        dbname="postgres",
        user="postgres",
        # Throwaway data: no fsync, so tests do not wait on the disk.
        postgres_options=(
            "-c fsync=off -c synchronous_commit=off -c full_page_writes=off -c max_connections=300"
        ),
    )
    executor.start()  # initdb (as postgres under root: it owns root/, so it makes data/) + start
    cluster = PostgresCluster(executor, "127.0.0.1", port, "postgres", root)
    _wait_accepting(cluster)
    return cluster


def _wait_accepting(cluster: PostgresCluster, timeout: float = 60.0) -> None:
    # The port opens before recovery ends ("the database system is starting up").
    import psycopg

    deadline = time.monotonic() + timeout
    while True:
        try:
            with psycopg.connect(
                host=cluster.host, port=cluster.port, user=cluster.user, dbname="postgres"
            ):
                return
        except psycopg.OperationalError:
            if time.monotonic() > deadline:
                cluster.stop()
                raise
            time.sleep(0.1)


@dataclass
class OnPostgres:
    """What :func:`repositories_on_postgres` made: repositories and their databases."""

    cluster: PostgresCluster
    repositories: list[Any]
    databases: dict[Path, str]

    def close_pools(self) -> None:
        # dispose() closes idle connections only; an engine stays usable afterwards.
        for repo in self.repositories:
            repo.engine.dispose()

    def drop_all_but(self, keep: set[Path]) -> None:
        """Drop the databases of data folders not in ``keep`` (made by the test that ends)."""
        self.close_pools()
        for folder in [f for f in self.databases if f not in keep]:
            self.cluster.drop_database(self.databases.pop(folder))
        self.repositories[:] = [
            r for r in self.repositories if Path(r.data).resolve() in self.databases
        ]


@contextmanager
def repositories_on_postgres(cluster: PostgresCluster) -> Iterator[OnPostgres]:
    """Every :class:`Repository` made inside gets a PostgreSQL database instead of SQLite.

    One database per data folder, so a test that re-opens a server's folder (a restart, a
    key rotation) finds the same database again.
    """
    import pytest
    from satchel.server.repository import Repository

    state = OnPostgres(cluster, [], {})
    original = Repository.__init__

    def init(self: Any, data: Path, *args: Any, database_url: str | None = None, **kw: Any) -> None:
        if database_url is None:
            folder = Path(data).resolve()
            if folder not in state.databases:
                state.databases[folder] = cluster.new_database(migrated=True)
            database_url = state.databases[folder]
        original(self, data, *args, database_url=database_url, **kw)
        state.repositories.append(self)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(Repository, "__init__", init)
        try:
            yield state
        finally:
            state.drop_all_but(set())
