"""A throwaway PostgreSQL cluster on 127.0.0.1 for the shared-infrastructure tests.

Debian's server binaries (`apt-get install postgresql`, done by `make postgres`) run from a temp
directory: `initdb`, `pg_ctl start` on a free loopback port, then one database per user (MLflow's
backend store, Prefect's server). PostgreSQL refuses to run as root, so as root the cluster belongs
to the `postgres` system user.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import subprocess
import tempfile
from pathlib import Path

from tests.conftest import free_port

PASSWORD = "vistune-test"


def server_bin_dir() -> Path | None:
    """Where `initdb` / `pg_ctl` live: PATH first, then Debian's versioned directory."""
    found = shutil.which("pg_ctl")
    if found:
        return Path(found).resolve().parent
    versions = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"), key=lambda p: int(Path(p).parts[4]))
    return Path(versions[-1]).parent if versions else None


class Postgres:
    """`start()` a cluster, `create_database(name)`, `url(name, driver)`, `stop()`."""

    def __init__(self, bin_dir: Path):
        self.bin = bin_dir
        self.port = free_port()
        self.base = Path(tempfile.mkdtemp(prefix="vistune-pg-"))
        self.data = self.base / "data"
        self.owner = "postgres" if os.geteuid() == 0 else None

    def _run(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        cmd = [str(self.bin / args[0]), *args[1:]]
        if self.owner:
            cmd = ["runuser", "-u", self.owner, "--", *cmd]
        proc = subprocess.run(cmd, capture_output=True, text=True, cwd=self.base)
        if check and proc.returncode != 0:
            raise RuntimeError(f"{' '.join(args[:2])} failed: {(proc.stdout + proc.stderr)[-2000:]}")
        return proc

    def start(self) -> Postgres:
        pwfile = self.base / "pw"
        pwfile.write_text(PASSWORD + "\n")
        if self.owner:
            user = pwd.getpwnam(self.owner)
            for path in (self.base, pwfile):
                os.chown(path, user.pw_uid, user.pw_gid)
        self._run(
            "initdb",
            "-D",
            str(self.data),
            "-U",
            "vistune",
            "--pwfile",
            str(pwfile),
            "-A",
            "scram-sha-256",
            "--no-sync",
            "-E",
            "UTF8",
        )
        opts = f"-h 127.0.0.1 -p {self.port} -k {self.base} -c fsync=off -c full_page_writes=off"
        self._run(
            "pg_ctl", "-D", str(self.data), "-l", str(self.base / "server.log"), "-o", opts, "-w", "-t", "60", "start"
        )
        return self

    def create_database(self, name: str) -> str:
        env_pw = f"PGPASSWORD={PASSWORD}"
        cmd = [
            "env",
            env_pw,
            str(self.bin / "createdb"),
            "-h",
            "127.0.0.1",
            "-p",
            str(self.port),
            "-U",
            "vistune",
            name,
        ]
        proc = subprocess.run(cmd, capture_output=True, text=True)
        if proc.returncode != 0:
            raise RuntimeError(f"createdb {name} failed: {proc.stderr.strip()}")
        return name

    def url(self, database: str, driver: str = "") -> str:
        """SQLAlchemy URL: driver 'psycopg2' (MLflow), 'asyncpg' (Prefect) or '' (libpq form, e.g. for
        psycopg2.connect; SQLAlchemy 2.1 maps a bare `postgresql://` to psycopg 3, not psycopg2)."""
        scheme = f"postgresql+{driver}" if driver else "postgresql"
        return f"{scheme}://vistune:{PASSWORD}@127.0.0.1:{self.port}/{database}"

    def stop(self) -> None:
        if self.data.exists():
            self._run("pg_ctl", "-D", str(self.data), "-m", "fast", "-w", "stop", check=False)
        shutil.rmtree(self.base, ignore_errors=True)
