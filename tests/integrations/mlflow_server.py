"""A real `mlflow server` for the integration tests: PostgreSQL backend store, served artifact store.

The same shape as the deployment in docs/scale-out.md (and `make up MLFLOW_BACKEND_STORE_URI=...`):
runs and the registry in PostgreSQL, artifacts proxied by the server (`--artifacts-destination`,
`mlflow-artifacts:/` URIs), bound to 127.0.0.1. Clients only ever see the http URL.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
import urllib.request
import uuid
from pathlib import Path
from typing import IO, Any

from tests.conftest import stop_process_group
from tests.conftest import free_port
from tests.postgres import Postgres

MLFLOW = Path(sys.executable).with_name("mlflow")


def server_env() -> dict[str, str]:
    """The server's environment: no client-side tracking URI leaking in, and no GenAI job runner
    (MLflow 3 starts seven huey consumer processes on a database store; vistune submits no jobs,
    and on 2 cores they cost ~10 s of CPU per start)."""
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    return {**env, "MLFLOW_DISABLE_TELEMETRY": "true", "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}


class MlflowServer:
    """`mlflow server` on 127.0.0.1; `start()` / `stop()` may alternate (an outage), the port stays."""

    def __init__(self, workdir: Path, backend_store_uri: str, port: int | None = None):
        self.workdir, self.backend_store_uri = workdir, backend_store_uri
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.artifacts = workdir / "served-artifacts"
        self.log_path = workdir / "server.log"
        self.proc: subprocess.Popen | None = None
        self._log: IO[str] | None = None

    def command(self) -> list[str]:
        return [
            str(MLFLOW),
            "server",
            "--host",
            "127.0.0.1",
            "--port",
            str(self.port),
            "--workers",
            "1",
            "--backend-store-uri",
            self.backend_store_uri,
            "--serve-artifacts",
            "--artifacts-destination",
            str(self.artifacts),
        ]

    def log_tail(self, chars: int = 3000) -> str:
        return self.log_path.read_text()[-chars:] if self.log_path.exists() else ""

    def start(self, timeout_s: float = 120) -> MlflowServer:
        """Start and wait for /health (the first start on a fresh database also runs MLflow's migrations)."""
        self.workdir.mkdir(parents=True, exist_ok=True)
        self._log = open(self.log_path, "a")
        self.proc = subprocess.Popen(
            self.command(),
            cwd=self.workdir,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            env=server_env(),
        )
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, f"mlflow server exited:\n{self.log_tail()}"
            try:
                with urllib.request.urlopen(self.url + "/health", timeout=2):
                    return self
            except OSError:
                time.sleep(0.3)
        self.stop()
        raise AssertionError(f"mlflow server did not come up in {timeout_s:.0f} s:\n{self.log_tail()}")

    def stop(self) -> None:
        stop_process_group(self.proc)
        self.proc = None
        if self._log is not None:
            self._log.close()
            self._log = None

    def client(self):
        """A fresh client that knows nothing but the server's URL."""
        import mlflow

        return mlflow.MlflowClient(tracking_uri=self.url, registry_uri=self.url)


class PostgresMlflowServer(MlflowServer):
    """An MlflowServer on a PostgreSQL database of its own (created here): tests never share rows.

    The store URI names psycopg2 (`postgresql+psycopg2://`, the driver of the `postgres` extra):
    SQLAlchemy 2.1 reads a bare `postgresql://` as psycopg 3, which is not installed."""

    def __init__(self, pg: Postgres, workdir: Path, port: int | None = None):
        self.database = pg.create_database(f"mlflow_{uuid.uuid4().hex[:12]}")
        self.database_url = pg.url(self.database)  # libpq form, for psycopg2.connect
        super().__init__(workdir, pg.url(self.database, driver="psycopg2"), port)

    def query(self, sql: str, *args: Any) -> list[tuple]:
        """Rows straight from PostgreSQL (psycopg2): proof the server stored them there."""
        import psycopg2

        conn = psycopg2.connect(self.database_url)
        try:
            with conn.cursor() as cur:
                cur.execute(sql, args)
                return cur.fetchall()
        finally:
            conn.close()
